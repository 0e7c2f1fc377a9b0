"""Several real processes on one registry, and processes killed (SIGKILL) in the middle of a write.

Each writer is a separate Python process (``sys.executable -c``) or the installed ``likeness``
command. Faces are analysed once here with the real dlib backend and handed to the children as
pickled References / Faces, so the children spend their time writing, not analysing.

After every run the registry must be whole: the ledger chain and signatures verify, every
consent and output matches its signed entry (``verify_ledger``), counts add up, no row lacks its
ledger entry and no entry lacks its row — on SQLite (WAL, busy timeout) and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from likeness.consent.gate import check_consent
from likeness.consent.records import Involvement
from likeness.consent.registry import Reference, Registry
from likeness.consent.store import make_engine
from likeness.errors import ConsentRefused
from likeness.faces.backends import load_analyzer
from likeness.home import Home
from likeness.media.image import load_image
from postgres import postgres_home, postgres_server  # noqa: F401

TODAY = dt.datetime.now(dt.UTC).date()
UNTIL = TODAY + dt.timedelta(days=30)
USES = "face replacement of the stunt double in scenes 12-14 of the short film 'Harbour'"
LIKENESS = Path(sys.executable).parent / "likeness"

# (name, reference photos, probe photo) per person; two workers enrol four people each.
PEOPLE = {
    "a": [
        ("John Salley", ["John_Salley/1.jpg", "John_Salley/2.jpg"], "John_Salley/3.jpg"),
        ("John Savage", ["John_Savage/1.jpg", "John_Savage/2.jpg"], "John_Savage/3.jpg"),
        ("John Schneider", ["John_Schneider/1.jpg", "John_Schneider/2.jpg"], "John_Schneider/3.jpg"),
        ("John Shimkus", ["John_Shimkus/1.jpg", "John_Shimkus/2.jpg"], "John_Shimkus/3.jpg"),
    ],
    "b": [
        ("John Simm", ["John_Simm/1.jpg", "John_Simm/2.jpg"], "John_Simm/3.jpg"),
        ("Person Two", ["deepface_person_02/2.jpg", "deepface_person_02/4.jpg"], "deepface_person_02/3.jpg"),
        (
            "Person Three",
            ["deepface_person_03/2.jpg", "deepface_person_03/4.jpg"],
            "deepface_person_03/3.jpg",
        ),
        (
            "Person Seven",
            ["deepface_person_07/1.jpg", "deepface_person_07/4.jpg"],
            "deepface_person_07/3.jpg",
        ),
    ],
}
ROUNDS = 2

PRELUDE = """
import datetime as dt, hashlib, pickle, sys, time
from pathlib import Path
from likeness.consent.registry import Registry
from likeness.home import Home
root, url, job_file = sys.argv[1:4]
home = Home(Path(root), db_url_override=url or None)
job = pickle.loads(Path(job_file).read_bytes())
UNTIL = dt.date.today() + dt.timedelta(days=30)
"""

WORKER = (
    PRELUDE
    + """
from likeness.consent.gate import check_consent
from likeness.consent.records import Involvement
from likeness.disclosure.types import SealedOutput
from likeness.faces.dlib_backend import DlibAnalyzer
analyzer = DlibAnalyzer(home)
print("ready", flush=True)
while not Path(job["go"]).exists():
    time.sleep(0.005)
with Registry.open(home) as registry:
    for number, (name, references, probe) in enumerate(job["people"]):
        person = registry.add_identity(name, references, operator=job["worker"])
        if number == 1:  # a barrier: go on only when the other worker has written too
            Path(job["go"] + "." + job["worker"]).touch()
            deadline = time.time() + 60
            while not all(Path(job["go"] + "." + w).exists() for w in job["workers"]):
                assert time.time() < deadline, "the other worker never started"
                time.sleep(0.002)
        for n in range(job["rounds"]):
            registry.grant(person.id, purposes=["film"], roles=["source"], valid_until=UNTIL,
                           uses=f"scene {n} of the concurrency test film for {name}", operator=job["worker"])
            decision = check_consent(registry, [Involvement(probe, "source", f"probe of {name}")],
                                     purpose="film", media_kind="image", analyzer=analyzer,
                                     operator=job["worker"])
            digest = hashlib.sha256(f"{job['worker']} {name} {n}".encode()).hexdigest()
            sealed = SealedOutput(path=Path(f"/tmp/{digest[:8]}.jpg"), output_id=f"lk1-{digest[:16]}",
                                  sha256=digest, media_type="image/jpeg", kind="swap",
                                  consent_ids=decision.consent_ids, purpose="film")
            registry.record_output(sealed, decision=decision, operator=job["worker"])
