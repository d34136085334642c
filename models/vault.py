"""The card-key vault: AES-GCM encryption at rest, keyed-hash dedupe, CSV import, key rotation.

Plaintext exists only in memory on the way in (import) and on the way out to the owning buyer
(`reveal`). It is never logged, never stored and never put into an exception message.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import os
from dataclasses import dataclass, field
from enum import StrEnum

import peewee as pw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models.catalog import Kind, Sku
from models.db import BaseModel, db, utcnow
from models.errors import DomainError, InvalidInput

MAX_KEY_LENGTH = 512


class KeyState(StrEnum):
    AVAILABLE = "available"
    RESERVED = "reserved"
    SOLD = "sold"
    REVOKED = "revoked"


class CardKey(BaseModel):
    sku = pw.ForeignKeyField(Sku, backref="card_keys", on_delete="RESTRICT")
    key_id = pw.CharField(max_length=32)  # which VOUCHER_KEY encrypted it
    nonce = pw.BlobField()
    ciphertext = pw.BlobField()
    fingerprint = pw.CharField(max_length=64, unique=True)  # HMAC-SHA256, for dedupe
    hint = pw.CharField(max_length=8)  # last characters, for the masked form
    length = pw.IntegerField()
    state = pw.CharField(max_length=16, default=KeyState.AVAILABLE.value)
    order_id = pw.BigIntegerField(null=True, index=True)  # set while reserved or sold
    reserved_at = pw.DateTimeField(null=True)
    sold_at = pw.DateTimeField(null=True)
    created_at = pw.DateTimeField(default=utcnow)

    # Claims and stock counts use the partial index on available keys (migration 0001); an
    # index on (sku, state) would be rewritten by every claim and sale for no query.

    @property
    def masked(self) -> str:
        return mask(self.hint, self.length)


class VaultError(DomainError):
    code = "vault_error"
    status = 500


def mask(hint: str, length: int) -> str:
    return "*" * max(length - len(hint), 4) + hint


def hint_of(value: str) -> str:
    """The tail kept in clear for the masked form: never the whole key, at most a third of a
    short one."""
    n = len(value)
    return value[-4:] if n > 8 else value[-2:] if n > 5 else value[-1:] if n > 2 else ""


@dataclass(frozen=True)
class Sealed:
    key_id: str
    nonce: bytes
    ciphertext: bytes


class Cipher:
    """AES-256-GCM with a key id; the first key encrypts, every key decrypts."""

    def __init__(self, keys: dict[str, bytes], hash_key: str) -> None:
        if not keys:
            raise ValueError("at least one voucher key is required")
        self.current_id = next(iter(keys))
        self._aead = {kid: AESGCM(key) for kid, key in keys.items()}
        self._hash_key = hash_key.encode()

    def fingerprint(self, plaintext: str) -> str:
        return hmac.new(self._hash_key, plaintext.encode(), hashlib.sha256).hexdigest()

    def seal(self, plaintext: str, aad: bytes) -> Sealed:
        nonce = os.urandom(12)
        ct = self._aead[self.current_id].encrypt(nonce, plaintext.encode(), aad)
        return Sealed(self.current_id, nonce, ct)

    def open(self, sealed: Sealed, aad: bytes) -> str:
        aead = self._aead.get(sealed.key_id)
        if aead is None:
            raise VaultError(f"voucher key {sealed.key_id!r} is not configured")
        try:
            return aead.decrypt(bytes(sealed.nonce), bytes(sealed.ciphertext), aad).decode()
        except InvalidTag:
            raise VaultError("a stored secret failed authentication") from None


_cipher: Cipher | None = None


def configure(keys: dict[str, bytes], hash_key: str) -> Cipher:
    global _cipher
    _cipher = Cipher(keys, hash_key)
    return _cipher


def cipher() -> Cipher:
    if _cipher is None:
        raise RuntimeError("vault cipher not configured; call models.vault.configure() at start-up")
    return _cipher


def _aad(fingerprint: str) -> bytes:
    # Binding the ciphertext to its fingerprint stops a swapped ciphertext from decrypting.
    return b"cardkey:" + fingerprint.encode()


def normalise(raw: str) -> str:
    return raw.strip()


# ---- import ------------------------------------------------------------------------------


@dataclass
class ImportReport:
    sku: str
    imported: int = 0
    duplicate_in_file: list[int] = field(default_factory=list)  # 1-based line numbers
    duplicate_in_pool: list[int] = field(default_factory=list)
    invalid: list[int] = field(default_factory=list)

    @property
    def rejected(self) -> int:
        return len(self.duplicate_in_file) + len(self.duplicate_in_pool) + len(self.invalid)


def parse_csv(text: str) -> list[tuple[int, str]]:
    """(line number, key) from a CSV whose first column is the key; a header named
    key/code/card/卡密 is skipped; blank lines are ignored."""
    rows: list[tuple[int, str]] = []
    text = text.removeprefix("\ufeff")  # a spreadsheet's UTF-8 BOM is not part of the header
    for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip():
            continue
        value = normalise(row[0])
        if lineno == 1 and value.lower() in {"key", "code", "card", "card_key", "卡密"}:
            continue
        rows.append((lineno, value))
    return rows


def import_keys(sku: Sku, rows: list[tuple[int, str]]) -> ImportReport:
    """Encrypt and store keys for a card-key SKU, rejecting duplicates inside the input and
    against the whole pool. All accepted keys are written in one transaction.

    Raises InvalidInput if the SKU is not a card-key SKU.
    """
    if sku.kind != Kind.CARD_KEY:
        raise InvalidInput(f"SKU {sku.code} is not a card-key SKU")
    c = cipher()
    report = ImportReport(sku=sku.code)
    seen: dict[str, int] = {}
    candidates: list[tuple[int, str, str]] = []
    for lineno, value in rows:
        if not value or len(value) > MAX_KEY_LENGTH or not value.isprintable():
            report.invalid.append(lineno)
            continue
        fp = c.fingerprint(value)
        if fp in seen:
            report.duplicate_in_file.append(lineno)
            continue
        seen[fp] = lineno
        candidates.append((lineno, value, fp))
    with db.atomic():
        existing: set[str] = set()
        fps = [fp for _, _, fp in candidates]
        for start in range(0, len(fps), 500):
            chunk = fps[start : start + 500]
            q = CardKey.select(CardKey.fingerprint).where(CardKey.fingerprint.in_(chunk))
            existing.update(k.fingerprint for k in q)
        batch = []
        for lineno, value, fp in candidates:
            if fp in existing:
                report.duplicate_in_pool.append(lineno)
                continue
            sealed = c.seal(value, _aad(fp))
            batch.append(
                {
                    "sku": sku.id,
                    "key_id": sealed.key_id,
                    "nonce": sealed.nonce,
                    "ciphertext": sealed.ciphertext,
                    "fingerprint": fp,
                    "hint": hint_of(value),
                    "length": len(value),
                    "state": KeyState.AVAILABLE.value,
                }
            )
        for start in range(0, len(batch), 500):
            CardKey.insert_many(batch[start : start + 500]).execute()
        report.imported = len(batch)
    return report


# ---- reading and rotation ----------------------------------------------------------------


def plaintext_of(key: CardKey) -> str:
    """Decrypt one key. Callers must have checked that the viewer owns it."""
    return cipher().open(Sealed(key.key_id, key.nonce, key.ciphertext), _aad(key.fingerprint))


def seal_serial(sku: Sku, code: str) -> None:
    """Store the shared code of a serial SKU, encrypted."""
    if sku.kind != Kind.SERIAL:
        raise InvalidInput(f"SKU {sku.code} is not a serial SKU")
    sealed = cipher().seal(normalise(code), f"serial:{sku.id}".encode())
    Sku.update(
        serial_key_id=sealed.key_id, serial_nonce=sealed.nonce, serial_ciphertext=sealed.ciphertext
    ).where(Sku.id == sku.id).execute()


def serial_of(sku: Sku) -> str:
    if not sku.serial_ciphertext:
        raise VaultError(f"serial SKU {sku.code} has no code stored")
    sealed = Sealed(sku.serial_key_id, sku.serial_nonce, sku.serial_ciphertext)
    return cipher().open(sealed, f"serial:{sku.id}".encode())


def rotate_key(batch_size: int = 500) -> int:
    """Re-encrypt every card key and serial code not sealed with the current key. Restartable:
    each batch commits on its own and rows already rotated are skipped."""
    c = cipher()
    rotated = 0
    while True:
        with db.atomic():
            keys = list(
                CardKey.select().where(CardKey.key_id != c.current_id).limit(batch_size)
            )
            for key in keys:
                sealed = c.seal(plaintext_of(key), _aad(key.fingerprint))
                CardKey.update(
                    key_id=sealed.key_id, nonce=sealed.nonce, ciphertext=sealed.ciphertext
                ).where(CardKey.id == key.id).execute()
        rotated += len(keys)
        if len(keys) < batch_size:
            break
    with db.atomic():
        for sku in Sku.select().where(
            Sku.serial_ciphertext.is_null(False) & (Sku.serial_key_id != c.current_id)
        ):
            seal_serial(sku, serial_of(sku))
            rotated += 1
    return rotated


def key_counts(sku: Sku) -> dict[str, int]:
    rows = (
        CardKey.select(CardKey.state, pw.fn.COUNT(CardKey.id).alias("n"))
        .where(CardKey.sku == sku)
        .group_by(CardKey.state)
        .tuples()
    )
    counts = {s.value: 0 for s in KeyState}
    counts.update({state: n for state, n in rows})
    return counts
