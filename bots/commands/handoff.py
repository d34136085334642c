"""Hand-offs: a creator answers a question the bot handed to them (issue 16).

    /answer <case id> <text> · 回复 <case id> <text>

Only the creator the case is routed to may answer it (a group's linked creator); anyone else is
told politely. The answer goes to the asker's chat through the outbox (the one sender), after
moderation, and the bot's AI answers stay silent in that chat for HANDOFF_SILENCE_S
(bots/commands/handoff_flow.py).
"""

from __future__ import annotations

from bots.commands.handoff_flow import deliver_answer, kick
from bots.commands.i18n import N_, _
from bots.commands.parsing import ChatInputError
from bots.commands.registry import Command, Context, command
from bots.commands.replies import text
from bots.types import Reply
from models.handoff import ANSWER_MAX

USAGE = N_("请发送：/answer 编号 回复内容，例如 /answer 12 今晚八点发货。")


def answer_args(rest: str) -> tuple[int, str]:
    """'<case id> <text>' -> (id, text)."""
    number, _sep, said = rest.strip().partition(" ")
    number = number.lstrip("#＃")
    if not number or not number.isascii() or not number.isdigit() or len(number) > 18 or int(number) <= 0:
        raise ChatInputError(_(USAGE))
    said = said.strip()
    if not said:
        raise ChatInputError(_(USAGE))
    if len(said) > ANSWER_MAX:
        raise ChatInputError(_("回复最多 {n} 个字，请精简后再发。").format(n=ANSWER_MAX))
    return int(number), said


@command("answer", keywords=("回复",), creator=True, args=answer_args,
         help=N_("/answer 编号 内容 · 回复 编号 内容 — 回复转给你的群友问题"))
def cmd_answer(ctx: Context, cmd: Command) -> list[Reply]:
    case_id, said = cmd.value
    case = deliver_answer(ctx.redis, ctx.settings, case_id, said, by=f"creator:{ctx.creator.id}",
                          creator_id=int(ctx.creator.id))
    kick(ctx)
    return text(_("已回复 #{id}，回复会发到提问的聊天里。").format(id=case.id))
