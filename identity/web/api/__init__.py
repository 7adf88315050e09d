"""The admin API under /api/v1, one blueprint per resource; `common` holds what they share."""
