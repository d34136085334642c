"""`qianxing vault ...`: the card-key vault (import, key rotation, counts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from qianxing.cli.boot import boot

if TYPE_CHECKING:
    from models.vault import UploadRefused


@click.group()
def vault() -> None:
    """Card-key vault."""


@vault.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sku", required=True, help="SKU code")
def vault_import(file: Path, sku: str) -> None:
    """Import card keys from a CSV file (first column, UTF-8). The file is read as the admin's
    upload reads it (models.vault.read_key_file): a file that is not UTF-8, not a CSV, or has a
    key starting with = + - @ or a tab or CR (a spreadsheet formula) is refused whole, with the
    lines at fault, and nothing is imported."""
    s = boot()
    from models import catalog, inventory
    from models import vault as v
    from models.db import connection
    from models.errors import DomainError

    data = file.read_bytes()
    with connection():
        try:
            target = catalog.get_sku(sku, active_only=False)
            report = v.import_keys(target, v.read_key_file(data))
        except v.UploadRefused as exc:
            raise click.ClickException(_refusal(exc)) from None
        except DomainError as exc:
            raise click.ClickException(exc.message) from None
        inventory.check_low_stock(target.id, s.LOW_STOCK_THRESHOLD)
    click.echo(f"imported {report.imported} keys into {sku}; rejected {report.rejected}")
    for label, lines in (("duplicate in file", report.duplicate_in_file),
                         ("already in pool", report.duplicate_in_pool), ("invalid", report.invalid)):
        if lines:
            click.echo(f"  {label}: lines {', '.join(map(str, lines[:50]))}"
                       + (" ..." if len(lines) > 50 else ""))


def _refusal(exc: UploadRefused) -> str:
    """Why a key file was refused, with the lines at fault (never a key)."""
    hint = {"not_utf8": ' (save it as "CSV UTF-8"; GBK and other encodings are not guessed)',
            "formula_key": " (= + - @, a tab or a CR)"}.get(exc.code, "")
    lines = exc.lines
    where = (f" on lines {', '.join(map(str, lines[:50]))}" + (" ..." if len(lines) > 50 else "")) if lines else ""
    return f"{exc.message}{hint}{where}; nothing imported"


@vault.command("rotate-key")
def vault_rotate() -> None:
    """Re-encrypt every stored key with the first VOUCHER_KEY entry."""
    boot()
    from models import vault as v
    from models.db import connection
    from models.lottery import reseal_seeds
    from models.operators import reseal_totp_secrets

    with connection():
        n = v.rotate_key() + reseal_totp_secrets() + reseal_seeds()
    click.echo(f"re-encrypted {n} secrets with key {v.cipher().current_id}")


@vault.command("status")
@click.option("--sku", required=True)
def vault_status(sku: str) -> None:
    """Key counts by state for a SKU."""
    boot()
    from models import catalog
    from models import vault as v
    from models.db import connection

    with connection():
        click.echo(json.dumps(v.key_counts(catalog.get_sku(sku, active_only=False))))
