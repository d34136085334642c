"""The card-key vault: import with dedupe, encryption at rest, key rotation, masking, the CLI."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import settings as h_settings
from hypothesis import strategies as st

from models import catalog, vault
from models.catalog import Kind
from models.db import db
from models.errors import InvalidInput
from models.events import Event
from models.vault import CardKey, KeyState, VaultError
from qianxing import wiring
from qianxing.settings import parse_voucher_keys


def _new_card_sku(code: str):  # noqa: ANN202
    with db.connection_context():
        product = catalog.create_product(f"Product {code}")
        return catalog.create_sku(product, code=code, name=code, kind=Kind.CARD_KEY,
                                  supply_price_fen=500, retail_price_fen=1000)


def _keys_of(sku) -> list[CardKey]:  # noqa: ANN001
    with db.connection_context():
        return list(CardKey.select().where(CardKey.sku == sku.id).order_by(CardKey.id))


# ---- import -------------------------------------------------------------------------------


def test_import_reports_duplicates_in_file_and_pool_and_invalid_lines(shop):
    # given a SKU whose pool already holds one key, and a CSV with a header, a blank line,
    # a duplicate inside the file, a key already in the pool, and bad lines
    sku = shop.card_sku(keys=0, code="VIP")
    with db.connection_context():
        vault.import_keys(sku, [(1, "POOL-KEY-0000001")])
    text = "\n".join([
        "key",                       # 1 header
        "NEW-KEY-0000001",           # 2 ok
        "",                          # 3 blank
        "NEW-KEY-0000002",           # 4 ok
        "  NEW-KEY-0000001  ",       # 5 duplicate of line 2 (after trimming)
        "POOL-KEY-0000001",          # 6 already in the pool
        "BAD\x07KEY",                # 7 not printable
        "X" * (vault.MAX_KEY_LENGTH + 1),  # 8 too long
        '"",extra',                  # 9 empty key
        "NEW-KEY-0000003,batch-7",   # 10 ok, extra columns ignored
    ])
    # when it is imported
    with db.connection_context():
        report = vault.import_keys(sku, vault.parse_csv(text))
    # then exactly the three new keys are stored and every rejection names its line
    assert report.imported == 3
    assert report.duplicate_in_file == [5]
    assert report.duplicate_in_pool == [6]
    assert report.invalid == [7, 8, 9]
    assert report.rejected == 5
    with db.connection_context():
        assert sorted(vault.plaintext_of(k) for k in _keys_of(sku)) == [
            "NEW-KEY-0000001", "NEW-KEY-0000002", "NEW-KEY-0000003", "POOL-KEY-0000001"]
        assert vault.key_counts(sku)[KeyState.AVAILABLE] == 4


def test_the_same_key_cannot_enter_the_pool_of_another_sku(shop):
    # given a key sold under one SKU
    first = shop.card_sku(keys=0, code="A")
    second = shop.card_sku(keys=0, code="B")
    with db.connection_context():
        vault.import_keys(first, [(1, "SHARED-KEY-123456")])
        # when the same key is imported for another SKU
        report = vault.import_keys(second, [(1, "SHARED-KEY-123456"), (2, "OTHER-KEY-123456")])
    # then the fingerprint dedupe rejects it across the whole pool
    assert report.imported == 1 and report.duplicate_in_pool == [1]
    assert len(_keys_of(second)) == 1


def test_importing_the_same_file_twice_adds_nothing_the_second_time(shop):
    # given a file imported once
    sku = shop.card_sku(keys=0)
    rows = [(i, f"ONCE-{i:04d}-ABCDEFG") for i in range(1, 21)]
    with db.connection_context():
        assert vault.import_keys(sku, rows).imported == 20
        # when it is imported again
        again = vault.import_keys(sku, rows)
    # then every line is a pool duplicate and the pool is unchanged
    assert again.imported == 0 and again.duplicate_in_pool == list(range(1, 21))
    assert len(_keys_of(sku)) == 20


def test_import_refuses_a_sku_that_is_not_a_card_key_sku(shop):
    sku = shop.counter_sku(Kind.SERIAL)
    with db.connection_context(), pytest.raises(InvalidInput):
        vault.import_keys(sku, [(1, "SOME-KEY-123456")])
    with db.connection_context():
        assert CardKey.select().count() == 0


def test_ciphertext_at_rest_does_not_contain_the_plaintext(shop):
    # given imported keys
    sku = shop.card_sku(keys=0)
    plain = ["PLAINTEXT-VISIBLE-0001", "PLAINTEXT-VISIBLE-0002"]
    with db.connection_context():
        vault.import_keys(sku, list(enumerate(plain, start=1)))
        # when the raw rows are read straight from the database
        raw = db.execute_sql("SELECT key_id, nonce, ciphertext, fingerprint, hint FROM card_key"
                             ).fetchall()
    # then neither the ciphertext nor any other column holds the plaintext
    assert len(raw) == 2
    for key_id, nonce, ciphertext, fingerprint, hint in raw:
        blob = bytes(ciphertext)
        for p in plain:
            assert p.encode() not in blob and p not in fingerprint and p not in hint
        assert len(bytes(nonce)) == 12 and key_id == "dev1"
    # and two encryptions of different keys use different nonces
    assert bytes(raw[0][1]) != bytes(raw[1][1])


def test_a_tampered_ciphertext_fails_authentication(shop):
    # given a stored key
    sku = shop.card_sku(keys=1)
    key = _keys_of(sku)[0]
    # when one byte of its ciphertext is flipped in the database
    flipped = bytearray(bytes(key.ciphertext))
    flipped[0] ^= 0x01
    with db.connection_context():
        CardKey.update(ciphertext=bytes(flipped)).where(CardKey.id == key.id).execute()
        tampered = CardKey.get_by_id(key.id)
        # then decrypting raises VaultError, without the plaintext in the message
        with pytest.raises(VaultError) as err:
            vault.plaintext_of(tampered)
    assert "SECRET" not in str(err.value)


def test_a_ciphertext_moved_to_another_row_does_not_decrypt(shop):
    # given two stored keys
    sku = shop.card_sku(keys=2)
    a, b = _keys_of(sku)
    # when a's ciphertext is copied onto b's row (same cipher key, valid nonce)
    with db.connection_context():
        CardKey.update(nonce=a.nonce, ciphertext=a.ciphertext).where(CardKey.id == b.id).execute()
        swapped = CardKey.get_by_id(b.id)
        # then the fingerprint-bound AAD refuses it
        with pytest.raises(VaultError):
            vault.plaintext_of(swapped)


def test_a_key_sealed_with_an_unknown_key_id_raises_vault_error(shop):
    sku = shop.card_sku(keys=1)
    key = _keys_of(sku)[0]
    key.key_id = "gone"
    with pytest.raises(VaultError, match="gone"):
        vault.plaintext_of(key)


# ---- rotation -------------------------------------------------------------------------------


@pytest.fixture
def restore_cipher(settings) -> Iterator[None]:  # noqa: ANN001
    yield
    vault.configure(parse_voucher_keys(settings.VOUCHER_KEY or ""), settings.VOUCHER_HASH_KEY or "")


def test_rotate_key_reencrypts_everything_and_the_old_key_can_then_be_dropped(
        settings, shop, restore_cipher):
    # given card keys (in several states) and a serial code sealed with the current key "dev1"
    sku = shop.card_sku(keys=7)
    serial = shop.counter_sku(Kind.SERIAL, serial="SERIAL-ROTATE-987654")
    with db.connection_context():
        CardKey.update(state=KeyState.SOLD).where(CardKey.id == _keys_of(sku)[0].id).execute()
        before = {k.id: vault.plaintext_of(k) for k in _keys_of(sku)}
        old_ciphertexts = {k.id: bytes(k.ciphertext) for k in _keys_of(sku)}
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    assert list(old) == ["dev1"]
    key2 = os.urandom(32)
    hash_key = settings.VOUCHER_HASH_KEY or ""
    # when a new key k2 is put first and the vault is rotated (in small batches)
    vault.configure({"k2": key2, **old}, hash_key)
    with db.connection_context():
        rotated = vault.rotate_key(batch_size=3)
        # then every card key and the serial code were re-encrypted with k2
        assert rotated == 8
        keys = _keys_of(sku)
        assert {k.key_id for k in keys} == {"k2"}
        assert all(bytes(k.ciphertext) != old_ciphertexts[k.id] for k in keys)
        assert catalog.Sku.get_by_id(serial.id).serial_key_id == "k2"
        # and running it again finds nothing left to do
        assert vault.rotate_key() == 0
    # and with the old key dropped everything still decrypts to the same plaintexts
    vault.configure({"k2": key2}, hash_key)
    with db.connection_context():
        assert {k.id: vault.plaintext_of(k) for k in _keys_of(sku)} == before
        assert vault.serial_of(catalog.Sku.get_by_id(serial.id)) == "SERIAL-ROTATE-987654"
        assert vault.key_counts(sku)[KeyState.SOLD] == 1
    # while a cipher holding only the dropped key can no longer read them
    vault.configure(old, hash_key)
    with db.connection_context(), pytest.raises(VaultError):
        vault.plaintext_of(_keys_of(sku)[0])


def test_fingerprints_do_not_change_with_rotation_so_dedupe_keeps_working(
        settings, shop, restore_cipher):
    # given a pool rotated to a new key
    sku = shop.card_sku(keys=2, code="ROT")
    old = parse_voucher_keys(settings.VOUCHER_KEY or "")
    vault.configure({"k2": os.urandom(32), **old}, settings.VOUCHER_HASH_KEY or "")
    with db.connection_context():
        vault.rotate_key()
        # when a key from before the rotation is imported again
        report = vault.import_keys(sku, [(1, "ROT-KEY-000001-SECRET")])
    # then it is still recognised as a pool duplicate
    assert report.duplicate_in_pool == [1] and report.imported == 0


# ---- masking and parsing ---------------------------------------------------------------------


@h_settings(max_examples=200, deadline=None)
@given(st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijk0123456789-", min_size=1, max_size=40))
def test_the_masked_form_never_contains_the_full_key(key: str):
    # given any key of any length, stored with the hint the vault would keep
    hint = vault.hint_of(key)
    # then its masked form does not give the key away
    masked = vault.mask(hint, len(key))
    assert key not in masked
    assert len(hint) < len(key) or len(key) == 0


def test_the_stored_masked_form_shows_only_the_tail(shop):
    # given a short key and a long key
    sku = shop.card_sku(keys=0)
    with db.connection_context():
        vault.import_keys(sku, [(1, "AB"), (2, "ABCDEFGHIJKLMNOP")])
        short, long_ = _keys_of(sku)
    # then neither masked form contains the key, the long one ends with its last four
    assert "AB" not in short.masked
    assert long_.masked.endswith("MNOP") and "ABCDEFGHIJKLMNOP" not in long_.masked
    assert long_.masked.count("*") == 12


def test_parse_csv_skips_known_headers_blank_lines_and_keeps_line_numbers():
    assert vault.parse_csv("key\nA-1\n\nA-2\n") == [(2, "A-1"), (4, "A-2")]
    assert vault.parse_csv("卡密,备注\nB-1,x\n") == [(2, "B-1")]
    assert vault.parse_csv("Card_Key\r\nC-1\r\n") == [(2, "C-1")]
    # a header word that is not on the first line is a value, and data on line 1 is kept
    assert vault.parse_csv("D-1\nkey\n") == [(1, "D-1"), (2, "key")]
    # whitespace around a key is trimmed; a quoted key with a comma stays whole
    assert vault.parse_csv('  E-1  \n"E,2",note\n') == [(1, "E-1"), (2, "E,2")]
    assert vault.parse_csv("") == []


def test_parse_csv_skips_a_header_behind_a_byte_order_mark():
    # given a CSV saved by a spreadsheet with a UTF-8 BOM, decoded as plain UTF-8
    text = "\ufeffkey\nF-1\n"
    # then the header is still recognised rather than imported as a key
    assert vault.parse_csv(text) == [(2, "F-1")]


# ---- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def cli_env(settings, monkeypatch) -> Iterator[None]:  # noqa: ANN001
    """Environment for `qianxing` commands: the test settings, so they hit the same database
    and Redis; the session runtime is rebuilt afterwards."""
    for name, value in settings.model_dump().items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    wiring.reset()
    try:
        yield
    finally:
        wiring.reset()
        wiring.bootstrap(settings)


def test_cli_vault_import_reports_line_numbers_and_rearms_low_stock(shop, cli_env, tmp_path):
    # given a SKU with one key in the pool, flagged low on stock, and a CSV file
    from qianxing.cli import main

    sku = shop.card_sku(keys=1, code="CLI-SKU")
    with db.connection_context():
        catalog.Sku.update(low_stock_threshold=3, low_stock_flag=True).where(
            catalog.Sku.id == sku.id).execute()
    path = tmp_path / "keys.csv"
    path.write_text("key\nCLI-SKU-KEY-000001-SECRET\nCLI-NEW-1-ABCDEF\nCLI-NEW-1-ABCDEF\n"
                    "CLI-NEW-2-ABCDEF\nCLI-NEW-3-ABCDEF\n", encoding="utf-8-sig")
    # when the operator imports it
    result = CliRunner().invoke(main, ["vault", "import", str(path), "--sku", "CLI-SKU"])
    # then the summary and the rejected line numbers are printed
    assert result.exit_code == 0, result.output
    assert "imported 3 keys into CLI-SKU; rejected 2" in result.output
    assert "duplicate in file: lines 4" in result.output
    assert "already in pool: lines 2" in result.output
    assert "SECRET" not in result.output and "ABCDEF" not in result.output
    # and the status command counts them
    status = CliRunner().invoke(main, ["vault", "status", "--sku", "CLI-SKU"])
    assert status.exit_code == 0 and '"available": 4' in status.output
    # and the low-stock flag is re-armed now the pool is above its threshold
    with db.connection_context():
        assert catalog.Sku.get_by_id(sku.id).low_stock_flag is False


def test_cli_vault_import_of_an_unknown_sku_fails_cleanly(shop, cli_env, tmp_path):
    from qianxing.cli import main

    path = tmp_path / "keys.csv"
    path.write_text("SOME-KEY-000001\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["vault", "import", str(path), "--sku", "NOPE"])
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit) or result.exception is None
    assert "unknown SKU" in result.output


def test_cli_rotate_key_uses_the_first_voucher_key(settings, shop, cli_env, monkeypatch,
                                                   restore_cipher):
    # given keys sealed with dev1 and a VOUCHER_KEY that now lists k2 first
    from qianxing.cli import main

    sku = shop.card_sku(keys=3, code="ROT-CLI")
    key2 = base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("VOUCHER_KEY", f"k2:{key2},{settings.VOUCHER_KEY}")
    # when the operator rotates
    result = CliRunner().invoke(main, ["vault", "rotate-key"])
    # then all three are re-encrypted with k2
    assert result.exit_code == 0, result.output
    assert "re-encrypted 3 secrets with key k2" in result.output
    assert {k.key_id for k in _keys_of(sku)} == {"k2"}


def test_import_writes_no_event_and_no_plaintext_anywhere_but_the_ciphertext(shop):
    sku = shop.card_sku(keys=3, code="QUIET")
    with db.connection_context():
        assert Event.select().count() == 0
        rows = db.execute_sql("SELECT * FROM card_key").fetchall()
    assert "QUIET-KEY" not in repr(rows)
    assert len(_keys_of(sku)) == 3
