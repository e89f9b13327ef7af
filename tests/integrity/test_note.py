"""Signed notes and checkpoints against the reference vectors of golang.org/x/mod/sumdb/note and C2SP."""

from __future__ import annotations

import os
import stat

import pytest

from auditstream.integrity.keys import load_or_create_signer, load_verifier
from auditstream.integrity.note import (
    Checkpoint,
    NoteError,
    SignatureError,
    Signer,
    Verifier,
    open_note,
    sign_note,
    split_notes,
)

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
# The example of the C2SP signed-note specification.
SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
SPEC_NOTE = (
    "This is an example message.\n\n— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)


def test_go_reference_vector() -> None:
    signer = Signer.parse(GO_SKEY)
    assert str(signer) == GO_SKEY
    assert str(signer.verifier) == GO_VKEY
    assert sign_note(GO_TEXT, signer) == GO_NOTE  # Ed25519 is deterministic: byte for byte
    assert open_note(GO_NOTE, Verifier.parse(GO_VKEY)) == GO_TEXT


def test_spec_example_verifies() -> None:
    assert open_note(SPEC_NOTE, Verifier.parse(SPEC_VKEY)) == "This is an example message.\n"


def test_other_key_and_altered_text_are_refused() -> None:
    other = Signer.generate("PeterNeumann")
    with pytest.raises(SignatureError, match="no valid signature by PeterNeumann"):
        open_note(GO_NOTE, other.verifier)
    with pytest.raises(SignatureError):
        open_note(GO_NOTE.replace("cryptography", "cryptograph"), Verifier.parse(GO_VKEY))
    with pytest.raises(NoteError):
        open_note(GO_TEXT, Verifier.parse(GO_VKEY))
    with pytest.raises(NoteError):
        Verifier.parse(GO_VKEY.replace("c74f20a3", "c74f20a4"))


def test_checkpoint_round_trip_and_split() -> None:
    signer = Signer.generate("auditstream")
    cp = Checkpoint("auditstream/acme", 42, bytes(range(32)), ("time 2026-12-01T10:00:00.000Z", "prev abc="))
    assert cp.text().splitlines()[:2] == ["auditstream/acme", "42"]
    second = Checkpoint("auditstream/acme", 43, bytes(32))
    notes = [sign_note(cp.text(), signer), sign_note(second.text(), signer)]
    parsed = [Checkpoint.parse(open_note(n, signer.verifier)) for n in split_notes("".join(notes))]
    assert parsed[0] == cp and parsed[1].size == 43
    assert parsed[0].extension("prev") == "abc="
    with pytest.raises(NoteError):
        Checkpoint.parse("origin\n01\nAAAA\n")


def test_key_file_is_created_once_with_mode_0600(tmp_path) -> None:
    path = tmp_path / "sub" / "checkpoint.key"
    first = load_or_create_signer(path, "auditstream")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = load_or_create_signer(path, "ignored")
    assert str(again) == str(first)
    assert load_verifier(str(first.verifier)) == first.verifier
    assert load_verifier(str(path)) == first.verifier  # a signer key file gives its public half
