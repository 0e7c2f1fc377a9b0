"""The consent registry (identities, consent records, outputs) and the gate that reads it.

- ``registry``: ``Registry.open(home)``: enrol identities from reference faces in one or several
  embedding spaces (encrypted at rest), grant / revoke / erase, record outputs; every mutation is
  one transaction with its ledger entry. A package with one module per concern (core,
  calibrations, identities, consents, outputs, ledger_keys) behind the one ``Registry`` class.
- ``gate``: ``check_consent``: every face a job involves must match exactly one enrolled identity
  (in the analyzer's embedding space) holding a consent that covers this purpose, media kind and
  role, now. ``identify`` is the matching rule alone.
- ``calibration``: ``likeness calibrate``: genuine / impostor distances on a labelled folder, error
  rates per threshold, the chosen operating point.
- ``audit``: the report a rights holder can read (``likeness audit export``).
- ``reembed``: add another backend's embeddings to an identity from its stored face crops.
- ``policy``: the rules from consent/policy.toml (durations, minors, post-mortem terms, thresholds).
- ``records``: the dataclasses (Identity, Reference, ConsentRecord, OutputRecord, OperatingPoint) and
  the gate's decision types (Involvement, Match, GateDecision, GalleryIdentity, Identification).
- ``integrity``: do the tables still match the signed ledger entries that recorded them?
- ``store``: engines and serialised write transactions (SQLite WAL / PostgreSQL); ``schema``: the
  tables; ``keys``: the installation's data-encryption and ledger-signing keys; ``form``: the
  consent form rendered from a record.
"""
