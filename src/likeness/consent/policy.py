"""The consent policy: purposes, durations, required fields, match thresholds.

The values live in ``consent/policy.toml`` (packaged copy in ``likeness/policy/``), never in code.
``check_grant`` applies them to a consent about to be recorded and raises :class:`PolicyViolation`
naming the rule (``policy rule <name>``) that refuses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from likeness.consent.records import ConsentRecord, OperatingPoint
from likeness.disclosure.profiles import PROFILE_NAMES
from likeness.errors import PolicyViolation, RegistryError, UsageError
from likeness.home import Home

POLICY_FILE = "policy.toml"
SUBJECTS = ("living_adult", "minor", "deceased")
METRICS = ("euclidean", "cosine")


def _one_of(value: object, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise ValueError(f"{where} is {value!r}; expected one of {', '.join(allowed)}")
    return str(value)


@dataclass(frozen=True)
class CapacityRule:
    name: str
    description: str
    subject: str
    """``living_adult``, ``minor`` or ``deceased``."""
    max_years: int
    requires: tuple[str, ...]
    requires_expired_rights: bool = False


@dataclass(frozen=True)
class MatchRule:
    """The default operating point for one embedding space (a calibration may replace it).

    A rule named after a space applies to that space. A rule with ``space_prefix`` applies to every
    space starting with it that has no rule of its own (the insightface backend names its spaces
    ``arcface_<recogniser>_<sha12>``, so one ``[match.arcface]`` rule covers any ArcFace file).
    ``calibrated`` is false for a documented guess that no measurement backs yet.
    """

    embedding_space: str
    metric: str
    threshold: float
    margin: float
    same_person_max: float
    space_prefix: str | None = None
    calibrated: bool = True

    def applies_to(self, space: str) -> bool:
        if self.space_prefix is not None:
            return space.startswith(self.space_prefix)
        return space == self.embedding_space

    @property
    def source(self) -> str:
        """How an operating point taken from this rule is described in ledger entries."""
        name = f"policy [match.{self.embedding_space}]"
        if self.space_prefix is not None:
            name += f" (spaces {self.space_prefix}*)"
        return name if self.calibrated else f"{name}, uncalibrated default"


@dataclass(frozen=True)
class Policy:
    version: int
    sha256: str
    source: str
    min_uses_chars: int
    vague_phrases: tuple[str, ...]
    day_timezone: str
    purposes: dict[str, str]
    media: dict[str, str]
    roles: dict[str, str]
    capacities: dict[str, CapacityRule]
    adult_age: int
    post_mortem_years: dict[str, int]
    match: dict[str, MatchRule]
    disclosure_profile: str = "default"
    """The disclosure profile of a job that names none (``[disclosure] default_profile``)."""
    content_producer: str = "likeness"
    """The AIGC implicit label's ContentProducer (``[disclosure] content_producer``)."""

    @classmethod
    def load(cls, home: Home | None = None) -> Policy:
        """The data home's ``policy.toml`` if it has one, else the packaged policy."""
        if home is not None and (home.root / POLICY_FILE).is_file():
            path = home.root / POLICY_FILE
            return cls.from_bytes(path.read_bytes(), source=str(path))
        packaged = resources.files("likeness.policy") / POLICY_FILE
        return cls.from_bytes(packaged.read_bytes(), source="likeness/policy/policy.toml (packaged)")

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str) -> Policy:
        try:
            raw = tomllib.loads(data.decode("utf-8"))
            return cls._from_dict(raw, sha256=hashlib.sha256(data).hexdigest(), source=source)
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
            raise RegistryError(
                f"{source}: the consent policy cannot be read ({type(exc).__name__}: {exc})",
                hint="fix the file, or delete it to fall back to the packaged policy",
            ) from exc

    @classmethod
    def _from_dict(cls, raw: dict[str, Any], *, sha256: str, source: str) -> Policy:
        consent = raw["consent"]
        capacities = {
            name: CapacityRule(
                name=name,
                description=str(rule["description"]),
                subject=_one_of(rule["subject"], SUBJECTS, f"capacity.{name}.subject"),
                max_years=int(rule["max_years"]),
                requires=tuple(rule.get("requires", ())),
                requires_expired_rights=bool(rule.get("requires_expired_rights", False)),
            )
            for name, rule in raw["capacity"].items()
        }
        match = {
            space: MatchRule(
                embedding_space=space,
                metric=_one_of(rule["metric"], METRICS, f"match.{space}.metric"),
                threshold=float(rule["threshold"]),
                margin=float(rule["margin"]),
                same_person_max=float(rule["same_person_max"]),
                space_prefix=str(rule["space_prefix"]) if rule.get("space_prefix") else None,
                calibrated=bool(rule.get("calibrated", True)),
            )
            for space, rule in raw.get("match", {}).items()
        }
        ZoneInfo(consent["day_timezone"])  # fail at load time on a bad zone name
        disclosure = raw.get("disclosure", {})  # optional: an older policy file has none
        profile = str(disclosure.get("default_profile", "default")).strip().lower()
        _one_of(profile, PROFILE_NAMES, "disclosure.default_profile")
        return cls(
            version=int(raw["version"]),
            sha256=sha256,
            source=source,
            min_uses_chars=int(consent["min_uses_chars"]),
            vague_phrases=tuple(p.lower() for p in consent["vague_phrases"]),
            day_timezone=str(consent["day_timezone"]),
            purposes=dict(raw["purposes"]),
            media=dict(raw["media"]),
            roles=dict(raw["roles"]),
            capacities=capacities,
            adult_age=int(raw["minors"]["adult_age"]),
            post_mortem_years={k: int(v) for k, v in raw["post_mortem_years"].items()},
            match=match,
            disclosure_profile=profile,
            content_producer=str(disclosure.get("content_producer", "likeness")),
        )

    def match_rule(self, embedding_space: str) -> MatchRule | None:
        """The rule for ``embedding_space``: its own, else the longest matching ``space_prefix``."""
        own = self.match.get(embedding_space)
        if own is not None and own.space_prefix is None:
            return own
        prefixed = [
            rule for rule in self.match.values() if rule.space_prefix and rule.applies_to(embedding_space)
        ]
        return max(prefixed, key=lambda rule: len(rule.space_prefix or ""), default=None)

    def operating_point(self, embedding_space: str) -> OperatingPoint | None:
        """The policy's default operating point for ``embedding_space`` (None without a rule).

        The registry uses a stored calibration instead where there is one
        (``Registry.operating_point``); ``likeness calibrate`` starts from this one.
        """
        rule = self.match_rule(embedding_space)
        if rule is None:
            return None
        return OperatingPoint(
            embedding_space, rule.metric, rule.threshold, rule.margin, rule.same_person_max, rule.source
        )

    def today(self, at: dt.datetime) -> dt.date:
        """The consent day that the instant ``at`` falls on."""
        return at.astimezone(ZoneInfo(self.day_timezone)).date()

    def require_known(self, kind: str, values: list[str] | tuple[str, ...]) -> None:
        """Raise UsageError unless every value is one the policy names (kind: purposes/media/roles)."""
        known: dict[str, str] = getattr(self, kind)
        unknown = [v for v in values if v not in known]
        if unknown:
            raise UsageError(
                f"unknown {kind[:-1] if kind != 'media' else 'media kind'} {', '.join(map(repr, unknown))}; "
                f"the policy allows: {', '.join(known)}",
                hint=f"choose from the {kind} in the consent policy ({self.source})",
            )


