"""What every `qianxing` command starts with: the settings, and the booted runtime.

The command modules of this package import this module, never the package itself, so the
package's `__init__` (which registers them on `main`) is the only place that knows them all.
"""

from __future__ import annotations

import click

from qianxing.settings import Settings, SettingsError, load_settings

OPERATOR = "operator:cli"


def settings() -> Settings:
    """The settings from the environment; a bad setting is a clean CLI error."""
    try:
        return load_settings()
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def boot() -> Settings:
    """The settings, with the runtime (database, queues, gateways) bootstrapped from them."""
    from qianxing.wiring import bootstrap

    current = settings()
    bootstrap(current)
    return current
