"""The consent registry on real photos, in a real SQLite file and (when a server is installed) a real
PostgreSQL database: enrolment in one or several embedding spaces, consent records, policy, erasure,
key rotation. Concurrent writers and killed processes: test_concurrency.py."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from likeness.consent.form import render_consent_form
from likeness.consent.policy import Policy, add_years, packaged_policy_dir
from likeness.consent.reembed import reembed_identity
from likeness.consent.registry import Reference, Registry
from likeness.errors import ConsentRefused, PolicyViolation, RegistryError, UsageError
from likeness.faces.backends import load_analyzer
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.home import Home
from likeness.media.image import load_image
from postgres import postgres_home, postgres_server  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TODAY = dt.datetime.now(dt.UTC).date()
EVIDENCE = object()  # stands for "a real signed document file" in the parameter table
USES = "face replacement of the stunt double in scenes 12-14 of the short film 'Harbour'"
OTHER_SPACE = "dlib_resnet_v1_other"
# A data-home policy with a prefix rule for OTHER_SPACE (the packaged one has none for it).
PREFIX_RULE = """
[match.other_dlib]
space_prefix = "dlib_resnet_v1_"
metric = "euclidean"
threshold = 0.525
margin = 0.10
same_person_max = 0.70
"""


class OtherSpaceAnalyzer(DlibAnalyzer):
    """The same dlib models under another embedding-space name: stands in for a second backend."""

    embedding_space = OTHER_SPACE


@pytest.fixture(scope="module")
def reference(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """reference('obama/1.jpg') → a Reference from the real dlib analyzer (computed once per photo)."""
    models = Home(tmp_path_factory.mktemp("models"))
    analyzers = {"dlib": load_analyzer("dlib", models), "other": OtherSpaceAnalyzer(models)}
    cache: dict[tuple[str, str], Reference] = {}

    def make(name: str, space: str = "dlib") -> Reference:
        if (name, space) not in cache:
            picture = load_image(faces_dir / name)
            faces = analyzers[space].analyze(picture.pixels)
            assert len(faces) == 1, f"{name}: expected one face, found {len(faces)}"
            cache[name, space] = Reference.from_face(faces[0], picture)
        return cache[name, space]

    return make


@pytest.fixture(params=["sqlite", "postgres"])
def store_home(request: pytest.FixtureRequest, home: Home) -> Home:
    """The test's data home with its registry in SQLite, or in a fresh PostgreSQL database."""
    return home if request.param == "sqlite" else request.getfixturevalue("postgres_home")


@pytest.fixture()
def registry(store_home: Home):
    with Registry.open(store_home) as opened:
        yield opened


@pytest.fixture()
def sqlite_registry(home: Home):
    """For tests that read the SQLite file itself."""
    with Registry.open(home) as opened:
        yield opened


@pytest.fixture()
def two_space_home(store_home: Home) -> Home:
    (store_home.root / "policy.toml").write_text(
        (packaged_policy_dir() / "policy.toml").read_text() + PREFIX_RULE
    )
    return store_home


def enrol(registry: Registry, reference, name: str, *photos: str):
    return registry.add_identity(name, [reference(p) for p in photos], operator="tester")


def test_enrolment_stores_encrypted_references(sqlite_registry: Registry, reference, home: Home) -> None:
    registry = sqlite_registry
    identity = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
    assert identity.id.startswith("idn_") and len(identity.id) == 20
    assert (identity.name, identity.reference_count) == ("Barack Obama", 2)
    assert identity.embedding_spaces == ("dlib_resnet_v1",)
    assert identity.references_by_space == {"dlib_resnet_v1": 2}
    assert registry.get_identity("  barack   OBAMA ").id == identity.id
    assert registry.get_identity(identity.id).name == "Barack Obama"
    assert [i.id for i in registry.list_identities()] == [identity.id]

    (stored,) = registry.gallery("dlib_resnet_v1")
    np.testing.assert_array_equal(stored.embeddings[0], reference("obama/1.jpg").embedding)

    raw_db = b"".join(p.read_bytes() for p in home.root.glob("registry.sqlite*"))
    for photo in ("obama/1.jpg", "obama/2.jpg"):
        vector = np.asarray(reference(photo).embedding, dtype="<f4").tobytes()
        assert vector[:64] not in raw_db, "embedding stored in the clear"
        assert reference(photo).crop_jpeg[:200] not in raw_db, "face crop stored in the clear"

    from PIL import Image

    crops = registry.reference_crops(identity.id)
    assert len(crops) == 2
    with Image.open(io.BytesIO(crops[0])) as crop:
        assert crop.format == "JPEG" and max(crop.size) <= 400 and min(crop.size) >= 100
        assert not crop.getexif()


