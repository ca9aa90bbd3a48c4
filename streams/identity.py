"""Device identity: per-device keys, signed input, sealed replies.

Kafka's ACLs say which *principal* may write the audio and context topics;
they cannot say which device a record speaks for, since a fleet shares a few
principals and the device id is only a field of the payload. So every device
holds its own 32-byte key, derived from the fleet's master key:

    device_key = HMAC-SHA256(master, "voicestream device v1" || 0x00 || device_id)

and signs each record it sends with a header ``vs-sig``: one version byte
(1), then

    HMAC-SHA256(device_key, topic || 0x00 || record_key || 0x00 || value)

where ``topic`` is the short topic name (``audio``, ``context``; a prefix or
a replay to another cluster keeps signatures valid) and ``record_key`` is the
device id, UTF-8. Workers hold the master key, derive any device's key and
refuse a record whose signature does not verify for the device its key names
(``device-unauthenticated``), or whose payload speaks for another device
(``device-mismatch``). Any Kafka client can sign: the construction is the
few lines above, in any language.

What goes back to devices (their transcripts, decisions and the skills'
answers) is sealed for them on the ``replies`` topic with AES-256-GCM under
``HMAC-SHA256(device_key, "voicestream replies v1")``; the device id is the
associated data, so a record moved under another device's key fails to open.
Devices may read ``replies`` and nothing else the pipeline writes; other
devices' records there are ciphertext to them.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: The record header that carries a device's signature.
HEADER = "vs-sig"
VERSION = 1
KEY_BYTES = 32
_NONCE_BYTES = 12
_DEVICE_LABEL = b"voicestream device v1\x00"
_REPLY_LABEL = b"voicestream replies v1"

__all__ = ["HEADER", "InvalidTag", "device_key", "new_master_key", "open_reply",
           "read_master_key", "seal_reply", "sign", "signature_of", "verify"]


def new_master_key(path: str | Path) -> bytes:
    """Create a fleet master key at ``path`` (hex, readable by its owner only)."""
    key = secrets.token_bytes(KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key.hex() + "\n")
    return key


def read_master_key(path: str | Path) -> bytes:
    """Read a master key written by :func:`new_master_key`."""
    try:
        key = bytes.fromhex(Path(path).read_bytes().decode("ascii").strip())
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or type(exc).__name__}") from None
    except ValueError:  # UnicodeDecodeError too: a binary file is no hex key
        raise ValueError(f"{path}: not a hex key") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{path}: a master key is {KEY_BYTES} bytes, this one {len(key)}")
    return key


def device_key(master: bytes, device_id: str) -> bytes:
    """The key of one device, derived from the fleet's master key."""
    return hmac.digest(master, _DEVICE_LABEL + device_id.encode(), hashlib.sha256)


def sign(key: bytes, topic: str, record_key: bytes, value: bytes) -> bytes:
    """The ``vs-sig`` header value for a record a device sends on ``topic`` (short name)."""
    mac = hmac.digest(key, b"\x00".join((topic.encode(), record_key, value)), hashlib.sha256)
    return bytes([VERSION]) + mac


def verify(key: bytes, topic: str, record_key: bytes, value: bytes,
           signature: bytes | None) -> bool:
    """Whether ``signature`` is the device's signature of this record."""
    if not signature or signature[0] != VERSION:
        return False
    return hmac.compare_digest(signature, sign(key, topic, record_key, value))


def signature_of(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None
                 ) -> bytes | None:
    """The ``vs-sig`` header of a record (Faust gives a mapping or pairs, aiokafka pairs)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in pairs:
        if name == HEADER:
            return bytes(value) if value is not None else None
    return None


def _reply_cipher(key: bytes) -> AESGCM:
    return AESGCM(hmac.digest(key, _REPLY_LABEL, hashlib.sha256))


def seal_reply(key: bytes, device_id: str, plaintext: bytes) -> bytes:
    """Encrypt a reply for one device: nonce || AES-256-GCM(ciphertext || tag)."""
    nonce = secrets.token_bytes(_NONCE_BYTES)
    return nonce + _reply_cipher(key).encrypt(nonce, plaintext, device_id.encode())


def open_reply(key: bytes, device_id: str, sealed: bytes) -> bytes:
    """Decrypt a reply sealed for ``device_id``; raises ``InvalidTag`` if it is not."""
    if len(sealed) < _NONCE_BYTES + 16:
        raise InvalidTag
    nonce, body = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
    return _reply_cipher(key).decrypt(nonce, body, device_id.encode())
