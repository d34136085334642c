"""The browser harness itself: a real chromium reaches the app served on 127.0.0.1, and the
admin's vendored chart library loads and draws in it."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Flask, url_for
from playwright.sync_api import Page, expect

import miniapp_api

ADMIN_STATIC = (Path(miniapp_api.__file__).parent / "admin" / "static").resolve()
ECHARTS = "vendor/echarts/echarts.min.js"


def admin_static_url(app: Flask, filename: str) -> str | None:
    """The URL of `filename` in miniapp_api/admin/static/, from whichever blueprint serves that
    folder (Flask-Admin's own /admin/static/ serves flask_admin's files); None without one."""
    for name, blueprint in app.blueprints.items():
        folder = blueprint.static_folder
        if folder and Path(folder).resolve() == ADMIN_STATIC:
            with app.test_request_context():
                return url_for(f"{name}.static", filename=filename)
    return None


def test_healthz_in_the_browser(page: Page) -> None:
    """Given the app served over HTTP with its database and Redis up,
    when chromium opens /healthz,
    then it gets a 200 JSON document saying everything is ok."""
    response = page.goto("/healthz")

    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("application/json")
    assert json.loads(page.locator("body").inner_text()) == {"status": "ok", "database": "ok", "redis": "ok"}


def test_vendored_echarts_loads_and_draws_a_chart(page: Page, app: Flask) -> None:
    """Given the ECharts build vendored in the admin's static files,
    when a page loads it from the admin's static URL (/admin/assets/vendor/echarts/echarts.min.js),
    then it is served as JavaScript, defines `echarts` 5.x, and draws a chart on a canvas."""
    url = admin_static_url(app, ECHARTS)
    assert url == "/admin/assets/vendor/echarts/echarts.min.js"
    response = page.request.get(url, max_redirects=0)  # no login needed for static files
    assert response.status == 200, f"GET {url}: {response.status}"
    assert "javascript" in response.headers["content-type"]

    page.goto("/healthz")  # any page of the app: the script comes from the same origin
    page.set_content('<div id="chart" style="width: 480px; height: 320px"></div>')
    page.add_script_tag(url=url)
    version = page.evaluate("""() => {
        const chart = echarts.init(document.getElementById('chart'));
        chart.setOption({animation: false, xAxis: {type: 'category', data: ['一', '二', '三']},
                         yAxis: {type: 'value'}, series: [{type: 'bar', data: [3, 1, 2]}]});
        return echarts.version;
    }""")

    assert version.startswith("5.")
    expect(page.locator("#chart canvas")).to_have_count(1)