def test_unknown_identity_names_it(registry: Registry) -> None:
    with pytest.raises(UsageError, match="idn_0000000000000000"):
        registry.get_identity("idn_0000000000000000")
    with pytest.raises(UsageError, match="Nobody"):
        registry.get_identity("Nobody")
    with pytest.raises(UsageError, match="cns_nope"):
        registry.get_consent("cns_nope")


def test_duplicate_name_is_refused(registry: Registry, reference) -> None:
    enrol(registry, reference, "Joe Biden", "biden/1.jpg")
    with pytest.raises(UsageError, match="already enrolled"):
        enrol(registry, reference, "JOE biden", "kit_harington/1.jpg")


def test_same_face_under_another_name_is_refused_and_logged(registry: Registry, reference) -> None:
    first = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
    with pytest.raises(ConsentRefused) as refused:
        enrol(registry, reference, "Barry O", "obama/3.jpg")
    assert refused.value.rule == "already_enrolled"
    assert refused.value.identity_id == first.id
    assert "Barack Obama" in refused.value.reason
    assert [i.name for i in registry.list_identities()] == ["Barack Obama"]
    (entry,) = registry.ledger_entries("refusal")
    assert entry.payload["rule"] == "already_enrolled" and entry.payload["identity_id"] == first.id
    assert entry.payload["distance"] <= entry.payload["threshold"]
    assert registry.verify_ledger().ok


def test_different_people_in_one_enrolment_are_refused(registry: Registry, reference) -> None:
    with pytest.raises(UsageError, match=r"reference photo 2 .* does not look like the others"):
        enrol(registry, reference, "Mixed Up", "obama/1.jpg", "biden/1.jpg", "obama/2.jpg")
    assert registry.list_identities() == []


def test_grant_records_every_field(registry: Registry, reference, tmp_path: Path) -> None:
    identity = enrol(registry, reference, "Kit Harington", "kit_harington/1.jpg")
    document = tmp_path / "signed.pdf"
    document.write_bytes(b"%PDF-1.4 signed consent of Kit Harington " + bytes(range(256)))
    record = registry.grant(
        identity.id,
        purposes=["film", "film", "education"],
        roles=["source"],
        media=["image", "video"],
        valid_until=add_years(TODAY, 2),
        uses=USES,
        operator="tester",
        project="Harbour (2026)",
        compensation="flat fee of 2,000 EUR per shooting day",
        representation="Equity UK, represented by A. Agent",
        takedown_contact="takedown@harbour.example",
        evidence=document,
    )
    assert record.id.startswith("cns_")
    assert record.purposes == ("film", "education")
    assert (record.valid_from, record.capacity, record.grantor) == (TODAY, "self", "Kit Harington")
    assert record.policy_sha256 == registry.policy.sha256
    assert registry.get_consent(record.id) == record
    assert registry.list_consents(identity.id) == [record]
    assert registry.evidence_document(record.evidence_sha256) == document.read_bytes()
    assert record.to_dict()["status"] == "active"

    (entry,) = registry.ledger_entries("grant")
    assert entry.payload["consent_id"] == record.id
    assert entry.payload["terms_sha256"] == record.terms_sha256()
    assert "uses" not in entry.payload and "Kit" not in json.dumps(entry.payload)


def test_historical_figure_on_expired_rights(registry: Registry, home: Home) -> None:
    """The demo's case: a 19th-century sitter enrolled on the basis that post-mortem rights expired."""
    from likeness.faces.backends import load_analyzer as load

    demo = REPO / "src" / "likeness" / "demo_assets"
    picture = load_image(demo / "darwin_1.jpg")
    (face,) = load(  # the public-domain portrait, analysed like any photo
        "dlib", home
    ).analyze(picture.pixels)
    darwin = registry.add_identity("Charles Darwin", [Reference.from_face(face, picture)], operator="curator")
    record = registry.grant(
        darwin.id,
        purposes=["education"],
        roles=["source", "target"],
        media=["image"],
        valid_until=add_years(TODAY, 1),
        uses="museum exhibit on Victorian science, swapping portraits of the period's scientists",
        operator="curator",
        capacity="rights_expired",
        date_of_death=dt.date(1882, 4, 19),
        jurisdiction="GB",
        basis="died 1882; no post-mortem publicity right outlasts 100 years; portrait in the public domain",
    )
    assert (record.capacity, record.grantor, record.jurisdiction) == ("rights_expired", "curator", "GB")
    with pytest.raises(
        PolicyViolation, match=r"policy rule capacity\.rights_expired\.requires: .*date_of_death"
    ):
        registry.grant(
            darwin.id,
            purposes=["education"],
            roles=["source"],
            valid_until=add_years(TODAY, 1),
            uses=record.uses,
            operator="curator",
            capacity="rights_expired",
            jurisdiction="GB",
            basis="old",
        )


