"""Attribute characteristics of the User, EnterpriseUser and Group schemas (RFC 7643 sections 4 and 8.7).

Only what the filter and PATCH code decide on: type, multiValued, caseExact, mutability and
sub-attributes, plus the referenceTypes and canonicalValues that /Schemas publishes. Lookups are
case-insensitive (RFC 7643 section 2.1: attribute names are case-insensitive); every `Attribute`
carries its canonical spelling for writing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@dataclass(frozen=True)
class Attribute:
    """One attribute or sub-attribute definition."""

    name: str
    type: str = "string"  # string boolean decimal integer dateTime binary reference complex
    multi_valued: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    required: bool = False
    sub_attributes: dict[str, Attribute] = field(default_factory=dict)
    reference_types: tuple[str, ...] = ()  # for type "reference": resource types, "external" or "uri"
    canonical_values: tuple[str, ...] = ()

    def sub(self, name: str) -> Attribute | None:
        """Return the sub-attribute called `name` (any case), or None."""
        return self.sub_attributes.get(name.lower())


def _attr(name: str, type: str = "string", *subs: Attribute, **kwargs: object) -> Attribute:
    return Attribute(name, type, sub_attributes={s.name.lower(): s for s in subs}, **kwargs)  # type: ignore[arg-type]


def _multi(name: str, *subs: Attribute, **kwargs: object) -> Attribute:
    return _attr(name, "complex", *subs, multi_valued=True, **kwargs)


def _plural(name: str, value_type: str = "string", reference_types: tuple[str, ...] = (),
            **kwargs: object) -> Attribute:
    """A standard multi-valued attribute: value, display, type, primary (RFC 7643 section 2.4)."""
    return _multi(name, _attr("value", value_type, reference_types=reference_types), _attr("display"), _attr("type"),
                  _attr("primary", "boolean"), **kwargs)


@dataclass(frozen=True)
class ResourceSchema:
    """A resource type: its core schema URN, the extensions it allows, and their attributes."""

    name: str
    core_urn: str
    schemas: dict[str, dict[str, Attribute]]  # canonical schema URN -> lowercase attribute name -> definition

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(urn for urn in self.schemas if urn != self.core_urn)

    def urn(self, text: str) -> str | None:
        """Return the canonical spelling of a schema URN of this resource, or None."""
        return next((urn for urn in self.schemas if urn.lower() == text.lower()), None)

    def attribute(self, urn: str | None, name: str) -> Attribute | None:
        """Return the definition of `name` in schema `urn` (the core schema when None), or None."""
        canonical = self.core_urn if urn is None else self.urn(urn)
        return None if canonical is None else self.schemas[canonical].get(name.lower())


def _schema(*attrs: Attribute) -> dict[str, Attribute]:
    return {a.name.lower(): a for a in attrs}


_COMMON = (
    _attr("id", case_exact=True, mutability="readOnly"),
    _attr("externalId", case_exact=True),
    _attr("meta", "complex", _attr("resourceType", mutability="readOnly"), _attr("created", "dateTime"),
          _attr("lastModified", "dateTime"), _attr("location", "reference", reference_types=("uri",)),
          _attr("version", case_exact=True), mutability="readOnly"),
)

USER = ResourceSchema("User", CORE_USER, {
    CORE_USER: _schema(
        *_COMMON,
        _attr("userName", required=True),
        _attr("name", "complex", *(_attr(n) for n in ("formatted", "familyName", "givenName", "middleName",
                                                        "honorificPrefix", "honorificSuffix"))),
        *(_attr(n) for n in ("displayName", "nickName", "title", "userType", "preferredLanguage", "locale",
                             "timezone")),
        _attr("profileUrl", "reference", reference_types=("external",)),
        _attr("active", "boolean"),
        _attr("password", mutability="writeOnly"),
        _plural("emails"), _plural("phoneNumbers"), _plural("ims"), _plural("photos", "reference", ("external",)),
        _plural("entitlements"), _plural("roles"), _plural("x509Certificates", "binary"),
        _multi("addresses", *(_attr(n) for n in ("formatted", "streetAddress", "locality", "region",
                                                   "postalCode", "country", "type")),
               _attr("primary", "boolean")),
        _multi("groups", _attr("value"), _attr("$ref", "reference", reference_types=("Group",)), _attr("display"),
               _attr("type", canonical_values=("direct", "indirect")), mutability="readOnly"),
    ),
    ENTERPRISE_USER: _schema(
        *(_attr(n) for n in ("employeeNumber", "costCenter", "organization", "division", "department")),
        _attr("manager", "complex", _attr("value"), _attr("$ref", "reference", reference_types=("User",)),
              _attr("displayName", mutability="readOnly")),
    ),
})

GROUP = ResourceSchema("Group", CORE_GROUP, {
    CORE_GROUP: _schema(
        *_COMMON,
        _attr("displayName", required=True),
        # Members are users of the org (groups do not nest here); `display` is the user's name, computed.
        _multi("members", _attr("value", mutability="immutable"),
               _attr("$ref", "reference", reference_types=("User",), mutability="immutable"),
               _attr("type", canonical_values=("User",), mutability="immutable"),
               _attr("display", mutability="readOnly")),
    ),
})
