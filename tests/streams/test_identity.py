"""Device keys, signatures and sealed replies (streams.identity)."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import identity

MASTER = bytes(range(32))


def test_a_device_key_is_the_documented_derivation() -> None:
    # What a device maker implements in another language, spelled out.
    want = hmac.new(MASTER, b"voicestream device v1\x00kitchen-1", hashlib.sha256).digest()
    assert identity.device_key(MASTER, "kitchen-1") == want
    assert identity.device_key(MASTER, "kitchen-2") != want
    sig = identity.sign(want, "audio", b"kitchen-1", b"value")
    assert sig == b"\x01" + hmac.new(want, b"audio\x00kitchen-1\x00value",
                                     hashlib.sha256).digest()


@given(value=st.binary(max_size=512), device=st.text(min_size=1, max_size=40),
       flip=st.integers(min_value=0))
def test_a_signature_verifies_for_its_record_only(value: bytes, device: str, flip: int) -> None:
    key = identity.device_key(MASTER, device)
    rkey = device.encode()
    sig = identity.sign(key, "audio", rkey, value)
    assert identity.verify(key, "audio", rkey, value, sig)
    # Another topic, another device's key, another value, a changed byte: refused.
    assert not identity.verify(key, "context", rkey, value, sig)
    assert not identity.verify(identity.device_key(MASTER, device + "x"), "audio", rkey,
                               value, sig)
    assert not identity.verify(key, "audio", rkey, value + b"\x00", sig)
    broken = bytearray(sig)
    broken[flip % len(sig)] ^= 0x01
    assert not identity.verify(key, "audio", rkey, value, bytes(broken))
    assert not identity.verify(key, "audio", rkey, value, None)
    assert not identity.verify(key, "audio", rkey, value, b"")


def test_the_signature_header_is_found_in_pairs_and_mappings() -> None:
    assert identity.signature_of([("a", b"1"), ("vs-sig", b"\x01xy")]) == b"\x01xy"
    assert identity.signature_of({"vs-sig": b"\x01z"}) == b"\x01z"
    assert identity.signature_of(None) is None
    assert identity.signature_of([("other", b"1")]) is None


def test_a_reply_opens_for_its_device_only() -> None:
    mine, theirs = identity.device_key(MASTER, "a"), identity.device_key(MASTER, "b")
    sealed = identity.seal_reply(mine, "a", b'{"type": "directive"}')
    assert identity.open_reply(mine, "a", sealed) == b'{"type": "directive"}'
    assert b"directive" not in sealed
    # Another device's key, or the record moved under another device's id: no.
    with pytest.raises(identity.InvalidTag):
        identity.open_reply(theirs, "b", sealed)
    with pytest.raises(identity.InvalidTag):
        identity.open_reply(mine, "b", sealed)
    with pytest.raises(identity.InvalidTag):
        identity.open_reply(mine, "a", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    with pytest.raises(identity.InvalidTag):
        identity.open_reply(mine, "a", b"short")
    # Each seal has its own nonce: the same reply twice does not look the same.
    assert identity.seal_reply(mine, "a", b"x") != identity.seal_reply(mine, "a", b"x")


def test_a_master_key_file_is_private_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "master.key"
    key = identity.new_master_key(path)
    assert identity.read_master_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        identity.new_master_key(path)
    (tmp_path / "short.key").write_text("abcd\n")
    with pytest.raises(ValueError, match="32 bytes"):
        identity.read_master_key(tmp_path / "short.key")
    (tmp_path / "bad.key").write_text("not hex\n")
    with pytest.raises(ValueError, match="not a hex key"):
        identity.read_master_key(tmp_path / "bad.key")