POLICY_CASES = [
    pytest.param({"valid_until": add_years(TODAY, 11)}, "capacity.self.max_years", id="adult-11-years"),
    pytest.param(
        {"valid_from": TODAY, "valid_until": add_years(TODAY, 10) + dt.timedelta(days=1)},
        "capacity.self.max_years",
        id="adult-10-years-and-a-day",
    ),
    pytest.param({"uses": "film stuff"}, "consent.min_uses_chars", id="short-uses"),
    pytest.param(
        {"uses": "any and all uses in every film we make"}, "consent.vague_phrases", id="vague-uses"
    ),
    pytest.param({"purposes": ["surveillance"]}, "purposes.allowed", id="unknown-purpose"),
    pytest.param({"purposes": []}, "purposes.required", id="no-purpose"),
    pytest.param({"roles": ["director"]}, "roles.allowed", id="unknown-role"),
    pytest.param({"media": ["hologram"]}, "media.allowed", id="unknown-media"),
    pytest.param({"capacity": "friend"}, "capacity", id="unknown-capacity"),
    pytest.param(
        {"valid_until": TODAY - dt.timedelta(days=1), "valid_from": TODAY - dt.timedelta(days=30)},
        "dates.past",
        id="already-over",
    ),
    pytest.param(
        {"valid_from": TODAY + dt.timedelta(days=9), "valid_until": TODAY + dt.timedelta(days=8)},
        "dates.order",
        id="until-before-from",
    ),
    pytest.param({"date_of_birth": add_years(TODAY, -12)}, "minors.adult_age", id="minor-as-self"),
    pytest.param(
        {
            "capacity": "guardian",
            "grantor": "Parent",
            "date_of_birth": add_years(TODAY, -15),
            "valid_until": add_years(TODAY, 4),
            "evidence": EVIDENCE,
        },
        "minors.adult_age",
        id="minor-past-18",
    ),
    pytest.param(
        {
            "capacity": "guardian",
            "grantor": "Parent",
            "date_of_birth": add_years(TODAY, -10),
            "valid_until": add_years(TODAY, 6),
            "evidence": EVIDENCE,
        },
        "capacity.guardian.max_years",
        id="minor-6-years",
    ),
    pytest.param(
        {"capacity": "guardian", "grantor": "Parent", "date_of_birth": add_years(TODAY, -10)},
        "capacity.guardian.requires",
        id="guardian-without-evidence",
    ),
    pytest.param(
        {"capacity": "estate", "grantor": "Estate of X"}, "capacity.estate.requires", id="estate-bare"
    ),
    pytest.param(
        {
            "capacity": "rights_expired",
            "date_of_death": dt.date(1990, 1, 1),
            "jurisdiction": "US-CA",
            "basis": "died long ago",
        },
        "post_mortem_years",
        id="california-70-years",
    ),
    pytest.param(
        {
            "capacity": "rights_expired",
            "date_of_death": dt.date(1950, 1, 1),
            "jurisdiction": "FR",
            "basis": "died long ago",
        },
        "post_mortem_years",
        id="unlisted-jurisdiction-100-years",
    ),
]


@pytest.mark.parametrize(("changes", "rule"), POLICY_CASES)
def test_policy_violations_name_the_rule(
    sqlite_registry: Registry, reference, tmp_path: Path, changes, rule
) -> None:
    registry = sqlite_registry
    identity = enrol(registry, reference, "Rose Leslie", "rose_leslie/1.jpg")
    evidence = tmp_path / "form.pdf"
    evidence.write_bytes(b"%PDF-1.4 signed")
    terms = {"purposes": ["film"], "roles": ["target"], "valid_until": add_years(TODAY, 1), "uses": USES}
    terms.update({key: evidence if value is EVIDENCE else value for key, value in changes.items()})
    with pytest.raises(PolicyViolation) as violation:
        registry.grant(identity.id, operator="tester", **terms)
    assert violation.value.reason.startswith(f"policy rule {rule}:"), violation.value.reason
    assert violation.value.hint
    assert registry.list_consents() == []
    assert registry.ledger_entries("grant") == []


def test_policy_limits_are_inclusive(sqlite_registry: Registry, reference, tmp_path: Path) -> None:
    registry = sqlite_registry
    identity = enrol(registry, reference, "Rose Leslie", "rose_leslie/1.jpg")
    evidence = tmp_path / "form.pdf"
    evidence.write_bytes(b"%PDF-1.4 signed by the parent")
    adult = registry.grant(
        identity.id,
        purposes=["film"],
        roles=["target"],
        valid_until=add_years(TODAY, 10),
        uses=USES,
        operator="tester",
    )
    born = add_years(TODAY, -15)
    minor = registry.grant(
        identity.id,
        purposes=["film"],
        roles=["target"],
        valid_until=add_years(born, 18) - dt.timedelta(days=1),
        uses=USES,
        operator="tester",
        capacity="guardian",
        grantor="Parent",
        date_of_birth=born,
        evidence=evidence,
    )
    assert adult.valid_until == add_years(TODAY, 10)
    assert minor.valid_until == add_years(born, 18) - dt.timedelta(days=1)
    assert minor.evidence_sha256 is not None and minor.evidence_name == "form.pdf"


