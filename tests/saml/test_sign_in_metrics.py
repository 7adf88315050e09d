"""SAML sign-ins reach /metrics' counters by outcome and refusal reason (issue 19), through a real
ACS post: what the audit log records, once committed."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from audit.models import AuditEvent
from identity.web import metrics
from tests.saml.conftest import Sso


def _count(outcome: str, reason: str) -> float:
    value = metrics.families().registry.get_sample_value("identity_saml_sign_ins_total",
                                                         {"outcome": outcome, "reason": reason})
    return float(value or 0)


def _last_refusal(sso: Sso) -> str:
    with sso.db.reading() as session:
        changes = session.scalars(select(AuditEvent.changes).where(
            AuditEvent.org_id == sso.org.org.id, AuditEvent.action == "sso.login_failed")
            .order_by(AuditEvent.seq.desc())).first()
    assert changes is not None
    return str(changes["reason"])


def test_a_sign_in_and_a_refusal_are_counted(sso: Sso) -> None:
    signed_in = _count("success", "")
    assert sso.sp_login(name_id="alice@acme.test").status_code == 303
    assert _count("success", "") == signed_in + 1
    before = _refusals()
    late = sso.post(sso.response(not_on_or_after=dt.timedelta(minutes=-10), scd_not_on_or_after=None))
    assert 400 <= late.status_code < 500
    reason = _last_refusal(sso)
    assert _refusals() == {**before, reason: before.get(reason, 0.0) + 1}  # that reason, once
    assert _count("success", "") == signed_in + 1


def _refusals() -> dict[str, float]:
    return {sample.labels["reason"]: sample.value for family in metrics.families().registry.collect()
            for sample in family.samples
            if sample.name == "identity_saml_sign_ins_total" and sample.labels["outcome"] == "refused"}
