"""The consent gate on real photos: who matches, which consent covers the job, and every refusal rule.

Runs on SQLite and (when a server is installed) PostgreSQL. The threshold is the policy's, read from
consent/policy.toml, never restated here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from likeness.consent.gate import check_consent, identify
from likeness.consent.policy import Policy, add_years, packaged_policy_dir
from likeness.consent.records import GateDecision, Involvement
from likeness.consent.registry import Reference, Registry
from likeness.disclosure.types import SealedOutput
from likeness.errors import ConsentRefused, UsageError
from likeness.faces.dlib_backend import DlibAnalyzer
from likeness.home import Home
from postgres import postgres_home, postgres_server  # noqa: F401

NOW = dt.datetime.now(dt.UTC)
TODAY = NOW.date()
DLIB = Policy.load().match_rule("dlib_resnet_v1")
assert DLIB is not None
THRESHOLD = DLIB.threshold
USES = "replace the lead actor's face with the stunt double's likeness in scenes 3-5 of 'Harbour'"


@pytest.fixture(params=["sqlite", "postgres"])
def store_home(request: pytest.FixtureRequest, home: Home) -> Home:
    """The test's data home with its registry in SQLite, or in a fresh PostgreSQL schema."""
    return home if request.param == "sqlite" else request.getfixturevalue("postgres_home")


@pytest.fixture()
def registry(store_home: Home):
    with Registry.open(store_home) as opened:
        yield opened


def execute(home: Home, statement: str, **params) -> list:
    """Run SQL on the registry's database directly, as someone with file or database access could."""
    engine = create_engine(home.db_url)
    try:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.fetchall() if result.returns_rows else []
    finally:
        engine.dispose()


def enrol(registry: Registry, face, name: str, *photos: str) -> str:
    references = [Reference.from_face(face(p)[1], face(p)[0]) for p in photos]
    return registry.add_identity(name, references, operator="tester").id


def grant(registry: Registry, identity_id: str, **changes) -> str:
    terms = {
        "purposes": ["film"],
        "roles": ["source", "target"],
        "media": ["image"],
        "valid_until": add_years(TODAY, 1),
        "uses": USES,
        "operator": "tester",
    }
    terms.update(changes)
    return registry.grant(identity_id, **terms).id


def involve(face, *pairs: tuple[str, str]) -> list[Involvement]:
    return [
        Involvement(face=face(photo)[1], role=role, label=f"{role} face in {photo}") for photo, role in pairs
    ]


@pytest.fixture()
def cast(registry: Registry, face) -> dict[str, str]:
    """Obama (two reference photos) and Biden (one), enrolled; no consent yet."""
    return {
        "obama": enrol(registry, face, "Barack Obama", "obama/1.jpg", "obama/2.jpg"),
        "biden": enrol(registry, face, "Joe Biden", "biden/1.jpg"),
    }


def check(
    registry: Registry, analyzer, involved, *, purpose="film", media_kind="image", at=None
) -> GateDecision:
    return check_consent(
        registry,
        involved,
        purpose=purpose,
        media_kind=media_kind,
        analyzer=analyzer,
        operator="tester",
        at=at,
    )


def refusal(registry: Registry, analyzer, involved, **kwargs) -> ConsentRefused:
    before = len(registry.ledger_entries("refusal"))
    with pytest.raises(ConsentRefused) as refused:
        check(registry, analyzer, involved, **kwargs)
    entries = registry.ledger_entries("refusal")
    assert len(entries) == before + 1, "every refusal is written to the ledger"
    logged = entries[-1].payload
    assert (logged["rule"], logged["face"]) == (refused.value.rule, refused.value.face)
    assert logged["threshold"] == registry.operating_point("dlib_resnet_v1").threshold
    assert logged["embedding_space"] == "dlib_resnet_v1"
    assert logged["model"]["recognition"] and "distance" in logged
    assert "Barack Obama" not in str(logged) and "Joe Biden" not in str(logged), (
        "ids in the ledger, not names"
    )
    assert refused.value.hint
    return refused.value


