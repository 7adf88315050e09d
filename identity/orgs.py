"""Organizations (DESIGN.md section 3.1): created with a `Default` team and a first owner."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import column, select, table
from sqlalchemy.orm import Session

from audit import Actor, clock, record
from audit.log import Target, open_chain
from identity import config, group_sync, mappings, seats, sessions, teams, users
from identity.actions import Action
from identity.errors import Conflict, InvalidValue, NotFound, PermissionDenied
from identity.models import Org, User
from identity.roles import ALIASES, authorize, parse_role, refusal
from identity.vocabulary import GrantSource, Role

SLUG = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")


def is_slug(text: str) -> bool:
    """Tell whether `text` is, whole, what an org's slug can be. Whole: `re.match` with `$` took
    "x\n" (Python's `$` matches before a final newline), and the SAML metadata URL served a page for it."""
    return SLUG.fullmatch(text) is not None


@dataclass(frozen=True)
class NewOrg:
    org: Org
    owner: User
    default_team_id: str


def any_org(session: Session) -> bool:
    """Tell whether the database holds any organization yet (a fresh install holds none)."""
    return session.scalar(select(Org.id).limit(1)) is not None


def get_org_by_slug(session: Session, slug: str) -> Org:
    """Return the org with this slug, or raise NotFound."""
    org = session.scalars(select(Org).where(Org.slug == slug)).one_or_none()
    if org is None:
        raise NotFound(f"no org with slug {slug!r}", slug=slug)
    return org


def all_org_ids(session: Session) -> list[str]:
    """Return every org's id."""
    return list(session.scalars(select(Org.id).order_by(Org.created_at)))


def org_slugs(session: Session, slug: str | None) -> list[tuple[str, str]]:
    """(id, slug) of the org `slug` names (NotFound otherwise), or, without a slug, of every org, oldest
    first: what an operator's command (`identity billing renew`, `invitations expire`, `keys settle`)
    runs over, with the slug it names each by."""
    if slug:
        return [(get_org_by_slug(session, slug).id, slug)]
    return [(org_id, found) for org_id, found in session.execute(select(Org.id, Org.slug).order_by(Org.created_at))]


def org_ids(session: Session, slug: str | None) -> list[str]:
    """The ids of org_slugs."""
    return [org_id for org_id, _ in org_slugs(session, slug)]


def create_org(
    session: Session, actor: Actor, name: str, *, owner_email: str, slug: str | None = None,
    included_seats: int = 3, seat_price_cents: int = 1000, max_seats: int | None = None,
) -> NewOrg:
    """Create an org with its `Default` team and its first owner, who takes the first seat."""
    if actor.type != "system":
        raise PermissionDenied("only the service's operators create orgs")
    name = " ".join((name or "").split())
    if not name or len(name) > 200:
        raise InvalidValue("an org name must have 1 to 200 characters", field="name")
    slug = slug or teams.slugify(name, max_length=64)
    if not is_slug(slug):
        raise InvalidValue(f"invalid slug {slug!r}: lowercase letters, digits and dashes", field="slug")
    for field, value in (("included_seats", included_seats), ("seat_price_cents", seat_price_cents),
                         ("max_seats", max_seats)):
        check_setting(field, value)  # the bounds a later PATCH /settings holds them to
    if "@" not in (owner_email or ""):
        raise InvalidValue(f"invalid owner email {owner_email!r}", field="owner_email")
    if session.scalars(select(Org.id).where(Org.slug == slug)).first() is not None:
        raise Conflict(f"an org with slug {slug!r} already exists", field="slug")
    now = clock.now()
    start, end = seats.cycle_at(now, now)
    org = Org(id=str(uuid.uuid4()), slug=slug, name=name, created_at=now, included_seats=included_seats,
              seat_price_cents=seat_price_cents, max_seats=max_seats, cycle_start=start, cycle_end=end,
              purchased_seats=0, seats_used=0, default_role=Role.MEMBER, group_sync="mirror",
              idp_may_grant_owner=False, require_sso=False, audit_retention_days=365)
    session.add(org)
    session.flush()
    open_chain(session, org.id)
    record(session, actor, Action.ORG_CREATED, Target("org", org.id, slug), {
        "name": name, "slug": slug, "included_seats": included_seats, "seat_price_cents": seat_price_cents,
        "max_seats": max_seats,
    }, org_id=org.id)
    default = teams.create_team(session, actor, org.id, "Default", is_default=True)
    owner = users.provision_user(session, actor, org.id, user_name=owner_email, email=owner_email,
                                 role=Role.OWNER, source=GrantSource.MANUAL)
    return NewOrg(org, owner, default.id)


MAX_WHOLE = 10**9  # the largest seat count or price a setting takes
DEFAULT_ROLES = (Role.VIEWER, Role.MEMBER, Role.ADMIN)  # the roles a new member may be given by default


# setting -> (permission, validator). Billing settings are the owner's; identity settings an admin's.
def _whole(value: object, low: int, high: int = MAX_WHOLE) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


SETTINGS: dict[str, tuple[str, Callable[[object], bool]]] = {
    "included_seats": ("billing.manage", lambda v: _whole(v, 0)),
    "seat_price_cents": ("billing.manage", lambda v: _whole(v, 0)),
    "max_seats": ("billing.manage", lambda v: v is None or _whole(v, 1)),
    # One of DEFAULT_ROLES, or an alias of one (`developer`, DESIGN 3.2), as roles.py spells them.
    "default_role": ("settings.manage", lambda v: v in (*DEFAULT_ROLES, *ALIASES)),
    "group_sync": ("settings.manage", lambda v: v in ("mirror", "mapped")),
    "idp_may_grant_owner": ("trust.manage", lambda v: isinstance(v, bool)),
    "require_sso": ("trust.manage", lambda v: isinstance(v, bool)),
    # Owner only, and never below the operator's floor: a short retention erases history (DESIGN.md 6).
    "audit_retention_days": ("trust.manage", lambda v: _retention(v)),
}
# What a refused number's message adds: the bounds it must be within.
BOUNDS = {"included_seats": f" (a whole number from 0 to {MAX_WHOLE})",
          "seat_price_cents": f" (a whole number from 0 to {MAX_WHOLE})",
          "max_seats": f" (null, or a whole number from 1, the owner's seat, to {MAX_WHOLE})"}
# Who reads a setting, by the permission that changes it (DESIGN 3.2): billing and IdP trust only
# owners and admins ("view billing", "IdP trust: read"), the directory's own settings whoever reads it.
READ_PERMISSIONS = {"billing.manage": "billing.read", "trust.manage": "trust.read",
                    "settings.manage": "directory.read"}


def readable_settings(actor: Actor, org: Org) -> dict[str, object]:
    """Return the settings of `org` (by name) that `actor` may read; the others are left out."""
    return {name: getattr(org, name) for name, (permission, _) in SETTINGS.items()
            if refusal(actor, READ_PERMISSIONS[permission], org_id=org.id) is None}


def check_setting(name: str, value: object) -> None:
    """Refuse a value the setting `name` does not take (SETTINGS), naming it: the one check of a
    setting's value, whether an org is created with it or changed to it."""
    if not SETTINGS[name][1](value):
        raise InvalidValue(f"invalid value for {name}: {value!r}{BOUNDS.get(name, '')}", field=name)


def _retention(value: object) -> bool:
    """Tell whether `value` is a retention in days; refuse one below AUDIT_RETENTION_FLOOR_DAYS by name."""
    floor = config.audit_retention_floor_days()
    if _whole(value, 1, 3650) and isinstance(value, int) and value < floor:
        raise InvalidValue(f"audit_retention_days must be at least {floor} days, the floor this service's "
                           f"operator set (AUDIT_RETENTION_FLOOR_DAYS); {value} is below it",
                           field="audit_retention_days")
    return _whole(value, floor, 3650)


def update_settings(session: Session, actor: Actor, org_id: str, changes: dict[str, object]) -> Org:
    """Change org settings; each needs its permission and a valid value, or nothing changes."""
    return _change_settings(session, actor, org_id, changes, Action.ORG_SETTINGS_CHANGED)


def set_require_sso(session: Session, actor: Actor, org_id: str, required: bool) -> Org:
    """Turn "members sign in only through the IdP" on or off (owners keep a break-glass sign-in).

    The same rule as the `require_sso` setting (identity.orgs.update_settings), audited under its
    own action: `identity saml require-sso` calls it.
    """
    return _change_settings(session, actor, org_id, {"require_sso": required}, Action.SSO_REQUIRE_SSO_CHANGED)


# The SAML adapter's table, read by name: the domain asks only whether an org has a connection.
SAML_CONNECTIONS = table("saml_connections", column("org_id"))


def _ensure_sso_may_be_required(session: Session, org_id: str, required: object) -> None:
    """Refuse to require SSO of an org with no SAML connection: nobody but owners could sign in."""
    configured = select(SAML_CONNECTIONS.c.org_id).where(SAML_CONNECTIONS.c.org_id == org_id)
    if required is True and session.execute(configured).first() is None:
        raise InvalidValue("configure SAML SSO before requiring it", field="require_sso")


def _change_settings(session: Session, actor: Actor, org_id: str, changes: dict[str, object], action: str) -> Org:
    """Check every change (permission, value), then apply them under the org lock and audit them as `action`."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise InvalidValue(f"unknown settings: {', '.join(sorted(unknown))}", field=sorted(unknown)[0])
    for name, value in changes.items():
        authorize(actor, SETTINGS[name][0], org_id=org_id)
        check_setting(name, value)
    if "default_role" in changes:  # stored and audited as the role it names: `developer` is `member`
        changes = {**changes, "default_role": parse_role(str(changes["default_role"]), allowed=DEFAULT_ROLES)}
    org = seats.lock_org(session, org_id)
    # A cycle that ended before this change renews on the plan it ended under, as cron would have
    # charged it at the boundary: the change applies from now on, never to the past.
    seats.renew_if_due(session, actor, org)
    unpaid = org.seats_used - org.purchased_seats  # the seats in use that the included ones must cover
    included = changes.get("included_seats")
    if isinstance(included, int) and included < unpaid:
        raise InvalidValue(f"included_seats must cover the {unpaid} seats in use beyond the {org.purchased_seats} "
                           "bought this cycle (remove members first)", field="included_seats",
                           seats_used=org.seats_used, purchased_seats=org.purchased_seats)
    if "require_sso" in changes:
        _ensure_sso_may_be_required(session, org_id, changes["require_sso"])
    diff = {name: {"before": getattr(org, name), "after": value}
            for name, value in changes.items() if getattr(org, name) != value}
    for name, change in diff.items():
        setattr(org, name, change["after"])
    audited: dict[str, object] = dict(diff)
    if diff.get("require_sso", {}).get("after") is True:  # the rule holds for sessions begun before it too
        audited["link_sessions_ended"] = sessions.end_link_sessions_below_owner(session, org.id)
    if diff:
        record(session, actor, action, Target("org", org.id, org.slug), audited, org_id=org.id)
    if "idp_may_grant_owner" in diff:  # for the owners the IdP made before it too
        mappings.reapply_owner_rules(session, actor, org.id)
    if "group_sync" in diff:  # for the members the IdP put in groups before it too
        group_sync.rederive_unruled_groups(session, actor, org.id)
    return org
