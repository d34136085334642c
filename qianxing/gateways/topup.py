"""Top-up providers. The sandbox can be told to fail or be slow, globally by setting or per
order by account: accounts starting with `fail` are refused, `flaky` fail the first attempt.
Its memory is in Redis, because RQ runs every job in a fresh fork of the worker."""

from __future__ import annotations

import time

from redis import Redis

from models.delivery import TopupUnavailable


class SandboxTopupProvider:
    def __init__(self, redis: Redis, mode: str = "ok", delay_s: float = 0.0) -> None:
        self.redis, self.mode, self.delay_s = redis, mode, delay_s

    def recharge(self, request_id: str, sku_code: str, account: str, face_fen: int) -> str:
        if self.delay_s or self.mode == "slow":
            time.sleep(self.delay_s or 2.0)
        done_key = f"qianxing:sandbox-topup:done:{request_id}"
        if (ref := self.redis.get(done_key)) is not None:  # idempotent per request id
            return ref.decode()
        first_try = self.redis.set(f"qianxing:sandbox-topup:seen:{request_id}", 1, nx=True, ex=86400)
        if self.mode == "fail" or account.startswith("fail"):
            raise TopupUnavailable("sandbox provider refused the top-up")
        if account.startswith("flaky") and first_try:
            raise TopupUnavailable("sandbox provider timed out")
        ref = f"TP{request_id}"
        self.redis.set(done_key, ref, ex=86400)
        return ref
