"""Typed errors. Each carries a reason a person can act on and the CLI exit code it maps to.

Exit codes (the CLI contract): 0 done, 2 usage, 3 refused by the consent gate,
4 bad input (unreadable media, no face, model missing), 130 cancelled, 1 anything else.
"""

from __future__ import annotations


class LikenessError(Exception):
    """Base class. ``reason`` says what is wrong, ``hint`` what to do about it."""

    exit_code: int = 1
    kind: str = "error"

    def __init__(self, reason: str, *, hint: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint

    def __str__(self) -> str:
        return self.reason if not self.hint else f"{self.reason}\n  → {self.hint}"

    def to_dict(self) -> dict[str, object]:
        return {"error": self.kind, "reason": self.reason, "hint": self.hint, "exit_code": self.exit_code}


class UsageError(LikenessError):
    """The command was called wrongly (bad option value, unknown id)."""

    exit_code = 2
    kind = "usage"


class ConsentRefused(LikenessError):
    """The consent gate said no. ``face`` names which face, ``rule`` which rule refused."""

    exit_code = 3
    kind = "refused"

    def __init__(
        self,
        reason: str,
        *,
        hint: str | None = None,
        face: str | None = None,
        identity_id: str | None = None,
        rule: str | None = None,
    ) -> None:
        super().__init__(reason, hint=hint)
        self.face = face
        self.identity_id = identity_id
        self.rule = rule

    def to_dict(self) -> dict[str, object]:
        data = super().to_dict()
        data.update({"face": self.face, "identity_id": self.identity_id, "rule": self.rule})
        return data


class RegistryTampered(ConsentRefused):
    """A registry row or ledger entry the gate would rely on is not what the signed ledger says.

    A fail-closed refusal (exit 3, rule ``tampered``): the reason starts with "registry tampered:"
    and names the row and the ledger entry.
    """

    kind = "tampered"

    def __init__(self, reason: str, *, hint: str | None = None) -> None:
        super().__init__(
            reason if reason.startswith("registry tampered") else f"registry tampered: {reason}",
            hint=hint
            or "the database was changed outside likeness: run `likeness audit verify` and restore the "
            "registry from a backup",
            rule="tampered",
        )


class BadInput(LikenessError):
    """Input media that cannot be used: unreadable, truncated, too large, no face."""

    exit_code = 4
    kind = "bad_input"


class NoFace(BadInput):
    kind = "no_face"


class ModelMissing(BadInput):
    """A model file is absent or fails its hash check."""

    kind = "model_missing"


class PolicyViolation(UsageError):
    """A consent record asked for something the policy in consent/ forbids (e.g. too long)."""

    kind = "policy"


class LicenceRefused(UsageError):
    """A commercial job would use a model licensed for non-commercial use, and no licence is recorded."""

    kind = "licence"


class Cancelled(LikenessError):
    """The user cancelled the job. Nothing was written; a video job keeps its finished segments
    so the same request resumes."""

    exit_code = 130
    kind = "cancelled"


class DisclosureError(LikenessError):
    """Labelling, watermarking, signing or writing the output failed; nothing was written."""

    kind = "disclosure"


class RegistryError(LikenessError):
    """The registry or ledger could not be read or written consistently."""

    kind = "registry"
