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
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import peewee as pw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models.catalog import Kind, Sku
from models.db import BaseModel, db, execute, placeholders, utcnow
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


LOOKUP_CHUNK = 1000  # fingerprints per pool lookup
INSERT_CHUNK = 1000  # keys per INSERT (9,000 parameters: under SQLite's 32,766)
_COLUMNS = ("sku_id", "key_id", "nonce", "ciphertext", "fingerprint", "hint", "length", "state", "created_at")
_ROW = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"


def import_keys(sku: Sku, rows: list[tuple[int, str]]) -> ImportReport:
    """Encrypt and store keys for a card-key SKU, rejecting duplicates inside the input and
    against the whole pool. All accepted keys are written in one transaction.

    The pool lookup and the INSERTs are raw multi-row SQL: peewee's query builder spent about
    three quarters of the time building the INSERTs (100,000 keys: 12.9 s on PostgreSQL).

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
        for start in range(0, len(fps), LOOKUP_CHUNK):
            chunk = fps[start : start + LOOKUP_CHUNK]
            found = execute(f"SELECT fingerprint FROM card_key WHERE fingerprint IN ({placeholders(chunk)})", chunk)
            existing.update(fp for (fp,) in found.fetchall())
        now = CardKey.created_at.db_value(utcnow())
        batch: list[tuple] = []
        for lineno, value, fp in candidates:
            if fp in existing:
                report.duplicate_in_pool.append(lineno)
                continue
            sealed = c.seal(value, _aad(fp))
            batch.append((sku.id, sealed.key_id, sealed.nonce, sealed.ciphertext, fp, hint_of(value), len(value),
                          KeyState.AVAILABLE.value, now))
        for start in range(0, len(batch), INSERT_CHUNK):
            chunk = batch[start : start + INSERT_CHUNK]
            execute(f"INSERT INTO card_key ({', '.join(_COLUMNS)}) VALUES "
                    + ", ".join([_ROW] * len(chunk)), [v for row in chunk for v in row])
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


def rotate_key(batch_size: int = 500, progress: Callable[[int], None] | None = None) -> int:
    """Re-encrypt every card key and serial code not sealed with the current key. Restartable:
    each batch commits on its own and rows already rotated are skipped. `progress(rotated)` is
    called after each committed batch with the running total."""
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
        if progress is not None:
            progress(rotated)
        if len(keys) < batch_size:
            break
    with db.atomic():
        for sku in Sku.select().where(
            Sku.serial_ciphertext.is_null(False) & (Sku.serial_key_id != c.current_id)
        ):
            seal_serial(sku, serial_of(sku))
            rotated += 1
    if progress is not None:
        progress(rotated)
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


# ---- uploads, counts and rotation progress (the admin) ---------------------------------------

# A cell that starts with one of these is a formula to a spreadsheet: a key like that is refused
# (it would run in whoever opens an export of it), checked before surrounding spaces are trimmed.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Keys per uploaded file: an upload is imported inside one web request (gunicorn's 30 s timeout).
# import_keys writes about 20,000-28,000 keys a second on PostgreSQL (100,000 keys of a 5 MB file:
# 4-5 s with the upload's checks, under load), so the largest upload stays under 10 s. Larger
# batches: the CLI.
MAX_UPLOAD_KEYS = 100_000


class UploadRefused(InvalidInput):
    """A key file refused as a whole (nothing is imported): `code` is `too_large`, `not_utf8`,
    `not_csv`, `empty`, `too_many_keys` or `formula_key`; `lines` the 1-based lines at fault
    (formula keys); `limit` the limit exceeded (bytes or keys)."""

    def __init__(self, message: str, *, code: str, lines: list[int] | None = None, limit: int = 0) -> None:
        super().__init__(message, code=code)
        self.lines = lines or []
        self.limit = limit


def read_upload(data: bytes, max_bytes: int, max_keys: int = MAX_UPLOAD_KEYS) -> list[tuple[int, str]]:
    """The (line, key) rows of an uploaded key file: `read_key_file`, after the size check a
    file from a browser needs (at most `max_bytes`) and with 1 to `max_keys` keys. Raises
    UploadRefused; the message never holds a key."""
    if len(data) > max_bytes:
        raise UploadRefused(f"the file is over {max_bytes} bytes", code="too_large", limit=max_bytes)
    rows = read_key_file(data)
    if not rows:
        raise UploadRefused("the file holds no keys", code="empty")
    if len(rows) > max_keys:
        raise UploadRefused(f"the file holds more than {max_keys} keys", code="too_many_keys", limit=max_keys)
    return rows


def read_key_file(data: bytes) -> list[tuple[int, str]]:
    """The (line, key) rows of a key file, the rows `parse_csv` gives, or UploadRefused for the
    whole file (nothing is imported): not UTF-8 (`not_utf8`: a BOM is allowed, anything else
    such as GBK is refused, never guessed), not a readable CSV (`not_csv`), or a key that starts
    with a formula character (`formula_key`, `lines` the lines at fault). The admin's upload and
    `qianxing vault import` read files through it. The message never holds a key."""
    try:
        text = data.decode("utf-8-sig")  # strict: one bad byte refuses the file
    except UnicodeDecodeError:
        raise UploadRefused("the file is not UTF-8", code="not_utf8") from None
    try:
        formula = [lineno for lineno, row in enumerate(csv.reader(io.StringIO(text)), start=1)
                   if row and (row[0].startswith(FORMULA_START) or normalise(row[0]).startswith(FORMULA_START))]
        rows = parse_csv(text)
    except csv.Error:
        raise UploadRefused("the file is not a readable CSV", code="not_csv") from None
    if formula:
        raise UploadRefused("keys start with a formula character", code="formula_key", lines=formula)
    return rows


def counts_by_sku(sku_ids: list[int]) -> dict[int, dict[str, int]]:
    """key_counts for many SKUs in one grouped query."""
    result = {sku_id: {s.value: 0 for s in KeyState} for sku_id in sku_ids}
    if not sku_ids:
        return result
    rows = (CardKey.select(CardKey.sku, CardKey.state, pw.fn.COUNT(CardKey.id))
            .where(CardKey.sku.in_(sku_ids)).group_by(CardKey.sku, CardKey.state).tuples())
    for sku_id, state, n in rows:
        result[sku_id][state] = n
    return result


@dataclass(frozen=True)
class MaskedKey:
    id: int
    masked: str
    state: str
    order_id: int | None
    created_at: object


def masked_keys(sku: Sku, limit: int = 50) -> list[MaskedKey]:
    """The newest keys of a SKU in their masked form; the sealed columns are not even read."""
    query = (CardKey.select(CardKey.id, CardKey.hint, CardKey.length, CardKey.state, CardKey.order_id,
                            CardKey.created_at)
             .where(CardKey.sku == sku).order_by(CardKey.id.desc()).limit(limit))
    return [MaskedKey(k.id, mask(k.hint, k.length), k.state, k.order_id, k.created_at) for k in query]


def sealed_by_key_id() -> dict[str, int]:
    """How many secrets (card keys and serial codes) each VOUCHER_KEY id has sealed."""
    counts: dict[str, int] = {}
    for kid, n in CardKey.select(CardKey.key_id, pw.fn.COUNT(CardKey.id)).group_by(CardKey.key_id).tuples():
        counts[kid] = counts.get(kid, 0) + n
    serials = (Sku.select(Sku.serial_key_id, pw.fn.COUNT(Sku.id)).where(Sku.serial_ciphertext.is_null(False))
               .group_by(Sku.serial_key_id).tuples())
    for kid, n in serials:
        counts[kid] = counts.get(kid, 0) + n
    return counts


def rotation_pending() -> int:
    """Secrets not yet sealed with the current key (what `rotate_key` has left to do)."""
    current = cipher().current_id
    return (CardKey.select().where(CardKey.key_id != current).count()
            + Sku.select().where(Sku.serial_ciphertext.is_null(False) & (Sku.serial_key_id != current)).count())
