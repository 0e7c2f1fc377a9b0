"""The consent registry (identities, consent records, outputs) and the gate that reads it.

- ``registry``: ``Registry.open(home)``: enrol identities from reference faces (encrypted at rest),
  grant / revoke / erase, record outputs; every mutation is one transaction with its ledger entry.
- ``gate``: ``check_consent``: every face a job involves must match exactly one enrolled identity
  holding a consent that covers this purpose, media kind and role, now.
- ``policy``: the rules from consent/policy.toml (durations, minors, post-mortem terms, thresholds).
- ``records``: the dataclasses (Identity, Reference, ConsentRecord, OutputRecord, OperatingPoint).
- ``keys``: the installation's data-encryption and ledger-signing keys; ``schema``: the tables;
  ``form``: the consent form rendered from a record.
"""