def test_the_decision_types_sit_with_the_records_and_keep_their_old_import_paths() -> None:
    from likeness.consent import gate, records, registry

    for name in ("GateDecision", "Match", "Involvement", "Identification"):
        assert getattr(gate, name) is getattr(records, name) and name in gate.__all__
    for name in ("GalleryIdentity", "Reference", "Identity"):
        assert getattr(registry, name) is getattr(records, name) and name in registry.__all__
    assert registry.BUSY_TIMEOUT_S > 0


def test_genuine_faces_with_consent_pass(registry: Registry, analyzer, face, cast) -> None:
    obama_consent = grant(registry, cast["obama"], roles=["source"])
    biden_consent = grant(registry, cast["biden"], roles=["target"])
    decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("biden/2.jpg", "target")))
    source, target = decision.matches
    assert (source.identity_id, source.consent_id, source.identity_name) == (
        cast["obama"],
        obama_consent,
        "Barack Obama",
    )
    assert (target.identity_id, target.consent_id) == (cast["biden"], biden_consent)
    assert 0 < source.distance <= THRESHOLD < source.runner_up_distance
    assert source.runner_up_distance - source.distance >= DLIB.margin
    assert decision.consent_ids == [obama_consent, biden_consent]
    assert (decision.embedding_space, decision.threshold, decision.threshold_source) == (
        "dlib_resnet_v1",
        THRESHOLD,
        "policy [match.dlib_resnet_v1]",
    )
    assert decision.model["backend"] == "dlib"
    assert registry.ledger_entries("refusal") == []


def test_the_same_consent_is_listed_once(registry: Registry, analyzer, face, cast) -> None:
    consent = grant(registry, cast["obama"])
    decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("obama/4.jpg", "target")))
    assert decision.consent_ids == [consent]


def test_impostor_is_not_enrolled(registry: Registry, analyzer, face, cast) -> None:
    grant(registry, cast["obama"])
    refused = refusal(
        registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("John_Simm/1.jpg", "target"))
    )
    assert (refused.rule, refused.identity_id) == ("not_enrolled", None)
    assert refused.face == "target face in John_Simm/1.jpg"
    assert "no enrolled identity matches" in refused.reason and f"threshold {THRESHOLD:.3f}" in refused.reason
    assert "identity add" in refused.hint


def test_no_consent(registry: Registry, analyzer, face, cast) -> None:
    refused = refusal(registry, analyzer, involve(face, ("biden/2.jpg", "source")))
    assert (refused.rule, refused.identity_id) == ("no_consent", cast["biden"])
    assert "Joe Biden" in refused.reason and "consent grant" in refused.hint


@pytest.mark.parametrize(
    ("consent", "job", "rule", "says"),
    [
        (
            {"purposes": ["film", "education"]},
            {"purpose": "advertising"},
            "wrong_purpose",
            "cover education, film",
        ),
        ({"media": ["image"]}, {"media_kind": "video"}, "wrong_media", "covers image only, not video"),
        ({"roles": ["target"]}, {}, "wrong_role", "only as target, not as source"),
        ({"valid_from": TODAY + dt.timedelta(days=3)}, {}, "not_yet_valid", "valid only from"),
    ],
)
def test_out_of_scope_consent_names_the_rule(
    registry, analyzer, face, cast, consent, job, rule, says
) -> None:
    consent_id = grant(registry, cast["obama"], **consent)
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")), **job)
    assert (refused.rule, refused.identity_id) == (rule, cast["obama"])
    assert says in refused.reason
    if rule != "wrong_purpose":
        assert consent_id in refused.reason


def test_a_refusal_names_every_consent_considered_and_why(registry, analyzer, face, cast) -> None:
    """A target consent for education and a source consent for film, used as source for education:
    the refusal names both consents and why neither covers the job (not only the closest one)."""
    as_target = grant(registry, cast["obama"], purposes=["education"], roles=["target"])
    as_source = grant(registry, cast["obama"], purposes=["film"], roles=["source"])
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")), purpose="education")
    assert refused.rule == "wrong_role"
    assert f"{as_target}: allows their face only as target, not as source" in refused.reason
    assert f"{as_source}: purpose education not covered (only film)" in refused.reason


