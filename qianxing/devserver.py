"""`qianxing run`: the whole service on one machine for development and demos."""

from __future__ import annotations

import os
import re
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
    from qianxing.demo import DEMO_OPERATOR, demo_operator, demo_summary, seed_demo
    from qianxing.wiring import bootstrap

    rt = bootstrap(settings)
    migrate()
    with connection():
        created = seed_demo() if seed else []
        summary = demo_summary()
        demo_password = demo_operator() if seed else None
    env = dict(os.environ)
    if rt.embedded is not None:
        env["REDIS_URL"] = rt.embedded.url  # children share this process's embedded Redis
    exe = [sys.executable, "-m", "qianxing.cli"]
    procs: list[subprocess.Popen] = []

    def stop(*_: object) -> None:
        stop_all(procs)
        if rt.embedded is not None:
            rt.embedded.stop()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)  # before any child starts: a TERM never orphans them
    try:
        for name in ("web", "worker"):
            procs.append(subprocess.Popen([*exe, name], env=env))
    except KeyboardInterrupt:
        stop()
    base = f"http://{settings.WEB_BIND}"
    if rt.embedded is None:
        redis = re.sub(r"//[^/@]*@", "//***@", settings.REDIS_URL or "")  # no password on screen
    elif rt.embedded.owner:
        redis = "embedded, var/redis; `qianxing` commands in other terminals share it"
    else:
        redis = "embedded, var/redis, started by another process: it stops when that one exits"
    demo = "\n".join(f"  {line}" for line in summary)
    click.echo(f"""
千星 Qianxing is running ({settings.QIANXING_ENV}, {settings.DATABASE_URL.split('://')[0]},
redis {redis}).
  API docs      {base}/api/swagger
  OpenAPI       {base}/api/openapi.json
  Products      {base}/api/v1/products
  Health        {base}/healthz
Demo data ({'seeded now' if created else 'already present' if seed else 'not seeded: --no-seed'}):
{demo}
Admin         {base}/admin/  ({f'demo operator "{DEMO_OPERATOR}" (readonly), password {demo_password}'
                               if demo_password else 'qianxing admin create-operator NAME --role owner'})
  your own:   .venv/bin/qianxing admin create-operator NAME --role owner
Try: curl -s -X POST {base}/api/v1/auth/dev-login -H 'Content-Type: application/json' \\
       -d '{{"openid":"demo-buyer"}}'
Operator (another terminal): .venv/bin/qianxing orders show ID, qianxing settle,
  qianxing ledger verify, qianxing chat --as alice; qianxing --help lists them all.
Ctrl-C stops everything.""")
    try:
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        click.echo("a child process exited; stopping", err=True)
    except KeyboardInterrupt:
        pass
    stop()