print("done", flush=True)
"""
)

ENROL_RACE = (
    PRELUDE
    + """
from likeness.errors import ConsentRefused
print("ready", flush=True)
while not Path(job["go"]).exists():
    time.sleep(0.005)
with Registry.open(home) as registry:
    try:
        person = registry.add_identity(job["name"], job["references"], operator=job["name"])
        print("enrolled", person.id, flush=True)
    except ConsentRefused as refused:
        print("refused", refused.rule, refused.identity_id, flush=True)
"""
)

PAUSE_AND_WAIT = (
    PRELUDE
    + """
from sqlalchemy import event
from sqlalchemy.engine import Engine
seen = [0]

@event.listens_for(Engine, "before_cursor_execute")
def pause(conn, cursor, statement, parameters, context, executemany):
    if " ".join(statement.split()).upper().startswith(job["pause_at"]):
        seen[0] += 1
        if seen[0] == job.get("nth", 1):
            print("PAUSED", flush=True)
            time.sleep(120)  # inside the open write transaction, until the test kills us

with Registry.open(home) as registry:
    step = job["step"]
    if step == "enrol":
        registry.add_identity(job["name"], job["references"], operator="crash")
    elif step == "grant":
        registry.grant(job["identity"], purposes=["film"], roles=["source"], valid_until=UNTIL,
                       uses="scenes 1-3 of the crash test film", operator="crash")
    elif step == "record":
        registry.record_output(job["sealed"], decision=job["decision"], operator="crash")
    elif step == "revoke":
        registry.revoke(job["consent"], reason="withdrawn during the crash test", operator="crash")
    elif step == "erase":
        registry.erase(job["identity"], reason="erasure request", operator="crash")
    elif step == "rotate":
        registry.rotate_data_key(operator="crash")
print("FINISHED", flush=True)
"""
)

GRANT_UNTIL_KILLED = (
    PRELUDE
    + """
with Registry.open(home) as registry:
    n = 0
    while True:
        registry.grant(job["identity"], purposes=["film"], roles=["source"], valid_until=UNTIL,
                       uses=f"scene {n} of the crash test film, until killed", operator="crash")
        n += 1
        print(n, flush=True)
