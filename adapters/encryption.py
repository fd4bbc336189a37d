"""Payload encryption: every payload our processes hand to Temporal is AES-256-GCM ciphertext.

Prompts, tool results, graph inputs and answers would otherwise sit in plaintext in Temporal's
history (and in the claim-checked blobs in Redis), readable by whoever operates the Temporal
service. This codec runs in every process that talks to Temporal (worker, ingress, CLI, codec
server), so workflow code never sees it.

- Keys by id: `ENCRYPTION_KEYS` (`id=<base64 of 32 bytes>,…`) and/or `ENCRYPTION_KEY_FILE` (one
  `id=<base64>` a line, `#` comments); `ENCRYPTION_KEY_ID` names the current one (required when
  there are several, so adding a key never silently switches the writers).
- Each payload names its key id in its metadata: rotation is "add the new key everywhere, then make
  it current"; payloads written with an older key stay readable while that key is listed.
- The whole original payload (its metadata too: `json/plain`, the pydantic type) is serialised,
  compressed with zlib when that saves at least an eighth, and encrypted. The key id and the
  compression flag are the associated data, so neither can be swapped without failing the tag.
- Payloads without our encoding pass through decode untouched: histories written before
  encryption was switched on stay readable.
- The nonce is synthetic: an HMAC of the payload under a key derived from the data key (HKDF),
  so the same payload encrypts to the same bytes. Content-addressed payload storage keeps working
  (a value stored once is not stored again, and a replay re-uploads nothing), at the price of
  showing that two payloads are equal, which their storage keys show anyway. Distinct payloads
  never share a nonce (short of an HMAC-SHA256 collision).

The cipher is `cryptography`'s AESGCM; nothing here is hand-rolled crypto.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

from adapters.settings import Settings
from core.errors import ContractError

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
COMPRESSION = "encryption-compression"
ZLIB = b"zlib"
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce, synthetic: derived from the payload (see above)
COMPRESS_FROM = 512  # smaller payloads rarely shrink enough to pay for the work


class DecryptionError(RuntimeError):
    """A payload cannot be decrypted: its key is not configured here, or it was tampered with."""


@dataclass(frozen=True)
class KeyRing:
    keys: dict[str, bytes] = field(repr=False)  # id -> 32 bytes; never printed
    current: str

    @property
    def key_ids(self) -> list[str]:
        return list(self.keys)


def parse_keys(text: str, where: str) -> dict[str, bytes]:
    """`id=<base64>` entries separated by commas or new lines; `#` starts a comment."""
    keys: dict[str, bytes] = {}
    for line in text.replace(",", "\n").splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        key_id, sep, encoded = entry.partition("=")
        key_id = key_id.strip()
        if not sep or not key_id:
            raise ContractError(f"{where}: expected id=<base64 key>, got an entry without an id (values are not shown)")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ContractError(f"{where}: key {key_id!r} is not base64") from None
        if len(key) != KEY_BYTES:
            raise ContractError(f"{where}: key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES} (generate one: `openssl rand -base64 32`)")
        if key_id in keys:
            raise ContractError(f"{where}: key id {key_id!r} is listed twice")
        keys[key_id] = key
    return keys


def key_ring(settings: Settings) -> KeyRing | None:
    """The configured keys, or None when encryption is off (no keys at all)."""
    keys = parse_keys(settings.encryption_keys.get_secret_value(), "ENCRYPTION_KEYS")
    if settings.encryption_key_file:
        try:
            text = Path(settings.encryption_key_file).read_text()
        except OSError as exc:
            raise ContractError(f"ENCRYPTION_KEY_FILE: cannot read {settings.encryption_key_file}: {exc.strerror}") from None
        for key_id, key in parse_keys(text, f"ENCRYPTION_KEY_FILE {settings.encryption_key_file}").items():
            if keys.get(key_id, key) != key:
                raise ContractError(f"key id {key_id!r} has different keys in ENCRYPTION_KEYS and ENCRYPTION_KEY_FILE")
            keys[key_id] = key
    if not keys:
        if settings.encryption_key_id:
            raise ContractError(f"ENCRYPTION_KEY_ID is {settings.encryption_key_id!r} but no keys are configured (ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE)")
        return None
    current = settings.encryption_key_id
    if current is None:
        if len(keys) > 1:
            raise ContractError(f"several encryption keys ({', '.join(keys)}): set ENCRYPTION_KEY_ID to the one new payloads use")
        [current] = keys
    if current not in keys:
        raise ContractError(f"ENCRYPTION_KEY_ID {current!r} is not among the configured keys ({', '.join(keys)})")
    return KeyRing(keys, current)


def new_key() -> str:
    """A fresh key, base64 (what `openssl rand -base64 32` prints)."""
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def ensure_key_file(path: Path, key_id: str) -> Path:
    """A key file with one key, created (owner-only) when missing; kept as is when present, so
    histories written before a restart stay readable."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"# AES-256 payload keys (adapters/encryption.py): id=<base64>; keep old ones while histories use them\n{key_id}={new_key()}\n")
    return path


