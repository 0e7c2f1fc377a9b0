"""Issue 11's attacks, replayed as an attacker with write access to the registry database would:
raw sqlite3 on the registry file, then the real gate and ``likeness audit verify``.

(a) a reference re-pointed to a consenting identity · (b) a forged, looser calibration ·
(c) a revocation's ledger entry deleted or edited (and ``revoked_at`` cleared) · (d) the
revocation cut off the end of the ledger · (e) the ledger truncated *and* the head file rolled
back, caught by a released output's manifest (a witness).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from likeness.cli import main
from likeness.consent.gate import check_consent
from likeness.consent.policy import add_years
from likeness.consent.records import Involvement
from likeness.consent.registry import Reference, Registry
from likeness.errors import ConsentRefused
from likeness.home import Home
from likeness.jobs.requests import SwapRequest
from likeness.jobs.road import run_job

TODAY = dt.datetime.now(dt.UTC).date()
USES = "replace the lead actor's face with the stunt double's likeness in scenes 3-5 of 'Harbour'"
SPACE = "dlib_resnet_v1"


@pytest.fixture()
def cast(home: Home, face) -> dict[str, str]:
    """Obama and Biden consent (research, any role); John Salley is enrolled without consent."""
    ids: dict[str, str] = {}
    with Registry.open(home) as registry:
        for key, name, photos in (
            ("obama", "Barack Obama", ["obama/1.jpg", "obama/2.jpg"]),
            ("biden", "Joe Biden", ["biden/2.jpg"]),
            ("salley", "John Salley", ["John_Salley/1.jpg"]),
        ):
            refs = [Reference.from_face(face(p)[1], face(p)[0]) for p in photos]
            ids[key] = registry.add_identity(name, refs, operator="studio").id
        for key in ("obama", "biden"):
            ids[f"{key}_consent"] = grant(registry, ids[key], USES, roles=["source", "target"])
    return ids


def grant(registry: Registry, identity_id: str, uses: str, roles: list[str]) -> str:
    """A research consent for a year, recorded by the studio."""
    return registry.grant(
        identity_id,
        purposes=["research"],
        roles=roles,
        valid_until=add_years(TODAY, 1),
        uses=uses,
        operator="studio",
    ).id


def attacker_sql(home: Home, *statements: tuple[str, tuple]) -> None:
    """What the attacker does: plain sqlite3 on the registry file, no likeness code."""
    with sqlite3.connect(home.db_path) as conn:
        for sql, args in statements:
            conn.execute(sql, args)


def gate(home: Home, analyzer, face, photo: str, role: str = "source"):
    with Registry.open(home) as registry:
        return check_consent(
            registry,
            [Involvement(face=face(photo)[1], role=role, label=f"{role} face in {photo}")],
            purpose="research",
            media_kind="image",
            analyzer=analyzer,
            operator="job",
        )


def refused(home: Home, analyzer, face, photo: str) -> ConsentRefused:
    with pytest.raises(ConsentRefused) as caught:
        gate(home, analyzer, face, photo)
    return caught.value


def audit(home: Home, *args: str) -> dict:
    done = CliRunner().invoke(main, ["--home", str(home.root), "audit", "verify", "--json", *args])
    report = json.loads(done.stdout)
    assert done.exit_code == (0 if report["ok"] else 1)
    return report


def table_problems(report: dict, table: str) -> str:
    return " | ".join(report["tables"][table]["problems"])


def test_untouched_registry_passes_gate_and_audit(home: Home, cast, analyzer, face) -> None:
    decision = gate(home, analyzer, face, "obama/3.jpg")
    assert decision.matches[0].identity_id == cast["obama"]
    report = audit(home)
    assert report["ok"] and all(t["ok"] for t in report["tables"].values())
    assert home.ledger_head_path.is_file()


def test_a_re_pointed_reference_is_refused_and_reported(home: Home, cast, analyzer, face) -> None:
    """(a) Salley has no consent; his reference is moved under Obama, who has."""
    assert refused(home, analyzer, face, "John_Salley/2.jpg").rule == "no_consent"
    attacker_sql(
        home,
        ("UPDATE face_references SET identity_id = ? WHERE identity_id = ?", (cast["obama"], cast["salley"])),
    )
    refusal = refused(home, analyzer, face, "John_Salley/2.jpg")
    assert refusal.rule == "tampered" and refusal.reason.startswith("registry tampered:")
    assert "face_references row ref_" in refusal.reason and "re-pointed" in refusal.reason
    report = audit(home)
    assert not report["ok"] and report["tables"]["identities"]["ok"]
    assert f"identity {cast['obama']}" in table_problems(report, "face_references")


def test_a_reference_re_pointed_while_a_process_runs_is_caught_at_decision_time(
    home: Home, cast, analyzer, face
) -> None:
    """The gallery was verified before the edit: the rows of the identity it matched are re-read."""
    with Registry.open(home) as registry:
        involve = [Involvement(face=face("obama/3.jpg")[1], role="source", label="source")]
        check_consent(
            registry, involve, purpose="research", media_kind="image", analyzer=analyzer, operator="job"
        )
        attacker_sql(
            home,
            (
                "UPDATE face_references SET identity_id = ? WHERE identity_id = ?",
                (cast["biden"], cast["obama"]),
            ),
        )
        with pytest.raises(ConsentRefused, match="registry tampered: face_references row") as caught:
            check_consent(
                registry, involve, purpose="research", media_kind="image", analyzer=analyzer, operator="job"
            )
        assert caught.value.rule == "tampered"


def test_a_forged_calibration_is_refused_and_reported(home: Home, cast, analyzer, face) -> None:
    """(b) a looser threshold inserted as the newest calibration row."""
    stranger = "John_Savage/1.jpg"  # not enrolled
    assert refused(home, analyzer, face, stranger).rule == "not_enrolled"
    attacker_sql(
        home,
        (
            "INSERT INTO calibrations (id, embedding_space, metric, threshold, margin, same_person_max, "
            "created_at, created_by) VALUES ('cal_forged', ?, 'euclidean', 0.95, 0.0, 0.95, "
            "'2099-01-01 00:00:00.000000', 'attacker')",
            (SPACE,),
        ),
    )
    refusal = refused(home, analyzer, face, stranger)
    assert refusal.rule == "tampered"
    assert "calibrations row cal_forged" in refusal.reason and "no signed calibration entry" in refusal.reason
    report = audit(home)
    assert "row cal_forged" in table_problems(report, "calibrations")


def revoke_biden(home: Home, cast, *, then_more: bool) -> int:
    with Registry.open(home) as registry:
        registry.revoke(cast["biden_consent"], reason="withdrawn by e-mail", operator="studio")
        seq = registry.ledger_entries("revoke")[-1].seq
        if then_more:  # the revocation is no longer the newest entry
            grant(registry, cast["obama"], USES + " (take 2)", roles=["target"])
    return seq


def clear_revocation(cast) -> tuple[str, tuple]:
    return (
        "UPDATE consents SET revoked_at = NULL, revoked_by = NULL, revoke_reason = NULL WHERE id = ?",
        (cast["biden_consent"],),
    )


def test_a_deleted_revocation_entry_is_refused_by_the_gate(home: Home, cast, analyzer, face) -> None:
    """(c) delete the revocation's entry and clear ``revoked_at``."""
    seq = revoke_biden(home, cast, then_more=True)
    assert refused(home, analyzer, face, "biden/1.jpg").rule == "revoked"
    attacker_sql(home, ("DELETE FROM ledger WHERE seq = ?", (seq,)), clear_revocation(cast))
    refusal = refused(home, analyzer, face, "biden/1.jpg")
    assert refusal.rule == "tampered" and f"ledger entry {seq} is missing" in refusal.reason
    report = audit(home)
    assert not report["chain_ok"] and report["first_bad_seq"] == seq