"""
)


@pytest.fixture(scope="module")
def analysed(faces_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """analysed('John_Simm/1.jpg') → (Reference, Face) from the real dlib analyzer, once per photo."""
    analyzer = load_analyzer("dlib", Home(tmp_path_factory.mktemp("models")))
    cache: dict[str, tuple[Reference, object]] = {}

    def get(photo: str):
        if photo not in cache:
            picture = load_image(faces_dir / photo)
            (face,) = analyzer.analyze(picture.pixels)
            cache[photo] = (Reference.from_face(face, picture), face)
        return cache[photo]

    return get


@pytest.fixture(params=["sqlite", "postgres"])
def store_home(request: pytest.FixtureRequest, home: Home) -> Home:
    return home if request.param == "sqlite" else request.getfixturevalue("postgres_home")


def spawn(script: str, home: Home, job: dict, tmp_path: Path, **popen) -> subprocess.Popen:
    job_file = tmp_path / f"job-{time.monotonic_ns()}.pickle"
    job_file.write_bytes(pickle.dumps(job))
    args = [sys.executable, "-c", script, str(home.root), home.db_url_override or "", str(job_file)]
    return subprocess.Popen(args, text=True, **popen)


def count(home: Home, table: str) -> int:
    engine = create_engine(home.db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def assert_whole(registry: Registry) -> None:
    """The registry and the ledger agree on everything, and the chain verifies."""
    report = registry.verify_ledger()  # chain, signatures, every consent and output vs its entry
    assert report.ok, report.reason
    entries = registry.ledger_entries()
    consents = registry.list_consents()
    assert {e.payload["consent_id"] for e in entries if e.kind == "grant"} == {c.id for c in consents}
    assert {c.id for c in consents if c.revoked_at} == {
        e.payload["consent_id"] for e in entries if e.kind == "revoke"
    } | {cid for e in entries if e.kind == "erasure" for cid in e.payload["consents_revoked"]}
    outputs = registry.list_outputs()
    assert {e.payload["output_id"] for e in entries if e.kind == "output"} == {o.output_id for o in outputs}
    people = registry.list_identities()
    assert {e.payload["identity_id"] for e in entries if e.kind == "enrol"} == {p.id for p in people}
    assert {e.payload["identity_id"] for e in entries if e.kind == "erasure"} == {
        p.id for p in people if p.erased_at
    }
    stored = sum(sum(p.references_by_space.values()) for p in people)
    enrolled = sum(e.payload["references"] for e in entries if e.kind in ("enrol", "references_added"))
    erased = sum(e.payload["references_deleted"] for e in entries if e.kind == "erasure")
    assert stored == enrolled - erased, "every stored reference has its enrolment entry"


def test_a_fresh_registry_file_waits_for_another_connection_before_switching_to_wal(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL waits for other connections instead of failing at once.

    SQLite refuses that switch with "database is locked", without calling the busy handler, while
    another connection holds a write lock; two processes opening a fresh data home at the same
    moment used to fail one of them (test_two_processes_enrolling_one_person_at_once, 2 in 25 runs).
    """
    path = tmp_path / "registry.db"
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("CREATE TABLE placeholder (x)")
    holder.execute("BEGIN IMMEDIATE")  # a writer that has not committed yet, as another process may be
    holder.execute("INSERT INTO placeholder VALUES (1)")
    releaser = threading.Timer(0.5, lambda: holder.execute("COMMIT"))
    releaser.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        engine.dispose()
        releaser.join()
        holder.close()