class EncryptionCodec(PayloadCodec):
    def __init__(self, ring: KeyRing):
        self._ring = ring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in ring.keys.items()}
        self._nonce_keys = {key_id: _nonce_key(key) for key_id, key in ring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        plain = payload.SerializeToString(deterministic=True)
        compression = b""
        if len(plain) >= COMPRESS_FROM:
            packed = zlib.compress(plain, 6)
            if len(packed) <= len(plain) * 7 // 8:
                plain, compression = packed, ZLIB
        key_id = self._ring.current
        associated = _associated(key_id.encode(), compression)
        nonce = _synthetic_nonce(self._nonce_keys[key_id], associated, plain)
        sealed = self._ciphers[key_id].encrypt(nonce, plain, associated)
        metadata = {"encoding": ENCODING, KEY_ID: key_id.encode()}
        if compression:
            metadata[COMPRESSION] = compression
        return Payload(metadata=metadata, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"")
        compression = payload.metadata.get(COMPRESSION, b"")
        cipher = self._ciphers.get(key_id.decode(errors="replace"))
        if cipher is None:
            raise DecryptionError(
                f"payload encrypted with key {key_id.decode(errors='replace')!r}, which is not configured here "
                f"(configured: {', '.join(self._ring.key_ids)}); add it to ENCRYPTION_KEYS or ENCRYPTION_KEY_FILE"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _associated(key_id, compression))
        except InvalidTag:
            raise DecryptionError(f"payload encrypted with key {key_id.decode(errors='replace')!r} fails authentication (wrong key material, or altered)") from None
        if compression == ZLIB:
            plain = zlib.decompress(plain)
        elif compression:
            raise DecryptionError(f"unknown payload compression {compression!r}")
        restored = Payload()
        restored.ParseFromString(plain)
        return restored


def _nonce_key(key: bytes) -> bytes:
    """A key for the nonces, independent of the data key it is derived from."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"dago-payload-nonce-v1").derive(key)


def _synthetic_nonce(nonce_key: bytes, associated: bytes, plain: bytes) -> bytes:
    mac = hmac.HMAC(nonce_key, hashes.SHA256())
    mac.update(associated)
    mac.update(plain)
    return mac.finalize()[:NONCE_BYTES]


def _associated(key_id: bytes, compression: bytes) -> bytes:
    return b"dago-payload-v1\0" + key_id + b"\0" + compression


class CodecChain(PayloadCodec):
    """Codecs applied in order on encode and in reverse on decode (temporalio has no composite
    codec): encryption first, so what a later codec (the claim check) stores is ciphertext."""

    def __init__(self, codecs: Sequence[PayloadCodec]):
        self._codecs = list(codecs)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        for codec in self._codecs:
            out = await codec.encode(out)
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = list(payloads)
        for codec in reversed(self._codecs):
            out = await codec.decode(out)
        return out