@pytest.mark.parametrize(
    "edit",
    [
        "UPDATE ledger SET kind = 'note' WHERE seq = ?",
        "UPDATE ledger SET payload = replace(payload, 'cns_', 'cnx_') WHERE seq = ?",
    ],
    ids=["kind", "consent-id"],
)
def test_an_edited_revocation_entry_is_refused_by_the_gate(home: Home, cast, analyzer, face, edit) -> None:
    """(c) edit the revocation's entry (its hash column left as it was) and clear ``revoked_at``."""
    seq = revoke_biden(home, cast, then_more=True)
    attacker_sql(home, (edit, (seq,)), clear_revocation(cast))
    refusal = refused(home, analyzer, face, "biden/1.jpg")
    assert (
        refusal.rule == "tampered" and f"ledger entry {seq} " in refusal.reason and "edited" in refusal.reason
    )
    report = audit(home)
    assert not report["ok"] and report["first_bad_seq"] == seq


def test_a_revocation_cut_off_the_end_is_caught_by_the_head_file(home: Home, cast, analyzer, face) -> None:
    """(d) the revocation is the newest entry: delete it, clear ``revoked_at``; the chain is intact."""
    seq = revoke_biden(home, cast, then_more=False)
    attacker_sql(home, ("DELETE FROM ledger WHERE seq = ?", (seq,)), clear_revocation(cast))
    refusal = refused(home, analyzer, face, "biden/1.jpg")
    assert refusal.rule == "tampered" and f"records entry {seq}" in refusal.reason
    assert "cut off" in refusal.reason
    report = audit(home)
    assert report["chain_ok"] and not report["ok"], "the chain by itself is intact"
    # the gate's refusal entry now sits where the revocation was: "replaced", not "cut off"
    assert f"ledger entry {seq}" in report["head_file_problem"]


