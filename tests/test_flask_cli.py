"""`flask --app miniapp_api ...` works: `create_app()` with no argument reads the settings from
the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_flask_routes_lists_the_api(settings):
    # given the test settings in the environment, as a shell with them exported would have
    env = {**os.environ, **{k: str(v) for k, v in settings.model_dump().items() if v is not None}}
    # when flask's own command line builds the app from the factory
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "miniapp_api", "routes"], cwd=ROOT,
                            env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    # then it lists the routes of the real app
    assert result.returncode == 0, result.stderr[-2000:]
    assert "/api/v1/orders" in result.stdout
    assert "/healthz" in result.stdout
