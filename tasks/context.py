"""The one way jobs get their dependencies: the worker's runtime.

Jobs are entrypoints, like the web views: the process that runs them (the worker, its cron
child, a command, a test) calls `qianxing.wiring.bootstrap(settings)` first, and bootstrap
installs its `Runtime` here. A job (and the enqueue helpers of `tasks.queues`) then calls
`runtime()` and hands what it needs (the sender, the notifiers, the payout adapter, the
settings' values, a Redis client) to the code below it as arguments; nothing under `tasks/`
imports `qianxing.wiring` except the worker's own entrypoints (`tasks.worker`, `tasks.periodic`),
and nothing in bots/, content_ai/ or models/ imports `tasks/` (the import-linter contracts in
pyproject.toml).

This module imports nothing of the wiring, so the wiring may import the job layer (it gives the
sender `tasks.queues.drain_outbound` as its enqueue function) without an import cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from qianxing.wiring import Runtime

_runtime: Runtime | None = None


def install(rt: Runtime | None) -> None:
    """Called by `qianxing.wiring.bootstrap` (and `reset`, with None)."""
    global _runtime
    _runtime = rt


def runtime() -> Runtime:
    """The runtime the process's entrypoint bootstrapped."""
    if _runtime is None:
        raise RuntimeError("no runtime: the process's entrypoint calls qianxing.wiring.bootstrap(settings) "
                           "before any job or enqueue helper runs")
    return _runtime
