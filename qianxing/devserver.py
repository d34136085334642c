"""`qianxing run`: the whole service on one machine for development and demos."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import click

from qianxing.processes import stop_all
from qianxing.settings import Settings


def run_all(settings: Settings, *, seed: bool = True) -> None:
    from models.db import connection
    from models.migrations import migrate
    from qianxing.demo import seed_demo
    from qianxing.wiring import bootstrap

    rt = bootstrap(settings)
    migrate()
    if seed:
        with connection():
            seed_demo()
    env = dict(os.environ)
    if rt.embedded is not None:
        env["REDIS_URL"] = rt.embedded.url  # children share this process's embedded Redis
    exe = [sys.executable, "-m", "qianxing.cli"]
    procs = [subprocess.Popen([*exe, "web"], env=env), subprocess.Popen([*exe, "worker"], env=env)]
    base = f"http://{settings.WEB_BIND}"
    click.echo(f"""
千星 Qianxing is running ({settings.QIANXING_ENV}, {settings.DATABASE_URL.split('://')[0]},
redis {'embedded' if rt.embedded else settings.REDIS_URL}).
  API docs      {base}/api/swagger
  OpenAPI       {base}/api/openapi.json
  Products      {base}/api/v1/products
  Health        {base}/healthz
Try: curl -s -X POST {base}/api/v1/auth/dev-login -H 'Content-Type: application/json' \\
       -d '{{"openid":"demo-buyer"}}'
Ctrl-C stops everything.""")

    def stop(*_: object) -> None:
        stop_all(procs)
        if rt.embedded is not None:
            rt.embedded.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        click.echo("a child process exited; stopping", err=True)
    except KeyboardInterrupt:
        pass
    stop()