def add_years(day: dt.date, years: int) -> dt.date:
    """The same calendar day ``years`` later (29 February → 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def _violation(rule: str, reason: str, hint: str) -> PolicyViolation:
    return PolicyViolation(f"policy rule {rule}: {reason}", hint=hint)


def _check_lists(policy: Policy, terms: ConsentRecord) -> None:
    for kind, values in (("purposes", terms.purposes), ("media", terms.media), ("roles", terms.roles)):
        if not values:
            raise _violation(
                f"{kind}.required",
                f"a consent must name at least one of its {kind}",
                f"choose from: {', '.join(getattr(policy, kind))}",
            )
        known: dict[str, str] = getattr(policy, kind)
        unknown = [v for v in values if v not in known]
        if unknown:
            raise _violation(
                f"{kind}.allowed",
                f"{', '.join(map(repr, unknown))} not in the policy's {kind}",
                f"choose from: {', '.join(known)}",
            )


def _check_uses(policy: Policy, uses: str) -> None:
    text = " ".join(uses.split())
    if len(text) < policy.min_uses_chars:
        raise _violation(
            "consent.min_uses_chars",
            f"the description of uses has {len(text)} characters; it needs at least {policy.min_uses_chars}",
            "describe the specific uses, e.g. 'replace the stunt double's face in scenes 12-14 of Film X'",
        )
    lowered = text.lower()
    for phrase in policy.vague_phrases:
        if re.search(rf"\b{re.escape(phrase)}\b", lowered):
            raise _violation(
                "consent.vague_phrases",
                f"the description of uses contains the blanket phrase {phrase!r}",
                "name the specific project, scenes or materials; blanket grants are not valid consent",
            )


def _check_dates(policy: Policy, terms: ConsentRecord, rule: CapacityRule, today: dt.date) -> None:
    if terms.valid_until < terms.valid_from:
        raise _violation(
            "dates.order",
            f"valid_until {terms.valid_until} is before valid_from {terms.valid_from}",
            "swap the dates",
        )
    if terms.valid_until < today:
        raise _violation(
            "dates.past",
            f"valid_until {terms.valid_until} has already passed (today is {today})",
            "record a consent that is still valid",
        )
    latest = add_years(terms.valid_from, rule.max_years)
    if terms.valid_until > latest:
        raise _violation(
            f"capacity.{rule.name}.max_years",
            f"a consent granted as {rule.name!r} may last at most {rule.max_years} years "
            f"(from {terms.valid_from} until {latest} at the latest); {terms.valid_until} was asked",
            f"set valid_until on or before {latest}; renew the consent when it ends",
        )


def _check_subject(policy: Policy, terms: ConsentRecord, rule: CapacityRule, today: dt.date) -> None:
    birth = terms.date_of_birth
    if birth is not None:
        adulthood = add_years(birth, policy.adult_age)
        minor = terms.valid_from < adulthood
        if minor and rule.subject != "minor":
            raise _violation(
                "minors.adult_age",
                f"the subject (born {birth}) is under {policy.adult_age} on {terms.valid_from}",
                "a minor's consent must be granted by a parent or guardian (capacity 'guardian')",
            )
        if not minor and rule.subject == "minor":
            raise _violation(
                f"capacity.{rule.name}.subject",
                f"the subject (born {birth}) is an adult",
                "an adult grants consent themself (capacity 'self')",
            )
        if rule.subject == "minor" and terms.valid_until >= adulthood:
            raise _violation(
                "minors.adult_age",
                f"a minor's consent must end before their {policy.adult_age}th birthday ({adulthood}); "
                f"{terms.valid_until} was asked",
                f"set valid_until on or before {adulthood - dt.timedelta(days=1)}",
            )
    if terms.date_of_death is not None:
        if rule.subject != "deceased":
            raise _violation(
                f"capacity.{rule.name}.subject",
                "a date of death was given for a living subject",
                "use capacity 'estate' or 'rights_expired' for a deceased person",
            )
        if terms.date_of_death > today:
            raise _violation(
                "dates.date_of_death",
                f"date of death {terms.date_of_death} is in the future",
                "check the date",
            )


def _check_rights_expired(policy: Policy, terms: ConsentRecord, rule: CapacityRule) -> None:
    if not rule.requires_expired_rights or terms.date_of_death is None or terms.jurisdiction is None:
        return
    years = policy.post_mortem_years.get(terms.jurisdiction, policy.post_mortem_years["default"])
    expired_on = add_years(terms.date_of_death, years)
    if terms.valid_from < expired_on:
        raise _violation(
            "post_mortem_years",
            f"post-mortem rights in {terms.jurisdiction} last {years} years after death "
            f"({terms.date_of_death}), until {expired_on}",
            "record a consent from the estate or rights holder instead (capacity 'estate')",
        )


def check_grant(policy: Policy, terms: ConsentRecord, *, today: dt.date) -> None:
    """Raise PolicyViolation (naming the rule) unless the policy allows recording ``terms``."""
    rule = policy.capacities.get(terms.capacity)
    if rule is None:
        raise _violation(
            "capacity", f"unknown capacity {terms.capacity!r}", f"choose from: {', '.join(policy.capacities)}"
        )
    _check_lists(policy, terms)
    _check_uses(policy, terms.uses)
    given = {
        "grantor": terms.grantor,
        "basis": terms.basis,
        "date_of_birth": terms.date_of_birth,
        "date_of_death": terms.date_of_death,
        "jurisdiction": terms.jurisdiction,
        "evidence": terms.evidence_sha256,
    }
    missing = [name for name in rule.requires if not given.get(name)]
    if missing:
        raise _violation(
            f"capacity.{rule.name}.requires",
            f"a consent granted as {rule.name!r} ({rule.description}) needs: {', '.join(missing)}",
            f"give {', '.join(missing)}",
        )
    _check_dates(policy, terms, rule, today)
    _check_subject(policy, terms, rule, today)
    _check_rights_expired(policy, terms, rule)


def packaged_policy_dir() -> Path:
    """Where the packaged policy files are (for the test that keeps them identical to consent/)."""
    return Path(str(resources.files("likeness.policy")))
