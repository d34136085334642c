"""`qianxing migrate | seed-demo | web | worker | run`: the schema, demo data and the processes."""

from __future__ import annotations

import click

from qianxing.cli.boot import boot, settings


@click.command()
def migrate() -> None:
    """Apply pending schema migrations."""
    boot()
    from models.migrations import migrate as run

    applied = run()
    click.echo("applied: " + ", ".join(applied) if applied else "schema is up to date")


@click.command("seed-demo")
@click.option("--keys", default=50, show_default=True, help="card keys per demo SKU")
def seed_demo(keys: int) -> None:
    """Create the demo catalog and vault (skips if present)."""
    boot()
    from models.db import connection
    from qianxing.demo import demo_summary
    from qianxing.demo import seed_demo as run

    with connection():
        done = run(keys)
        summary = demo_summary()
    click.echo("\n".join(done) if done else "demo data already present")
    click.echo("\n".join(summary))


@click.command()
def web() -> None:
    """Serve the Flask app with gunicorn (WEB_BIND, WEB_WORKERS, WEB_THREADS)."""
    from qianxing.server import serve

    serve(settings())


@click.command()
@click.option("--burst", is_flag=True, help="process what is queued, then exit")
@click.option("--no-cron", is_flag=True, help="do not run the periodic-job scheduler")
def worker(burst: bool, no_cron: bool) -> None:
    """Run an RQ worker with the scheduler and the periodic jobs."""
    from tasks.worker import run_worker

    run_worker(settings(), burst=burst, with_cron=not no_cron)


@click.command()
@click.option("--no-seed", is_flag=True)
def run(no_seed: bool) -> None:
    """Development: migrate, seed demo data, start web and worker; Ctrl-C stops all."""
    from qianxing.devserver import run_all

    run_all(settings(), seed=not no_seed)
