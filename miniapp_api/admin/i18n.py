"""The admin's languages: Chinese (zh_CN, the default) and English.

Our own admin strings are written in Chinese in the code and templates (`_("订单")`), so the
default needs no catalog; the English catalog is the .po files in `translations/en/` (one per
area of the admin, so pages can be added without touching one shared file). They are merged and
compiled once per process into var/admin-i18n (no compiled files in the repository).
Flask-Admin's own strings come from the catalogs it ships (zh_Hans_CN, en).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, request, session
from flask_babel import Babel

SOURCE = Path(__file__).parent / "translations"
LANGUAGES = {"zh_CN": "中文", "en": "English"}
LANG_KEY = "qx_lang"


def compile_catalogs(target: Path) -> Path:
    """Merge translations/<lang>/*.po into <target>/<lang>/LC_MESSAGES/messages.mo."""
    for lang_dir in sorted(p for p in SOURCE.iterdir() if p.is_dir()):
        merged = Catalog(locale=lang_dir.name, domain="messages")
        for po in sorted(lang_dir.glob("*.po")):
            with po.open("rb") as fh:
                for message in read_po(fh, locale=lang_dir.name):
                    if message.id and message.string:
                        merged.add(message.id, message.string)
        out = target / lang_dir.name / "LC_MESSAGES"
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".mo.tmp")
        with os.fdopen(fd, "wb") as fh:
            write_mo(fh, merged)
        os.replace(tmp, out / "messages.mo")  # several web workers may compile at once
    return target


def select_locale() -> str:
    from miniapp_api.deps import runtime

    chosen = session.get(LANG_KEY) if request else None
    return chosen if chosen in LANGUAGES else runtime().settings.ADMIN_LOCALE


def init(app: Flask, var_dir: Path) -> None:
    directory = compile_catalogs(var_dir / "admin-i18n")
    Babel(app, locale_selector=select_locale, default_translation_directories=str(directory))