def test_revoke(registry: Registry, reference) -> None:
    identity = enrol(registry, reference, "Rose Leslie", "rose_leslie/1.jpg")
    record = registry.grant(
        identity.id,
        purposes=["film"],
        roles=["target"],
        valid_until=add_years(TODAY, 1),
        uses=USES,
        operator="tester",
    )
    with pytest.raises(UsageError, match="reason"):
        registry.revoke(record.id, reason="  ", operator="tester")
    revoked = registry.revoke(record.id, reason="withdrawn by e-mail", operator="agent")
    assert revoked.revoked_by == "agent" and revoked.revoke_reason == "withdrawn by e-mail"
    assert revoked.status(TODAY) == "revoked" and revoked.to_dict()["status"] == "revoked"
    with pytest.raises(UsageError, match="already revoked"):
        registry.revoke(record.id, reason="again", operator="tester")
    assert [e.payload["consent_id"] for e in registry.ledger_entries("revoke")] == [record.id]


def test_erasure_deletes_biometrics_and_leaves_a_tombstone(registry: Registry, reference) -> None:
    identity = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
    record = registry.grant(
        identity.id,
        purposes=["film"],
        roles=["source"],
        valid_until=add_years(TODAY, 1),
        uses=USES,
        operator="tester",
    )
    with pytest.raises(UsageError, match="reason"):
        registry.erase(identity.id, reason=" ", operator="dpo")
    erased = registry.erase(identity.id, reason="erasure request of the subject", operator="dpo")
    assert erased.erased_at is not None and erased.reference_count == 0
    assert erased.erase_reason == "erasure request of the subject"
    assert registry.gallery("dlib_resnet_v1") == []
    assert registry.reference_crops(identity.id) == []
    assert registry.get_consent(record.id).revoked_at is not None
    assert "identity erased" in registry.get_consent(record.id).revoke_reason
    (tombstone,) = registry.ledger_entries("erasure")
    assert tombstone.payload["identity_id"] == identity.id
    assert tombstone.payload["references_deleted"] == 2
    assert tombstone.payload["consents_revoked"] == [record.id]
    with pytest.raises(UsageError, match="already erased"):
        registry.erase(identity.id, reason="again", operator="dpo")
    with pytest.raises(UsageError, match="was erased"):
        registry.grant(
            identity.id,
            purposes=["film"],
            roles=["source"],
            valid_until=add_years(TODAY, 1),
            uses=USES,
            operator="t",
        )
    again = enrol(registry, reference, "Barack Obama", "obama/3.jpg")  # may enrol again, as a new identity
    assert again.id != identity.id
    assert registry.verify_ledger().ok