@pytest.mark.slow
def test_two_processes_enrol_grant_and_record_at_once(store_home: Home, analysed, tmp_path: Path) -> None:
    go = tmp_path / "go"
    workers = []
    for worker, people in PEOPLE.items():
        job = {
            "go": str(go),
            "worker": f"worker-{worker}",
            "workers": [f"worker-{w}" for w in PEOPLE],
            "rounds": ROUNDS,
            "people": [
                (name, [analysed(p)[0] for p in refs], analysed(probe)[1]) for name, refs, probe in people
            ],
        }
        workers.append(
            spawn(WORKER, store_home, job, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        )
    assert [w.stdout.readline().strip() for w in workers] == ["ready", "ready"]
    go.touch()  # both children have loaded everything: start them at the same moment
    results = [w.communicate(timeout=180) for w in workers]
    assert [w.returncode for w in workers] == [0, 0], [err[-2000:] for _, err in results]
    assert [out.split() for out, _ in results] == [["done"], ["done"]]

    people = sum(len(p) for p in PEOPLE.values())
    with Registry.open(store_home) as registry:
        assert len(registry.list_identities()) == people
        assert len(registry.list_consents()) == people * ROUNDS
        assert len(registry.list_outputs()) == people * ROUNDS
        entries = registry.ledger_entries()
        assert len(entries) == people * (1 + 2 * ROUNDS)
        assert [e.seq for e in entries] == list(range(1, len(entries) + 1))
        actors = [e.actor for e in entries]
        switches = sum(a != b for a, b in itertools.pairwise(actors))
        assert switches >= 2, f"the two writers' transactions must interleave: {actors}"
        assert_whole(registry)
        # every output was made under a consent of the person whose probe was checked
        for output in registry.list_outputs():
            (consent,) = output.consent_ids
            owner = registry.get_consent(consent).identity_id
            entry = next(e for e in entries if e.seq == output.ledger_seq)
            assert [c["identity_id"] for c in entry.payload["checks"]] == [owner]


@pytest.mark.slow
def test_two_processes_enrolling_one_person_at_once(store_home: Home, analysed, tmp_path: Path) -> None:
    """The duplicate check and the insert share one serialised transaction: only one enrolment wins."""
    go = tmp_path / "go"
    racers = [
        spawn(
            ENROL_RACE,
            store_home,
            {"go": str(go), "name": name, "references": [analysed(photo)[0]]},
            tmp_path,
            stdout=subprocess.PIPE,
        )
        for name, photo in (("John Savage", "John_Savage/1.jpg"), ("J. Savage", "John_Savage/2.jpg"))
    ]
    assert [r.stdout.readline().strip() for r in racers] == ["ready", "ready"]
    go.touch()
    outcomes = sorted(r.communicate(timeout=60)[0].split() for r in racers)
    assert [r.returncode for r in racers] == [0, 0]
    (enrolled, winner), (refused, rule, matched) = outcomes[0], outcomes[1]
    assert (enrolled, refused, rule, matched) == ("enrolled", "refused", "already_enrolled", winner)
    with Registry.open(store_home) as registry:
        assert [p.id for p in registry.list_identities()] == [winner]
        assert [e.payload["identity_id"] for e in registry.ledger_entries("refusal")] == [winner]
        assert_whole(registry)


def enrolled_with_consent(home: Home, analysed) -> tuple[str, str]:
    with Registry.open(home) as registry:
        person = registry.add_identity(
            "John Salley",
            [analysed("John_Salley/1.jpg")[0], analysed("John_Salley/2.jpg")[0]],
            operator="setup",
        )
        consent = registry.grant(
            person.id, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="setup"
        )
    return person.id, consent.id


def gate_decision(home: Home, analysed):
    from likeness.disclosure.types import SealedOutput

    analyzer = load_analyzer("dlib", home)
    with Registry.open(home) as registry:
        decision = check_consent(
            registry,
            [Involvement(analysed("John_Salley/3.jpg")[1], "source", "source photo 3.jpg")],
            purpose="film",
            media_kind="image",
            analyzer=analyzer,
            operator="setup",
        )
    sealed = SealedOutput(
        path=Path("/tmp/never-written.jpg"),
        output_id=f"lk1-{time.monotonic_ns():016x}"[:20],
        sha256="ab" * 32,
        media_type="image/jpeg",
        kind="swap",
        consent_ids=decision.consent_ids,
        purpose="film",
    )
    return decision, sealed


KILL_POINTS = [
    # step, the statement the child stops before (inside its write transaction), what is already written
    pytest.param("enrol", "INSERT INTO LEDGER", id="enrol-identity-and-references-written"),
    pytest.param("grant", "INSERT INTO CONSENTS", id="grant-ledger-entry-written"),
    pytest.param("record", "INSERT INTO OUTPUT_CONSENTS", id="record-output-and-entry-written"),
    pytest.param("revoke", "INSERT INTO LEDGER", id="revoke-row-updated"),
    pytest.param("erase", "UPDATE IDENTITIES", id="erase-references-deleted"),
    pytest.param("rotate", "UPDATE FACE_REFERENCES", id="rotate-first-blob-reencrypted"),
]


@pytest.mark.kill
@pytest.mark.parametrize(("step", "pause_at"), KILL_POINTS)
def test_a_writer_killed_mid_transaction_leaves_nothing_half_done(
    home: Home, analysed, tmp_path: Path, step: str, pause_at: str
) -> None:
    identity, consent = enrolled_with_consent(home, analysed)
    job: dict = {"step": step, "pause_at": pause_at, "identity": identity, "consent": consent}
    if step == "enrol":
        job.update(name="John Simm", references=[analysed("John_Simm/1.jpg")[0]])
    if step == "record":
        job["decision"], job["sealed"] = gate_decision(home, analysed)
    if step == "rotate":
        job["nth"] = 2  # the first blob is already re-encrypted with the new key, in the open transaction
    with Registry.open(home) as registry:
        before = [(e.seq, e.hash) for e in registry.ledger_entries()]
        tables = {t: count(home, t) for t in ("identities", "face_references", "consents", "outputs")}
        tokens = count(home, "face_references")
    child = spawn(PAUSE_AND_WAIT, home, job, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = child.stdout.readline()
        assert line.strip() == "PAUSED", child.stderr.read()[-2000:]
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.communicate(timeout=30)

    with Registry.open(home) as registry:  # a fresh process would see the same files
        assert [(e.seq, e.hash) for e in registry.ledger_entries()] == before, "no entry of the killed write"
        assert {t: count(home, t) for t in tables} == tables, "no row of the killed write"
        assert_whole(registry)
        assert registry.get_consent(consent).revoked_at is None
        assert registry.get_identity(identity).erased_at is None
        assert len(registry.gallery("dlib_resnet_v1")) == 1 and tokens == 2
        # the lock died with the process: the same write now goes through at once
        started = time.monotonic()
        if step == "enrol":
            registry.add_identity("John Simm", job["references"], operator="after the crash")
        elif step == "grant":
            registry.grant(
                identity, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="x"
            )
        elif step == "record":
            registry.record_output(job["sealed"], decision=job["decision"], operator="after the crash")
        elif step == "revoke":
            registry.revoke(consent, reason="withdrawn", operator="after the crash")
        elif step == "erase":
            registry.erase(identity, reason="erasure request", operator="after the crash")
        else:
            assert len(registry.keys.data_keys_path.read_bytes().split()) == 2, "new key kept, old one too"
            assert registry.rotate_data_key(operator="after the crash") == 2
            assert len(registry.gallery("dlib_resnet_v1")[0].embeddings) == 2
        assert time.monotonic() - started < 5
        assert len(registry.ledger_entries()) == len(before) + 1
        assert_whole(registry)


@pytest.mark.postgres
@pytest.mark.kill
def test_postgres_writer_killed_mid_transaction(
    request: pytest.FixtureRequest, analysed, tmp_path: Path
) -> None:
    """The server rolls back a client that dies inside its transaction, and frees the ledger lock."""
    pg_home: Home = request.getfixturevalue("postgres_home")
    identity, consent = enrolled_with_consent(pg_home, analysed)
    job = {"step": "grant", "pause_at": "INSERT INTO CONSENTS", "identity": identity}
    child = spawn(PAUSE_AND_WAIT, pg_home, job, tmp_path, stdout=subprocess.PIPE)
    try:
        assert child.stdout.readline().strip() == "PAUSED"
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        child.kill()
        child.communicate(timeout=30)
    with Registry.open(pg_home) as registry:
        assert [c.id for c in registry.list_consents()] == [consent]
        registry.grant(
            identity, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="x"
        )
        assert len(registry.list_consents()) == 2
        assert_whole(registry)


@pytest.mark.kill
def test_a_writer_killed_during_a_series_of_grants(home: Home, analysed, tmp_path: Path) -> None:
    """Killed at whatever point it has reached: everything committed stays, nothing else appears."""
    identity, _ = enrolled_with_consent(home, analysed)
    child = spawn(GRANT_UNTIL_KILLED, home, {"identity": identity}, tmp_path, stdout=subprocess.PIPE)
    try:
        while int(child.stdout.readline() or 0) < 15:
            assert child.poll() is None, "the writer died by itself"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    with Registry.open(home) as registry:
        consents = registry.list_consents(identity)
        assert len(consents) >= 16
        assert len(registry.ledger_entries()) == 1 + len(consents)
        assert_whole(registry)
        registry.grant(
            identity, purposes=["film"], roles=["source"], valid_until=UNTIL, uses=USES, operator="x"
        )
        assert_whole(registry)


@pytest.mark.slow
def test_revocation_from_another_process_stops_a_queued_job(home: Home, analysed) -> None:
    """A job passes the gate; `likeness consent revoke` runs in another process; its output is refused."""
    identity, consent = enrolled_with_consent(home, analysed)
    decision, sealed = gate_decision(home, analysed)
    assert decision.consent_ids == [consent]
    done = subprocess.run(
        [
            str(LIKENESS),
            "--home",
            str(home.root),
            "consent",
            "revoke",
            consent,
            "--reason",
            "withdrawn",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "revoked"
    with Registry.open(home) as registry:
        with pytest.raises(ConsentRefused) as refused:
            registry.record_output(sealed, decision=decision, operator="queued job")
        assert (refused.value.rule, refused.value.identity_id) == ("revoked", identity)
        assert registry.list_outputs() == [] and registry.ledger_entries("output") == []
        assert registry.ledger_entries("refusal")[-1].payload["stage"] == "record_output"
        assert_whole(registry)
