"""The group welcome campaign (bots/groups.py): while a group_welcome coupon is active, every new
group member the bot knows gets it once (whichever group, however often they join) and the
welcome says who got it; strangers get the welcome only."""

from __future__ import annotations

from bots.types import Member
from models import promo_admin
from models.chat import ChatIdentity
from models.coupons import CouponGrant
from models.db import db
from tests.bots.conftest import say, text_of
from tests.factories import campaign


def user_of(who: str) -> int:
    with db.connection_context():
        return ChatIdentity.get((ChatIdentity.platform == "console") & (ChatIdentity.external_id == who)).user_id


def grants() -> list[tuple[int, str, str]]:
    with db.connection_context():
        return sorted((g.user_id, g.source, g.source_key) for g in CouponGrant.select())


def test_known_new_members_get_the_welcome_coupon_once(rt):
    made = campaign("group_welcome", amount_off_fen=300)
    # given a shopper who has talked to the bot, and a stranger
    say("/start", who="known-fan", name="小红")
    known = user_of("known-fan")
    # when both join the group
    text = text_of(say(chat="grp-w", who="", joined=(Member("known-fan", "小红"), Member("stranger", "小蓝"))))
    # then both are welcomed, the known one gets the coupon and the welcome says so
    assert "欢迎 小红、小蓝" in text and f"新人券「{made.name}」已放入 小红 的账户" in text
    assert "小蓝 的账户" not in text
    assert grants() == [(known, "group_welcome", "group_welcome")]
    # when the known one joins another group (or the same one again)
    again = text_of(say(chat="grp-w2", who="", joined=(Member("known-fan", "小红"),)))
    # then the welcome has no coupon line and no second grant is written
    assert "欢迎 小红" in again and "新人券" not in again
    assert grants() == [(known, "group_welcome", "group_welcome")]


def test_a_withdrawn_welcome_coupon_is_not_handed_out(rt):
    made = campaign("group_welcome")
    say("/start", who="late-fan", name="小绿")
    with db.connection_context():
        promo_admin.deactivate_coupon(made.id, actor="operator:1")  # an operator withdrew it
    text = text_of(say(chat="grp-x", who="", joined=(Member("late-fan", "小绿"),)))
    assert "欢迎 小绿" in text and "新人券" not in text and grants() == []