def test_revoked(registry: Registry, analyzer, face, cast) -> None:
    consent = grant(registry, cast["obama"])
    check(registry, analyzer, involve(face, ("obama/3.jpg", "source")))
    registry.revoke(consent, reason="withdrawn by the performer", operator="agent")
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")))
    assert refused.rule == "revoked" and "withdrawn by the performer" in refused.reason


def test_expiry_boundary(registry: Registry, analyzer, face, cast) -> None:
    last_day = TODAY + dt.timedelta(days=30)
    consent = grant(registry, cast["obama"], valid_until=last_day)
    involved = involve(face, ("obama/3.jpg", "source"))
    late_on_last_day = dt.datetime.combine(last_day, dt.time(23, 59, 59), tzinfo=dt.UTC)
    assert check(registry, analyzer, involved, at=late_on_last_day).consent_ids == [consent]
    refused = refusal(registry, analyzer, involved, at=late_on_last_day + dt.timedelta(seconds=1))
    assert refused.rule == "expired" and f"expired on {last_day}" in refused.reason


def test_most_specific_rule_wins(registry: Registry, analyzer, face, cast) -> None:
    """A revoked film consent is the one that would have covered a film job: say 'revoked'."""
    film = grant(registry, cast["obama"], purposes=["film"])
    grant(registry, cast["obama"], purposes=["education"])
    registry.revoke(film, reason="no longer wanted", operator="agent")
    assert refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source"))).rule == "revoked"
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")), purpose="advertising")
    assert refused.rule == "wrong_purpose" and "active consents cover education" in refused.reason


def test_one_refused_face_refuses_the_job(registry: Registry, analyzer, face, cast) -> None:
    grant(registry, cast["obama"], roles=["source"])
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("biden/2.jpg", "target")))
    assert (refused.rule, refused.face) == ("no_consent", "target face in biden/2.jpg")


def test_ambiguous_match_under_a_loose_calibration(registry: Registry, analyzer, face) -> None:
    """Two different people 0.57-0.63 apart: a stored operating point of 0.65 cannot tell them apart."""
    first = enrol(registry, face, "Person Six", "deepface_person_06/1.jpg", "deepface_person_06/2.jpg")
    second = enrol(registry, face, "Person Nine", "deepface_person_09/1.jpg", "deepface_person_09/2.jpg")
    grant(registry, first)
    grant(registry, second)
    point = registry.store_calibration(
        "dlib_resnet_v1",
        metric="euclidean",
        threshold=0.65,
        margin=0.05,
        same_person_max=0.7,
        operator="tester",
        false_accept_rate=0.004,
        false_reject_rate=0.01,
        genuine_pairs=99,
        impostor_pairs=2457,
        dataset="testdata",
    )
    assert registry.operating_point("dlib_resnet_v1") == point and point.source.startswith("calibration cal_")
    with pytest.raises(ConsentRefused) as refused:
        check(registry, analyzer, involve(face, ("deepface_person_06/3.jpg", "source")))
    assert refused.value.rule == "ambiguous"
    assert "Person Six" in refused.value.reason and "Person Nine" in refused.value.reason
    logged = registry.ledger_entries("refusal")[-1].payload
    assert logged["threshold_source"] == point.source and logged["runner_up_identity_id"] == second


class OtherSpaceAnalyzer(DlibAnalyzer):
    """The same dlib models under another embedding-space name: stands in for a second backend."""

    embedding_space = "dlib_resnet_v1_other"


PREFIX_RULE = """
[match.other_dlib]
space_prefix = "dlib_resnet_v1_"
metric = "euclidean"
threshold = 0.525
margin = 0.10
same_person_max = 0.70
"""


