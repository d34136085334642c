"""The one place that turns settings into live objects: database, Redis, queues, gateways,
the outbound sender, the notifiers and the model provider.

Every entrypoint (web, worker, CLI, tests) calls `bootstrap(settings)` once and hands the
`Runtime`'s parts to what uses them; nothing below the entrypoints imports this module
(docs/architecture.md, "How dependencies reach each layer", and the import-linter contracts in
pyproject.toml):

- the web process: `create_app` keeps the runtime in `app.extensions["qianxing"]`, and the
  views read it through `miniapp_api.deps.runtime()`;
- jobs: bootstrap installs the runtime in `tasks.context`, which the jobs (and the enqueue
  helpers of `tasks.queues`) read;
- bots/, content_ai/, models/: constructor or function arguments (the sender gets
  `tasks.queues.drain_outbound` as its enqueue function, the notifiers get the sender, the
  conversation core gets the runtime as its `ChatDeps`).

`runtime()` is for the command line and the benchmarks (entrypoints themselves).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue

from bots.notify import build_notifiers
from bots.sender import Sender
from content_ai import live_prompts
from content_ai.provider import Provider
from models import vault
from models.db import open_database
from models.delivery import TopupProvider
from models.notifications import Notifier
from models.orders import OrderPolicy
from models.payments import PaymentGateway
from models.payouts import PayoutAdapter
from models.settlement import PayoutPolicy
from models.withdrawals import WithdrawPolicy
from qianxing.embedded_redis import EmbeddedRedis, start_or_join
from qianxing.gateways.payments import SandboxGateway, WeChatPayGateway, make_wechatpay
from qianxing.gateways.payout import SandboxPayoutAdapter, WeChatTransferAdapter
from qianxing.gateways.topup import SandboxTopupProvider
from qianxing.gateways.wechat import MiniProgramClient
from qianxing.logging_setup import configure_logging
from qianxing.settings import VAR_DIR, Settings, parse_voucher_keys, secret_values
from tasks import context, queues

QUEUE_NAMES = ("default",)


@dataclass
class Runtime:
    settings: Settings
    redis: Redis
    queue: Queue
    wechat: MiniProgramClient
    oa: MiniProgramClient  # the official account: same client class, its own appid and token
    wechatpay: Any  # wechatpy.pay.WeChatPay: verifies notification signatures in both modes
    gateway: PaymentGateway
    notifiers: list[Notifier]
    sender: Sender  # the one outbound sender (bots/sender.py) of this process
    topup: TopupProvider
    policy: OrderPolicy
    payout: PayoutPolicy
    payouts: PayoutAdapter  # money out to creators' wallets (PAYOUT_PROVIDER)
    withdraw: WithdrawPolicy
    ai: Provider  # the model provider (content_ai/provider.py); offline when AI_BASE_URL is unset
    embedded: EmbeddedRedis | None = None


_runtime: Runtime | None = None


def redis_url(settings: Settings) -> tuple[str, EmbeddedRedis | None]:
    if settings.REDIS_URL:
        return settings.REDIS_URL, None
    # Joins the server another process (`qianxing run`) started, or starts one this process
    # stops on exit: a command run beside `qianxing run` never stops the service's Redis.
    embedded = start_or_join(VAR_DIR / "redis")
    return embedded.url, embedded


def bootstrap(settings: Settings) -> Runtime:
    """Build the runtime for this process (idempotent per settings object)."""
    global _runtime
    if _runtime is not None and _runtime.settings is settings:
        return _runtime
    configure_logging(settings.LOG_LEVEL, secret_values(settings))
    open_database(settings.DATABASE_URL)
    vault.configure(parse_voucher_keys(settings.VOUCHER_KEY or ""), settings.VOUCHER_HASH_KEY or "")
    url, embedded = redis_url(settings)
    redis = Redis.from_url(url)
    wechat = MiniProgramClient(settings.WECHAT_APPID, settings.WECHAT_SECRET or "",
                               settings.WECHAT_API_BASE_URL, redis=redis)
    oa = MiniProgramClient(settings.WECHAT_OA_APPID, settings.WECHAT_OA_SECRET or "",
                           settings.WECHAT_OA_API_BASE_URL, redis=redis)
    pay = make_wechatpay(settings.WECHAT_APPID, settings.WECHATPAY_API_KEY or "",
                         settings.WECHATPAY_MCH_ID, settings.WECHATPAY_API_BASE_URL,
                         settings.WECHATPAY_TIMEOUT_S, settings.WECHATPAY_MCH_CERT,
                         settings.WECHATPAY_MCH_KEY)
    gateway: PaymentGateway
    if settings.PAYMENT_PROVIDER == "wechatpay":
        gateway = WeChatPayGateway(pay, settings.notify_url)
    else:
        gateway = SandboxGateway(settings.WECHAT_APPID, settings.WECHATPAY_MCH_ID,
                                 settings.WECHATPAY_API_KEY or "", settings.notify_url)
    sender = Sender(redis, settings, wechat=oa, wxa=wechat, schedule=_schedule_drain)
    _runtime = Runtime(
        settings=settings,
        redis=redis,
        queue=Queue("default", connection=redis),
        wechat=wechat,
        oa=oa,
        wechatpay=pay,
        gateway=gateway,
        notifiers=build_notifiers(settings.notify_channels, wechat,
                                  settings.WECHAT_SUBSCRIBE_TEMPLATE_ID, sender=sender,
                                  levelup_template_id=settings.WECHAT_LEVELUP_TEMPLATE_ID),
        sender=sender,
        topup=SandboxTopupProvider(redis, settings.TOPUP_SANDBOX_MODE, settings.TOPUP_SANDBOX_DELAY_S),
        policy=OrderPolicy(
            ttl_seconds=settings.ORDER_TTL_SECONDS,
            max_unpaid_per_user=settings.MAX_UNPAID_PER_USER,
            max_unpaid_per_ip=settings.MAX_UNPAID_PER_IP,
            max_quantity=settings.MAX_QUANTITY,
        ),
        payout=PayoutPolicy(
            cap_bp=settings.PAYOUT_CAP_BP,
            upline_depth=settings.UPLINE_DEPTH,
            refund_window_days=settings.REFUND_WINDOW_DAYS,
        ),
        payouts=(WeChatTransferAdapter(pay) if settings.PAYOUT_PROVIDER == "wechatpay"
                 else SandboxPayoutAdapter(redis, settings.PAYOUT_SANDBOX_MODE)),
        withdraw=WithdrawPolicy.from_settings(settings),
        ai=Provider(settings, redis),
        embedded=embedded,
    )
    live_prompts.install(_runtime.ai, redis, settings)  # the model-backed live hints (issue 16)
    context.install(_runtime)
    return _runtime


def _schedule_drain(platform: str, at: dt.datetime | None) -> None:
    """The sender's enqueue function: a drain job for the platform (one per burst)."""
    queues.drain_outbound(platform, at=at)


def runtime() -> Runtime:
    """The bootstrapped runtime; a worker that was started without one builds it from the
    environment (RQ imports job functions in a fresh process)."""
    if _runtime is None:
        from qianxing.settings import get_settings

        return bootstrap(get_settings())
    return _runtime


def reset() -> None:
    """Forget the runtime (tests re-bootstrap with other settings)."""
    global _runtime
    _runtime = None
    context.install(None)
