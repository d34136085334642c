"""Wiring shared by every entrypoint: settings, connections, the `qianxing` command."""