@pytest.fixture()
def other(store_home: Home) -> OtherSpaceAnalyzer:
    """The second 'backend', with a prefix rule for its space in the data home's policy."""
    (store_home.root / "policy.toml").write_text(
        (packaged_policy_dir() / "policy.toml").read_text() + PREFIX_RULE
    )
    return OtherSpaceAnalyzer(store_home)


def other_face(other: OtherSpaceAnalyzer, face, photo: str):
    picture = face(photo)[0]
    (found,) = other.analyze(picture.pixels)
    return picture, found


def test_identity_enrolled_with_another_backend_is_refused(
    store_home: Home, analyzer, face, other: OtherSpaceAnalyzer
) -> None:
    """The gate compares only the analyzer's space; who lacks it is named, with how to fix it."""
    with Registry.open(store_home) as registry:
        obama = enrol(registry, face, "Barack Obama", "obama/1.jpg", "obama/2.jpg")
        biden = enrol(registry, face, "Joe Biden", "biden/1.jpg")
        grant(registry, obama)
        grant(registry, biden)
        picture, probe = other_face(other, face, "obama/3.jpg")
        with pytest.raises(ConsentRefused) as refused:
            check(registry, other, [Involvement(probe, "source", f"source photo {picture.path.name}")])
        assert (refused.value.rule, refused.value.face) == ("not_enrolled", "source photo 3.jpg")
        reason, hint = refused.value.reason, refused.value.hint
        assert "no one is enrolled for dlib_resnet_v1_other" in reason
        assert "2 identities are enrolled only with dlib_resnet_v1" in reason
        assert "'Barack Obama'" in reason and biden in reason
        assert "likeness identity reembed IDENTITY --backend" in hint and "--backend dlib" in hint
        logged = registry.ledger_entries("refusal")[-1].payload
        assert sorted(logged["identities_without_space"]) == sorted([obama, biden])
        assert logged["embedding_space"] == "dlib_resnet_v1_other"


def test_two_space_identity_is_matched_in_the_analyzers_space_only(
    store_home: Home, analyzer, face, other: OtherSpaceAnalyzer
) -> None:
    with Registry.open(store_home) as registry:
        both = [
            Reference.from_face(found, picture)
            for photo in ("obama/1.jpg", "obama/2.jpg")
            for picture, found in (face(photo), other_face(other, face, photo))
        ]
        obama = registry.add_identity("Barack Obama", both, operator="tester").id
        biden = enrol(registry, face, "Joe Biden", "biden/1.jpg")  # dlib only
        consent = grant(registry, obama)
        grant(registry, biden)

        _, probe = other_face(other, face, "obama/3.jpg")
        decision = check(registry, other, [Involvement(probe, "source", "source")])
        assert decision.consent_ids == [consent] and decision.embedding_space == "dlib_resnet_v1_other"
        assert decision.threshold_source == "policy [match.other_dlib] (spaces dlib_resnet_v1_*)"
        assert decision.matches[0].runner_up_distance is None, "Biden has no reference in this space"
        # the same person through the default backend: matched in dlib_resnet_v1, Biden compared too
        decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source")))
        assert (
            decision.embedding_space == "dlib_resnet_v1"
            and decision.matches[0].runner_up_distance > THRESHOLD
        )

        _, biden_probe = other_face(other, face, "biden/2.jpg")
        with pytest.raises(ConsentRefused) as refused:
            check(registry, other, [Involvement(biden_probe, "target", "target face #0")])
        assert refused.value.rule == "not_enrolled"
        assert "1 identity is enrolled only with dlib_resnet_v1" in refused.value.reason
        assert "'Joe Biden'" in refused.value.reason and "Obama" not in refused.value.reason
        with pytest.raises(UsageError, match="its embedding is in 'dlib_resnet_v1_other'"):
            check(registry, analyzer, [Involvement(biden_probe, "target", "target face #0")])