def test_truncation_with_the_head_file_rolled_back_is_caught_by_a_witness(
    home: Home, cast, faces_dir: Path, tmp_path: Path
) -> None:
    """(e) the attacker also restores an old head file; a released output's manifest still says
    how far the ledger went."""
    old_head = home.ledger_head_path.read_bytes()
    seq = revoke_biden(home, cast, then_more=False)  # e.g. a second, film consent would do as well
    with Registry.open(home) as registry:  # a new research consent for Biden, then a released output
        grant(registry, cast["biden"], USES + " (renewed)", roles=["target"])
    out = tmp_path / "released.jpg"
    outcome = run_job(
        SwapRequest(
            source=faces_dir / "obama/3.jpg",
            target=faces_dir / "biden/1.jpg",
            purpose="research",
            out=out,
            operator="studio",
        ),
        home=home,
    )
    with Registry.open(home) as registry:
        entry = registry.ledger_entries("output")[-1]
        assert entry.payload["ledger_head"]["seq"] == seq + 1, "the head just before signing"
    assert outcome.output_id == entry.payload["output_id"]
    assert audit(home, "--witness", str(out))["ok"]

    attacker_sql(
        home,
        ("DELETE FROM output_consents", ()),
        ("DELETE FROM outputs", ()),
        ("DELETE FROM consents WHERE ledger_seq > ?", (seq,)),
        ("DELETE FROM ledger WHERE seq >= ?", (seq,)),
        clear_revocation(cast),
    )
    home.ledger_head_path.write_bytes(old_head)  # rolled back with the database
    plain = audit(home)
    assert plain["ok"], "without a witness nothing shows the truncation"
    witnessed = audit(home, "--witness", str(out))
    assert not witnessed["ok"]
    (witness,) = witnessed["witnesses"]
    assert witness["ledger_head"]["seq"] == seq + 1 and "cut off" in witness["problem"]