def test_erased_biometrics_are_gone_from_the_database_files(
    sqlite_registry: Registry, reference, home: Home
) -> None:
    """Not only unlinked: the encrypted embedding and crop bytes no longer occur in any registry file."""
    registry = sqlite_registry
    kept = enrol(registry, reference, "Joe Biden", "biden/1.jpg")
    identity = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")

    def stored_tokens(identity_id: str) -> list[bytes]:
        with sqlite3.connect(home.db_path) as conn:
            rows = conn.execute(
                "SELECT embedding, crop FROM face_references WHERE identity_id = ?", (identity_id,)
            ).fetchall()
        return [token for row in rows for token in row]

    def raw_files() -> bytes:
        return b"".join(p.read_bytes() for p in sorted(home.root.glob("registry.sqlite*")))

    erased_tokens, kept_tokens = stored_tokens(identity.id), stored_tokens(kept.id)
    assert len(erased_tokens) == 4 and all(t[:40] in raw_files() for t in erased_tokens + kept_tokens)
    registry.erase(identity.id, reason="erasure request", operator="dpo")
    raw = raw_files()
    for token in erased_tokens:
        # a Fernet token's first 40 bytes are its version, time stamp and IV: unique per blob
        assert token[:40] not in raw and token[-32:] not in raw, "erased biometric bytes remain on disk"
    assert all(t[:40] in raw for t in kept_tokens), "the other person's references must stay"
    assert stored_tokens(identity.id) == []
    with sqlite3.connect(home.db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM face_references").fetchone() == (1,)


def test_data_key_rotation_reencrypts_everything(registry: Registry, reference) -> None:
    enrol(registry, reference, "Joe Biden", "biden/1.jpg")
    keys_file = registry.keys.data_keys_path
    old_keys = keys_file.read_bytes()
    before = registry.gallery("dlib_resnet_v1")[0].embeddings
    assert registry.rotate_data_key(operator="tester") == 1
    assert keys_file.read_bytes() != old_keys
    assert len(keys_file.read_bytes().split()) == 1
    np.testing.assert_array_equal(registry.gallery("dlib_resnet_v1")[0].embeddings, before)
    assert len(registry.reference_crops(registry.list_identities()[0].id)) == 1
    registry.rotate_signing_key(operator="tester")
    enrol(registry, reference, "Kit Harington", "kit_harington/1.jpg")
    assert registry.verify_ledger().ok
    assert [e.kind for e in registry.ledger_entries()] == ["enrol", "key_rotation", "key_rotation", "enrol"]


def test_registry_reopens_with_its_data(home: Home, reference) -> None:
    with Registry.open(home) as first:
        identity = enrol(first, reference, "Joe Biden", "biden/1.jpg")
    with Registry.open(home) as second:
        assert second.get_identity("joe biden").id == identity.id
        assert second.verify_ledger().ok and second.verify_ledger().entries == 1
    with sqlite3.connect(home.db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("2",)


def test_newer_schema_is_refused(home: Home) -> None:
    from likeness.errors import RegistryError

    with Registry.open(home):
        pass
    with sqlite3.connect(home.db_path) as conn:
        conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(RegistryError, match="schema version 99"), Registry.open(home):
        pass


def test_home_policy_overrides_the_packaged_one(home: Home, reference) -> None:
    text = (packaged_policy_dir() / "policy.toml").read_text().replace("max_years = 10", "max_years = 2")
    (home.root / "policy.toml").write_text(text)
    with Registry.open(home) as registry:
        assert registry.policy.source == str(home.root / "policy.toml")
        identity = enrol(registry, reference, "Joe Biden", "biden/1.jpg")
        with pytest.raises(PolicyViolation, match=r"capacity\.self\.max_years"):
            registry.grant(
                identity.id,
                purposes=["film"],
                roles=["source"],
                valid_until=add_years(TODAY, 3),
                uses=USES,
                operator="tester",
            )


def test_packaged_policy_files_match_the_canonical_ones() -> None:
    for name in ("policy.toml", "consent_form.md", "consent_record.schema.json"):
        canonical = REPO / "consent" / name
        assert canonical.read_bytes() == (packaged_policy_dir() / name).read_bytes(), (
            f"src/likeness/policy/{name} differs from consent/{name} (the canonical copy); "
            f"run: cp consent/{name} src/likeness/policy/"
        )
    policy = Policy.load()
    assert set(policy.capacities) == {"self", "union", "guardian", "estate", "rights_expired"}


def test_match_rules_by_name_and_by_prefix() -> None:
    policy = Policy.load()
    dlib = policy.match_rule("dlib_resnet_v1")
    assert dlib is not None and (dlib.metric, dlib.calibrated, dlib.space_prefix) == ("euclidean", True, None)
    assert dlib.source == "policy [match.dlib_resnet_v1]"
    arcface = policy.match_rule("arcface_w600k_r50_1a2b3c4d5e6f")
    assert arcface is not None and arcface.embedding_space == "arcface"
    assert (arcface.metric, arcface.calibrated) == ("cosine", False)
    assert "uncalibrated" in arcface.source and "arcface_*" in arcface.source
    assert 0 < arcface.threshold < 1 and arcface.margin > 0
    assert policy.match_rule("arcface") is None, "a prefix rule is not a rule for its own name"
    assert policy.match_rule("dlib_resnet_v2") is None
    assert policy.match_rule("facenet_512") is None


def test_records_match_the_json_schema_and_fill_the_form(
    registry: Registry, reference, tmp_path: Path
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((REPO / "consent" / "consent_record.schema.json").read_text())
    identity = enrol(registry, reference, "Kit Harington", "kit_harington/1.jpg")
    evidence = tmp_path / "estate.pdf"
    evidence.write_bytes(b"%PDF-1.4 letters of administration")
    plain = registry.grant(
        identity.id,
        purposes=["film"],
        roles=["source", "target"],
        valid_until=add_years(TODAY, 1),
        uses=USES,
        operator="tester",
    )
    estate = registry.grant(
        identity.id,
        purposes=["education"],
        roles=["source"],
        valid_until=add_years(TODAY, 1),
        uses=USES,
        operator="tester",
        capacity="estate",
        grantor="Estate of K. H.",
        date_of_death=TODAY - dt.timedelta(days=400),
        evidence=evidence,
        takedown_contact="estate@example.org",
    )
    registry.revoke(plain.id, reason="withdrawn", operator="tester")
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    for record in registry.list_consents():
        validator.validate(json.loads(json.dumps(record.to_dict())))
    broken = {**estate.to_dict(), "roles": ["director"]}
    assert list(validator.iter_errors(broken)), "the schema must reject an unknown role"

    form = render_consent_form(estate, subject_name="Kit Harington", policy=registry.policy)
    assert "$" not in form
    assert estate.id in form and "Estate of K. H." in form and USES in form and "estate@example.org" in form


def test_one_identity_in_two_embedding_spaces(two_space_home: Home, reference) -> None:
    """The pipeline may embed each reference photo with several backends: one identity, one photo count."""
    with Registry.open(two_space_home) as registry:
        refs = [reference(p, space) for p in ("obama/1.jpg", "obama/2.jpg") for space in ("dlib", "other")]
        obama = registry.add_identity("Barack Obama", refs, operator="tester")
        assert obama.embedding_spaces == ("dlib_resnet_v1", OTHER_SPACE)
        assert obama.references_by_space == {"dlib_resnet_v1": 2, OTHER_SPACE: 2}
        assert obama.reference_count == 2, "two photos, each embedded twice"
        assert len(registry.reference_crops(obama.id)) == 2, "one crop per photo"
        for space in ("dlib_resnet_v1", OTHER_SPACE):
            (entry,) = registry.gallery(space)
            np.testing.assert_array_equal(
                entry.embeddings[1],
                reference("obama/2.jpg", "other" if "other" in space else "dlib").embedding,
            )
        point = registry.operating_point(OTHER_SPACE)
        assert point.source == "policy [match.other_dlib] (spaces dlib_resnet_v1_*)"

        # The duplicate check runs per space: a second enrolment of the same face is caught in the
        # space it shares with the first, whichever that is.
        with pytest.raises(ConsentRefused) as refused:
            registry.add_identity("Barry O", [reference("obama/3.jpg", "other")], operator="tester")
        assert (refused.value.rule, refused.value.identity_id) == ("already_enrolled", obama.id)
        assert OTHER_SPACE in refused.value.reason
        biden = registry.add_identity(
            "Joe Biden", [reference("biden/1.jpg", "dlib"), reference("biden/1.jpg", "other")], operator="t"
        )
        assert biden.references_by_space == {"dlib_resnet_v1": 1, OTHER_SPACE: 1}
        (enrolled,) = [e for e in registry.ledger_entries("enrol") if e.payload["identity_id"] == obama.id]
        assert enrolled.payload["embedding_spaces"] == ["dlib_resnet_v1", OTHER_SPACE]
        assert enrolled.payload["references"] == 4 and len(enrolled.payload["photo_sha256"]) == 2
        assert registry.verify_ledger().ok


def test_reembed_adds_a_space_from_the_stored_crops(two_space_home: Home, reference) -> None:
    with Registry.open(two_space_home) as registry:
        obama = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
        enrol(registry, reference, "Joe Biden", "biden/1.jpg")
        analyzer = OtherSpaceAnalyzer(two_space_home)
        result = reembed_identity(registry, "barack obama", analyzer, operator="tester")
        assert (result.added, result.skipped, result.embedding_space) == (2, [], OTHER_SPACE)
        assert result.identity.references_by_space == {"dlib_resnet_v1": 2, OTHER_SPACE: 2}
        assert result.identity.reference_count == 2
        (entry,) = registry.gallery(OTHER_SPACE)
        assert entry.identity_id == obama.id
        # the crop is re-analysed, so the vector is close to, not equal to, the full photo's
        point = registry.operating_point(OTHER_SPACE)
        assert point.distances(reference("obama/1.jpg", "other").embedding, entry.embeddings).min() < 0.2
        (added,) = registry.ledger_entries("references_added")
        assert added.payload["identity_id"] == obama.id and added.payload["embedding_spaces"] == [OTHER_SPACE]
        with pytest.raises(UsageError, match="already has 2 reference"):
            reembed_identity(registry, obama.id, analyzer, operator="tester")
        registry.erase(obama.id, reason="erasure request", operator="dpo")
        with pytest.raises(UsageError, match="erased"):
            reembed_identity(registry, obama.id, analyzer, operator="tester")
        assert registry.verify_ledger().ok


def test_added_references_must_look_like_the_person(two_space_home: Home, reference) -> None:
    with Registry.open(two_space_home) as registry:
        obama = enrol(registry, reference, "Barack Obama", "obama/1.jpg")
        biden = enrol(registry, reference, "Joe Biden", "biden/1.jpg")
        with pytest.raises(ConsentRefused) as refused:  # Obama's face added to Biden: already enrolled
            registry.add_references(biden.id, [reference("obama/2.jpg")], operator="tester")
        assert (refused.value.rule, refused.value.identity_id) == ("already_enrolled", obama.id)
        assert registry.ledger_entries("refusal")[-1].payload["for_identity_id"] == biden.id
        with pytest.raises(UsageError, match="does not look like the others"):
            registry.add_references(obama.id, [reference("kit_harington/1.jpg")], operator="tester")
        assert registry.get_identity(obama.id).reference_count == 1
        more = registry.add_references(obama.id, [reference("obama/2.jpg")], operator="tester")
        assert more.reference_count == 2


# -- outputs: ingredient hashes, perceptual-hash lookup, per-identity listing, schema upgrade ------------
PROBE = "8f0e1c2d3b4a5968"


def flip(phash: str, bits: int) -> str:
    """``phash`` with its lowest ``bits`` bits inverted: exactly ``bits`` away."""
    return f"{int(phash, 16) ^ ((1 << bits) - 1):016x}"


def execute(home: Home, statement: str, **params) -> list:
    """Run SQL on the registry's database directly, as someone with file or database access could."""
    from sqlalchemy import create_engine, text

    engine = create_engine(home.db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.fetchall() if result.returns_rows else []
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def probe_face(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """probe_face('obama/3.jpg') → the dlib Face in that photo; ``.analyzer`` is the analyzer."""
    analyzer = load_analyzer("dlib", Home(tmp_path_factory.mktemp("probe-models")))
    cache: dict[str, object] = {}

    def get(photo: str):
        if photo not in cache:
            (cache[photo],) = analyzer.analyze(load_image(faces_dir / photo).pixels)
        return cache[photo]

    get.analyzer = analyzer
    return get


@pytest.fixture()
def cast(registry: Registry, reference) -> dict[str, str]:
    """Obama consented as a source, Biden and Harington as targets (research)."""
    ids = {}
    for key, name, photos, role in (
        ("obama", "Barack Obama", ("obama/1.jpg", "obama/2.jpg"), "source"),
        ("biden", "Joe Biden", ("biden/2.jpg",), "target"),
        ("kit", "Kit Harington", ("kit_harington/1.jpg",), "target"),
    ):
        ids[key] = enrol(registry, reference, name, *photos).id
        ids[f"{key}_consent"] = registry.grant(
            ids[key],
            purposes=["research"],
            roles=[role],
            valid_until=add_years(TODAY, 1),
            uses=USES,
            operator="tester",
        ).id
    return ids


def record(
    registry: Registry,
    probe_face,
    target: str,
    *,
    phash: str | None = PROBE,
    ingredients: dict[str, str] | None = None,
):
    """Gate Obama (obama/3.jpg) onto ``target`` for real, then record an output as the writer would."""
    from likeness.consent.gate import check_consent
    from likeness.consent.records import Involvement
    from likeness.disclosure.types import SealedOutput

    decision = check_consent(
        registry,
        [
            Involvement(probe_face("obama/3.jpg"), "source", "source photo"),
            Involvement(probe_face(target), "target", f"target face in {target}"),
        ],
        purpose="research",
        media_kind="image",
        analyzer=probe_face.analyzer,
        operator="editor",
    )
    digest = hashlib.sha256(f"{target} {phash} {dt.datetime.now(dt.UTC)}".encode()).hexdigest()
    sealed = SealedOutput(
        path=None,
        output_id=f"lk1-{digest[:12]}",
        sha256=digest,
        media_type="image/jpeg",
        kind="swap",
        consent_ids=decision.consent_ids,
        purpose="research",
        phash=phash,
        ingredient_sha256=dict(ingredients or {}),
    )
    return registry.record_output(sealed, decision=decision, operator="editor")


def test_outputs_keep_the_hashes_of_their_inputs(
    registry: Registry, store_home: Home, cast, probe_face
) -> None:
    source = hashlib.sha256(b"the source photo as supplied").hexdigest()
    target = hashlib.sha256(b"the target picture as supplied").hexdigest()
    made = record(
        registry, probe_face, "biden/1.jpg", ingredients={"source": source.upper(), "target": target}
    )
    assert made.ingredient_sha256 == {"source": source, "target": target}
    assert registry.get_output(made.output_id) == made
    assert registry.get_output(made.output_id).to_dict()["ingredient_sha256"] == made.ingredient_sha256
    (entry,) = registry.ledger_entries("output")
    assert entry.payload["ingredient_sha256"] == {"source": source, "target": target}
    assert record(registry, probe_face, "biden/1.jpg").ingredient_sha256 == {}

    with pytest.raises(RegistryError, match="ingredient 'target' has no valid sha256"):
        record(registry, probe_face, "biden/1.jpg", ingredients={"target": "0" * 63})
    assert len(registry.list_outputs()) == 2 and len(registry.ledger_entries("output")) == 2
    assert registry.verify_ledger().ok

    # the hashes are signed in the output's ledger entry: editing the table is noticed
    swapped = json.dumps({"source": source, "target": "f" * 64})
    execute(
        store_home,
        "UPDATE outputs SET ingredient_sha256 = :v WHERE output_id = :id",
        v=swapped,
        id=made.output_id,
    )
    report = registry.verify_ledger()
    assert not report.ok and report.first_bad_seq == made.ledger_seq and made.output_id in report.reason


def test_find_outputs_by_phash_nearest_first(registry: Registry, cast, probe_face) -> None:
    made = {
        bits: record(registry, probe_face, "biden/1.jpg", phash=flip(PROBE, bits)) for bits in (9, 3, 8, 0)
    }
    record(registry, probe_face, "biden/1.jpg", phash=None)
    found = registry.find_outputs_by_phash(PROBE, 8)
    assert [(r.output_id, d) for r, d in found] == [(made[b].output_id, b) for b in (0, 3, 8)]
    assert found[0][0] == made[0]
    assert [d for _, d in registry.find_outputs_by_phash(PROBE.upper(), 0)] == [0]
    near_nine = registry.find_outputs_by_phash(flip(PROBE, 9), 1)  # flip(…, 8) is one bit from it
    assert [(r.output_id, d) for r, d in near_nine] == [(made[9].output_id, 0), (made[8].output_id, 1)]
    assert registry.find_outputs_by_phash("0" * 16, 8) == []
    with pytest.raises(UsageError, match="not a perceptual hash"):
        registry.find_outputs_by_phash("not-hex", 8)
    with pytest.raises(UsageError, match="must not be negative"):
        registry.find_outputs_by_phash(PROBE, -1)


def test_list_outputs_of_an_identity(registry: Registry, reference, cast, probe_face) -> None:
    with_biden = record(registry, probe_face, "biden/1.jpg")
    with_kit = record(registry, probe_face, "kit_harington/2.jpg")
    assert registry.list_outputs(identity_id=cast["obama"]) == [with_biden, with_kit]
    assert registry.list_outputs(identity_id=cast["biden"]) == [with_biden]
    assert registry.list_outputs(identity_id="kit harington") == [with_kit]
    assert registry.list_outputs(cast["kit_consent"], identity_id=cast["obama"]) == [with_kit]
    assert registry.list_outputs(cast["kit_consent"], identity_id=cast["biden"]) == []
    rose = enrol(registry, reference, "Rose Leslie", "rose_leslie/1.jpg")
    assert registry.list_outputs(identity_id=rose.id) == []
    with pytest.raises(UsageError, match="unknown identity"):
        registry.list_outputs(identity_id="Nobody Here")
    registry.erase(cast["biden"], reason="erasure request", operator="dpo")
    assert registry.list_outputs(identity_id=cast["biden"]) == [with_biden]  # what was made stays on record


def test_audit_export_lists_the_inputs_of_each_output(registry: Registry, cast, probe_face) -> None:
    from likeness.consent.audit import build_audit_report

    target = hashlib.sha256(b"biden/1.jpg as supplied").hexdigest()
    made = record(registry, probe_face, "biden/1.jpg", ingredients={"target": target})
    old = record(registry, probe_face, "biden/1.jpg")
    report = build_audit_report(registry, identity=cast["biden"], operator="auditor")
    (person,) = report.to_dict()["identities"]
    assert [o["ingredient_sha256"] for o in person["outputs"]] == [{"target": target}, {}]
    markdown = report.to_markdown()
    assert f"| `{made.output_id}` |" in markdown and f"target `{target}`" in markdown
    assert "made from (sha256)" in markdown
    assert next(line for line in markdown.splitlines() if old.output_id in line).count("not recorded") == 1


def test_a_schema_version_1_registry_is_upgraded_in_place(store_home: Home, reference, probe_face) -> None:
    """A registry written before outputs kept their inputs' hashes opens, keeps its outputs and
    ledger, and gains the column; the upgrade is a ledger entry. A version no likeness wrote is refused
    (a newer one: test_newer_schema_is_refused)."""
    with Registry.open(store_home) as registry:
        obama = enrol(registry, reference, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
        biden = enrol(registry, reference, "Joe Biden", "biden/2.jpg")
        for person, role in ((obama, "source"), (biden, "target")):
            registry.grant(
                person.id,
                purposes=["research"],
                roles=[role],
                valid_until=add_years(TODAY, 1),
                uses=USES,
                operator="tester",
            )
        before = record(registry, probe_face, "biden/1.jpg")
    # what version 1 looked like: no column, version 1
    execute(store_home, "ALTER TABLE outputs DROP COLUMN ingredient_sha256")
    execute(store_home, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")

    with Registry.open(store_home) as registry:
        assert registry.get_output(before.output_id) == before  # NULL reads back as {}
        upgrade = registry.ledger_entries()[-1]
        assert (upgrade.kind, upgrade.payload) == ("schema_upgrade", {"from": 1, "to": 2, "steps": [2]})
        after = record(registry, probe_face, "biden/1.jpg", ingredients={"target": "a" * 64})
        assert registry.get_output(after.output_id).ingredient_sha256 == {"target": "a" * 64}
        assert registry.verify_ledger().ok
    with Registry.open(store_home) as registry:
        assert len(registry.ledger_entries("schema_upgrade")) == 1, "upgraded once"
    assert execute(store_home, "SELECT value FROM meta WHERE key = 'schema_version'") == [("2",)]

    execute(store_home, "UPDATE meta SET value = 'x1' WHERE key = 'schema_version'")
    with pytest.raises(RegistryError, match="schema version x1, which no likeness version wrote"):
        with Registry.open(store_home):
            pass