def test_identify_is_the_gates_rule(registry: Registry, analyzer, face, cast) -> None:
    point = registry.operating_point("dlib_resnet_v1")
    gallery = registry.gallery("dlib_resnet_v1")
    found = identify(face("obama/3.jpg")[1].embedding, gallery, point)
    assert found.outcome == "match" and found.best.identity_id == cast["obama"] and found.compared == 2
    stranger = identify(face("John_Simm/1.jpg")[1].embedding, gallery, point)
    assert stranger.outcome == "not_enrolled" and stranger.distance > point.threshold
    assert identify(face("obama/3.jpg")[1].embedding, [], point).outcome == "not_enrolled"


def test_unknown_purpose_or_media_is_a_usage_error(registry: Registry, analyzer, face, cast) -> None:
    grant(registry, cast["obama"])
    with pytest.raises(UsageError, match="unknown purpose 'propaganda'"):
        check(registry, analyzer, involve(face, ("obama/3.jpg", "source")), purpose="propaganda")
    with pytest.raises(UsageError, match="unknown media kind 'hologram'"):
        check(registry, analyzer, involve(face, ("obama/3.jpg", "source")), media_kind="hologram")
    with pytest.raises(UsageError, match="no faces"):
        check(registry, analyzer, [])


def sealed_for(decision: GateDecision, tmp_path: Path) -> SealedOutput:
    """What the disclosure writer hands back (the file itself is not read by the registry)."""
    data = b"sealed output bytes " + decision.checked_at.isoformat().encode()
    return SealedOutput(
        path=tmp_path / "out.jpg",
        output_id="lk1-" + hashlib.sha256(data).hexdigest()[:12],
        sha256=hashlib.sha256(data).hexdigest(),
        media_type="image/jpeg",
        kind="swap",
        consent_ids=decision.consent_ids,
        purpose=decision.purpose,
        phash="8f0e1c2d3b4a5968",
    )


def test_record_output_ties_the_output_to_its_checks(registry, analyzer, face, cast, tmp_path) -> None:
    grant(registry, cast["obama"])
    consent = grant(registry, cast["biden"])
    decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("biden/2.jpg", "target")))
    sealed = sealed_for(decision, tmp_path)
    record = registry.record_output(sealed, decision=decision, operator="tester")
    assert registry.get_output(sealed.output_id) == record
    assert registry.find_outputs_by_sha256(sealed.sha256.upper()) == [record]
    assert registry.list_outputs(consent_id=consent) == [record]
    assert registry.get_output("lk1-unknown") is None
    (entry,) = registry.ledger_entries("output")
    assert entry.seq == record.ledger_seq
    payload = entry.payload
    assert payload["output_id"] == sealed.output_id and payload["consent_ids"] == decision.consent_ids
    assert [c["identity_id"] for c in payload["checks"]] == [cast["obama"], cast["biden"]]
    assert payload["threshold"] == THRESHOLD and payload["model"]["backend"] == "dlib"
    assert "Obama" not in str(payload), "ledger payloads carry ids, not names"
    assert registry.verify_ledger().ok


def test_revocation_after_the_gate_wins(registry, analyzer, face, cast, store_home: Home, tmp_path) -> None:
    """A job passes the gate, another registry connection revokes, the job's output is then refused
    and not recorded (with a real second process: test_concurrency.py)."""
    consent = grant(registry, cast["obama"])
    grant(registry, cast["biden"])
    decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("biden/2.jpg", "target")))
    with Registry.open(store_home) as other_process:
        other_process.revoke(consent, reason="withdrawn during the job", operator="agent")
    with pytest.raises(ConsentRefused) as refused:
        registry.record_output(sealed_for(decision, tmp_path), decision=decision, operator="tester")
    assert (refused.value.rule, refused.value.identity_id) == ("revoked", cast["obama"])
    assert "while the job was running" in refused.value.reason
    assert execute(store_home, "SELECT COUNT(*) FROM outputs") == [(0,)]
    assert registry.ledger_entries("output") == []
    assert registry.ledger_entries("refusal")[-1].payload["stage"] == "record_output"