def test_the_signing_key_can_be_kept_encrypted_at_rest(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    """LIKENESS_KEY_PASSPHRASE: a stolen database plus keys/ folder does not hand over the signing key."""
    from likeness.consent.keys import InstallationKeys
    from likeness.errors import RegistryError

    with Registry.open(home) as registry:  # written before the passphrase was set
        key_id = registry.keys.signer().key_id
    pem = InstallationKeys(home.keys_dir).signing_key_path
    assert b"ENCRYPTED" not in pem.read_bytes()
    monkeypatch.setenv("LIKENESS_KEY_PASSPHRASE", "correct horse")
    with Registry.open(home) as registry:
        assert registry.keys.signer().key_id == key_id, "the same key, now encrypted"
        registry.store_calibration(
            SPACE, metric="euclidean", threshold=0.5, margin=0.05, same_person_max=0.6, operator="studio"
        )
    assert pem.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.delenv("LIKENESS_KEY_PASSPHRASE")
    with pytest.raises(RegistryError, match="signing key is encrypted"), Registry.open(home):
        pass
    monkeypatch.setenv("LIKENESS_KEY_PASSPHRASE", "wrong")
    with pytest.raises(RegistryError, match="cannot be opened"), Registry.open(home):
        pass


def test_an_edited_or_planted_licence_record_is_refused(home: Home, tmp_path: Path) -> None:
    """The licence records live in a file beside the registry; each one is bound to a signed
    ``licence`` entry, so editing a record (or writing one by hand) does not unlock a model."""
    from likeness.errors import RegistryTampered
    from likeness.licences import check_model_licences, licences_file, record_licence
    from likeness.models import locate_verified

    uses = [locate_verified(name).use() for name in ("dlib_landmarks_68", "dlib_resnet_v1")]
    evidence = tmp_path / "agreement.txt"
    evidence.write_text("Licence agreement for the 300-W models, ends 2020.\n")
    record_licence(
        home, "dlib_landmarks_68", holder="Studio X", evidence=evidence, note="300W-17", operator="studio"
    )
    assert {u.basis for u in check_model_licences("film", uses, home)} >= {"licence recorded"}
    path = licences_file(home)
    data = json.loads(path.read_text())
    data["licences"]["dlib_landmarks_68"]["holder"] = "Someone Else"
    path.write_text(json.dumps(data))
    with pytest.raises(RegistryTampered, match="differs from the record signed in the ledger") as caught:
        check_model_licences("film", uses, home)
    assert caught.value.exit_code == 3
    report = audit(home)
    assert "dlib_landmarks_68 differs" in table_problems(report, "licences")
    data["licences"]["dlib_landmarks_68"]["holder"] = "Studio X"
    path.write_text(json.dumps(data))  # put back: the signed record is accepted again
    assert {u.basis for u in check_model_licences("film", uses, home)} >= {"licence recorded"}
    assert audit(home)["tables"]["licences"]["ok"]


def test_a_model_file_swapped_with_its_recorded_hash_edited_is_refused(tmp_path: Path) -> None:
    """Model files trusted on first verified use (insightface packs, inswapper) keep their sha256 in
    a plain file; the first job binds it to a signed ledger entry, so replacing the file and editing
    that record to match is refused, while pinned models (in likeness's own code) need no entry."""
    from likeness.errors import RegistryTampered
    from likeness.models import ModelUse

    home = Home(root=tmp_path / "home").ensure()

    def use(sha256: str, state: str = "recorded") -> ModelUse:
        return ModelUse("buffalo_l", "w600k_r50.onnx", sha256, "non-commercial", False, state)

    with Registry.open(home) as registry:
        registry.check_model_hashes([use("a" * 64)], operator="t")  # first use: bound and signed
        entries = [e for e in registry.ledger_entries() if e.kind == "model_hash"]
        assert len(entries) == 1 and entries[0].payload["rows"]["model_hashes"] == {
            "buffalo_l/w600k_r50.onnx": "a" * 64
        }
        registry.check_model_hashes([use("a" * 64)], operator="t")  # the same file: nothing new
        assert len([e for e in registry.ledger_entries() if e.kind == "model_hash"]) == 1
        registry.check_model_hashes([use("b" * 64, state="verified")], operator="t")  # pinned: no entry
    with (
        Registry.open(home) as registry,
        pytest.raises(RegistryTampered, match="registry tampered: model file"),
    ):
        registry.check_model_hashes([use("c" * 64)], operator="t")
