"""The Flask application: mini-program API, webhooks and health."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, jsonify
from flask.json.provider import DefaultJSONProvider
from flask_openapi3 import Info, OpenAPI
from redis import ConnectionPool, Redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.middleware.proxy_fix import ProxyFix

from miniapp_api import deps, errors, schemas
from models.db import db
from qianxing.settings import VAR_DIR, Settings
from qianxing.wiring import bootstrap

health_log = logging.getLogger("miniapp_api.health")


def _probe_client(redis: Redis) -> Redis:
    """A client on the same server as `redis` for /healthz: it gives up after a second and
    never retries, so a hung Redis makes the probe answer 503 instead of hanging it."""
    pool = redis.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_connect_timeout": 1, "socket_timeout": 1,
              "retry": Retry(NoBackoff(), 0)}
    return Redis(connection_pool=ConnectionPool(connection_class=pool.connection_class, **kwargs))


class JSONProvider(DefaultJSONProvider):
    """Deeply nested JSON makes the decoder raise RecursionError, which request.get_json()
    does not treat as bad JSON; turn it into the ValueError it handles (a 400)."""

    ensure_ascii = False

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def create_app(settings: Settings | None = None) -> Flask:
    """The app; with no settings (`flask --app miniapp_api routes`, `flask shell`) they are read
    from the environment."""
    if settings is None:
        from qianxing.settings import get_settings

        settings = get_settings()
    rt = bootstrap(settings)
    app = OpenAPI(
        __name__,
        info=Info(title="千星 Qianxing mini-program API", version="1.0.0"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        validation_error_status=400,
        validation_error_model=errors.ErrorOut,
        validation_error_callback=errors.validation_error,
        doc_prefix="/api",
        doc_url="/openapi.json",
    )
    app.config.update(
        SECRET_KEY=settings.SECRET_KEY,
        MAX_CONTENT_LENGTH=settings.MAX_BODY_BYTES,
        QIANXING_ENV=settings.QIANXING_ENV,
        SESSION_TTL_SECONDS=settings.SESSION_TTL_SECONDS,
        JSON_AS_ASCII=False,
    )
    app.json = JSONProvider(app)
    app.extensions[deps.EXTENSION] = rt  # what the views use (miniapp_api.deps.runtime)
    if settings.TRUSTED_PROXIES:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.TRUSTED_PROXIES)  # type: ignore[method-assign]

    from miniapp_api.api import api
    from miniapp_api.bot_webhooks import bot_webhooks
    from miniapp_api.creator import creator_api
    from miniapp_api.webhooks import webhooks
    from miniapp_api.wechat_webhook import wechat_webhook

    app.register_api(api)
    app.register_api(creator_api)
    from miniapp_api import live, shop

    live.register(app)
    shop.register(app)
    from miniapp_api.phone import bp as phone_bp  # issue 15: the shopper's phone authorization

    app.register_api(phone_bp)
    app.register_blueprint(webhooks)
    from miniapp_api.share import share

    app.register_blueprint(share)
    app.register_blueprint(bot_webhooks)
    app.register_blueprint(wechat_webhook)
    errors.register(app)
    schemas.document(app, settings)
    from miniapp_api.admin import init_admin

    init_admin(app, settings, VAR_DIR)

    # Connections open lazily on the first query (peewee autoconnect) and go back to the pool
    # at the end of the request.
    @app.teardown_request
    def _disconnect(exc: BaseException | None) -> None:
        if not db.is_closed():
            db.close()

    redis_probe = _probe_client(rt.redis)

    @app.get("/healthz", responses={200: schemas.HealthOut, 503: schemas.HealthOut})
    def healthz():  # noqa: ANN202
        """Readiness: 200 when the database and Redis answer, else 503 naming what is down (the
        kind of error only: the body is public, the details go to the log)."""
        body = {"status": "ok", "database": "ok", "redis": "ok"}
        for name, check in (("database", lambda: db.execute_sql("SELECT 1")), ("redis", redis_probe.ping)):
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - any failure means "down"
                health_log.warning("healthz: %s unreachable: %s", name, exc)
                body[name] = f"unreachable: {type(exc).__name__}"
                body["status"] = "down"
        return jsonify(body), 200 if body["status"] == "ok" else 503

    return app