def test_expiry_after_the_gate_wins(registry, analyzer, face, cast, tmp_path) -> None:
    last_day = TODAY + dt.timedelta(days=2)
    grant(registry, cast["obama"], valid_until=last_day)
    involved = involve(face, ("obama/3.jpg", "source"))
    decision = check(
        registry, analyzer, involved, at=dt.datetime.combine(last_day, dt.time(23, 59), tzinfo=dt.UTC)
    )
    next_day = dt.datetime.combine(last_day + dt.timedelta(days=1), dt.time(0, 0, 1), tzinfo=dt.UTC)
    with pytest.raises(ConsentRefused) as refused:
        registry.record_output(
            sealed_for(decision, tmp_path), decision=decision, operator="tester", at=next_day
        )
    assert refused.value.rule == "expired"


def test_erasure_or_tampering_after_the_gate_wins(
    registry, analyzer, face, cast, store_home: Home, tmp_path
) -> None:
    obama = grant(registry, cast["obama"])
    grant(registry, cast["biden"])
    decision = check(registry, analyzer, involve(face, ("obama/3.jpg", "source"), ("biden/2.jpg", "target")))
    execute(store_home, "UPDATE consents SET valid_until = '2099-12-31' WHERE id = :id", id=obama)
    with pytest.raises(ConsentRefused) as refused:
        registry.record_output(sealed_for(decision, tmp_path), decision=decision, operator="tester")
    assert (refused.value.rule, refused.value.identity_id) == ("tampered", cast["obama"])
    assert "no longer matches the signed ledger" in refused.value.reason

    decision = check(registry, analyzer, involve(face, ("biden/2.jpg", "target")))
    registry.erase(cast["biden"], reason="erasure request during the job", operator="dpo")
    with pytest.raises(ConsentRefused) as refused:
        registry.record_output(sealed_for(decision, tmp_path), decision=decision, operator="tester")
    assert (refused.value.rule, refused.value.identity_id) == ("revoked", cast["biden"])
    assert registry.list_outputs() == []
    assert [e.payload["stage"] for e in registry.ledger_entries("refusal")] == ["record_output"] * 2


def test_valid_from_boundary(registry: Registry, analyzer, face, cast) -> None:
    first_day = TODAY + dt.timedelta(days=5)
    consent = grant(registry, cast["obama"], valid_from=first_day)
    involved = involve(face, ("obama/3.jpg", "source"))
    midnight = dt.datetime.combine(first_day, dt.time(0, 0), tzinfo=dt.UTC)
    refused = refusal(registry, analyzer, involved, at=midnight - dt.timedelta(seconds=1))
    assert refused.rule == "not_yet_valid" and str(first_day) in refused.reason
    assert check(registry, analyzer, involved, at=midnight).consent_ids == [consent]


def test_erased_identity_is_no_longer_matched(registry: Registry, analyzer, face, cast) -> None:
    grant(registry, cast["obama"])
    registry.erase(cast["obama"], reason="erasure request", operator="dpo")
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")))
    assert refused.rule == "not_enrolled"


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        ("UPDATE consents SET valid_until = '2099-12-31'", "differs from the terms signed"),
        ('UPDATE consents SET purposes = \'["film", "advertising"]\'', "differs from the terms signed"),
        (
            "UPDATE consents SET revoked_at = NULL, revoked_by = NULL, revoke_reason = NULL",
            "revoked in the ledger",
        ),
    ],
)
def test_consent_edited_in_the_database_is_refused(
    registry, analyzer, face, cast, store_home: Home, edit, problem
) -> None:
    """Widening a consent, or undoing a revocation, straight in the database does not get past the gate."""
    consent = grant(registry, cast["obama"])
    if "revoked_at = NULL" in edit:
        registry.revoke(consent, reason="withdrawn", operator="agent")
    execute(store_home, f"{edit} WHERE id = :id", id=consent)
    refused = refusal(registry, analyzer, involve(face, ("obama/3.jpg", "source")))
    assert refused.rule == "tampered" and problem in refused.reason
    report = registry.verify_ledger()
    assert not report.ok and problem in report.reason
    assert report.first_bad_seq == registry.get_consent(consent).ledger_seq
