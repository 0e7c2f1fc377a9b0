"""The consent form: the policy's Markdown template filled in from a consent record."""

from __future__ import annotations

from importlib import resources
from string import Template

from likeness.consent.policy import Policy
from likeness.consent.records import ConsentRecord

FORM_FILE = "consent_form.md"
NOT_GIVEN = "—"


def render_consent_form(record: ConsentRecord, *, subject_name: str, policy: Policy) -> str:
    """The form for ``record``, ready to print and sign (fields not given read "—")."""
    template = Template((resources.files("likeness.policy") / FORM_FILE).read_text(encoding="utf-8"))
    values = {
        key: NOT_GIVEN if value is None else ", ".join(value) if isinstance(value, list) else str(value)
        for key, value in record.to_dict().items()
    }
    values["consent_id"] = record.id
    values["subject_name"] = subject_name
    capacity = policy.capacities.get(record.capacity)
    values["capacity_description"] = capacity.description if capacity else NOT_GIVEN
    return template.substitute(values)
