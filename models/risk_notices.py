"""What a creator is told in chat about a risk decision (issue 15): a confirmed case, each
penalty, a penalty lifted. Polite Chinese, no internal codes or rule names.

The notice is an outbox row (models/outbox.py) written in the decision's own transaction, so a
decision and its notice exist together or not at all; the sender's periodic `drain_all` (or a
drain the caller schedules after its commit) sends it. The channel is chosen by
models/reminders.py `channel_for`, the one reachability rule: the creator's Telegram chat, else
their WeChat official-account chat while its 48-hour window is open; a creator reachable on
neither gets no chat message (the decision stands; the mini-program's earnings page shows the
money). Keys: `risk:case:{id}:confirmed`, `risk:penalty:{id}`, `risk:penalty:{id}:lifted`:
one message per logical notice, whatever retries happen.
"""

from __future__ import annotations

import datetime as dt

from models import live_rules
from models.db import execute, utcnow
from models.money import rmb
from models.outbox import NewMessage, encode_payload, write
from models.reminders import channel_for, user_targets

TZ = "Asia/Shanghai"
CONTACT = "如有疑问，请联系客服说明情况，我们会认真复核。"


def case_key(case_id: int) -> str:
    return f"risk:case:{case_id}:confirmed"


def penalty_key(penalty_id: int) -> str:
    return f"risk:penalty:{penalty_id}"


def lifted_key(penalty_id: int) -> str:
    return f"risk:penalty:{penalty_id}:lifted"


# ---- texts (pure) -------------------------------------------------------------------------------


def confirmed_text(orders: int, clawed_fen: int, withdrawals: int) -> str:
    parts = ["您好，经风控复核，您近期的部分订单存在异常交易（例如自买自卖或刷单），"]
    if orders and clawed_fen:
        parts.append(f"其中 {orders} 笔订单的佣金共 {rmb(clawed_fen)} 已按平台规则收回。")
    elif orders:
        parts.append(f"其中 {orders} 笔订单不再计算佣金。")
    else:
        parts.append("相关收益不予结算。")
    if withdrawals:
        parts.append(f"审核中的 {withdrawals} 笔提现已退回账户余额，用于抵扣收回的佣金。")
    parts.append(CONTACT)
    return "".join(parts)


def downgrade_text(level_name: str) -> str:
    return (f"您好，由于上述异常交易，您的星级已调整为「{level_name}」，处罚解除前不会自动升级。"
            f"{CONTACT}")


def suspend_text(until: dt.datetime) -> str:
    return (f"您好，由于上述异常交易，您的提现功能暂停至 {live_rules.local_time(until, TZ)}（北京时间），"
            f"到期后自动恢复。{CONTACT}")


def lifted_text(kind: str) -> str:
    if kind == "downgrade":
        return "您好，您的星级处罚已解除，之后将按业绩正常评定星级。感谢您的理解与配合！"
    return "您好，您的提现暂停已解除，现在可以正常提现了。感谢您的理解与配合！"


def level_name(rank: int) -> str:
    row = execute("SELECT name FROM star_level WHERE rank = %s", (rank,)).fetchone()
    return row[0] if row else "未定级"


# ---- writing ------------------------------------------------------------------------------------


def tell_creator(creator_id: int, key: str, text: str, *, now: dt.datetime | None = None) -> str | None:
    """Write the notice for the creator's reachable chat (inside the caller's transaction).
    Returns the platform written for (the caller may schedule its drain after commit), or None
    when the creator cannot be reached in chat or the key was written before."""
    row = execute("SELECT user_id FROM creator WHERE id = %s", (creator_id,)).fetchone()
    if row is None:
        return None
    now = now or utcnow()
    target = user_targets([int(row[0])], now, set())[int(row[0])]
    push = channel_for(target, now, consent_ok=False)
    if push is None:
        return None
    written = write([NewMessage(key, push.platform, str(push.chat_id), "private", encode_payload({"text": text}))])
    return push.platform if written else None
