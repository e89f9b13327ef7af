"""Tamper evidence: a per-tenant RFC 9162 Merkle log over stored events, with signed checkpoints.

Modules, each with one job: ``merkle`` (hashing, proofs), ``canonical`` (leaf data),
``note`` (C2SP signed notes and checkpoints), ``keys`` (the signing key), ``ledger``
(the ClickHouse tables), ``sealer`` (the feed follower that appends leaves and signs
checkpoints), ``verify`` (online and offline verification), ``bundle`` (the proof line of an export),
``service`` (wiring from settings).
"""
