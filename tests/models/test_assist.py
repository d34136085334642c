"""Team assist through its services (models/assist.py, models/assist_help.py): the offer's
validation, starting, counting distinct helpers (self, duplicates, other accounts, the per-session
limit, new users only), the unlock window and the placement hooks (unlocked_for_order, consume,
release_for_orders)."""

from __future__ import annotations

import datetime as dt

import pytest

from models import assist
from models.assist import Assist, AssistHelp, AssistPolicy, AssistQuota
from models.assist_help import help_assist
from models.db import db, utcnow
from models.errors import DomainError
from models.live import LivePin, LiveSession
from models.users import User
from tests.concurrently import at_once
from tests.factories import assist_session, buyer, paid

POLICY = AssistPolicy(window_s=1800, max_helps_per_session=3)


@pytest.fixture
def sku(shop):  # noqa: ANN001, ANN201
    """A 99-yuan card key; the assist unlocks it at 69."""
    return shop.card_sku(keys=20, price=9_900, code="CARD-A")


def refused(code: str, fn, *args, **kwargs) -> None:  # noqa: ANN001, ANN003
    with pytest.raises(DomainError) as err:
        fn(*args, **kwargs)
    assert err.value.code == code, err.value.message


def started(session_id: int, openid: str = "starter", sku_code: str = "CARD-A") -> Assist:
    with db.connection_context():
        made, _ = assist.start(buyer(openid).id, session_id, sku_code)
    return made


def helps(token: str, *openids: str, ip: str = "10.1.1.1", policy: AssistPolicy = POLICY) -> list:
    with db.connection_context():
        return [help_assist(buyer(o).id, token, ip=ip, policy=policy) for o in openids]


def counts() -> tuple[int, int, int]:
    with db.connection_context():
        return Assist.select().count(), AssistHelp.select().count(), AssistQuota.select().count()


# -- the offer ----------------------------------------------------------------------------------

def test_an_offer_is_parsed_with_the_window_left_to_the_setting():
    # given the seed's offer: 3 helpers unlock 69 yuan on a 99-yuan product
    offer = assist.parse_offer({"helpers_needed": 3, "price_fen": 6_900}, 9_900)
    # then it is kept as given, the window coming from the setting, open to everyone
    assert offer == assist.AssistOffer(helpers_needed=3, price_fen=6_900, window_s=None, new_users_only=False)
    assert assist.parse_offer(None, 9_900) is None
    assert assist.parse_offer({"helpers_needed": 20, "price_fen": 0, "window_s": 600,
                               "new_users_only": True}, 9_900).window_s == 600


@pytest.mark.parametrize("spec", [
    {"helpers_needed": 0, "price_fen": 6_900},
    {"helpers_needed": 21, "price_fen": 6_900},
    {"helpers_needed": True, "price_fen": 6_900},
    {"helpers_needed": 3, "price_fen": -1},
    {"helpers_needed": 3, "price_fen": 9_900},
    {"helpers_needed": 3, "price_fen": 10_000},
    {"helpers_needed": 3, "price_fen": "6900"},
    {"helpers_needed": 3, "price_fen": 6_900, "window_s": 10},
    {"helpers_needed": 3, "price_fen": 6_900, "new_users_only": "yes"},
    {"helpers_needed": 3, "price_fen": 6_900, "discount": 1},
    {"price_fen": 6_900},
    ["helpers_needed", 3],
])
def test_a_bad_offer_is_refused(spec):  # noqa: ANN001
    # when an offer has a bad field, then it is refused with one code
    refused("invalid_assist", assist.parse_offer, spec, 9_900)


def test_offers_of_a_session_are_keyed_by_pin(shop, sku):
    # given a session with two pinned products with offers, and another session
    session_id, pin_id = assist_session(sku, window_s=900)
    assist_session(sku)
    with db.connection_context():
        other = LivePin.create(session=session_id, sku=shop.card_sku(keys=1, price=5_000, code="B").id)
        assist.save_offer(other, assist.parse_offer({"helpers_needed": 5, "price_fen": 0}, 5_000))
        # when the session's offers are read
        found = assist.offers(session_id)
    # then each pin has its own offer
    assert found == {pin_id: {"helpers_needed": 3, "price_fen": 6_900, "window_s": 900, "new_users_only": False},
                     other.id: {"helpers_needed": 5, "price_fen": 0, "window_s": None, "new_users_only": False}}


# -- starting -----------------------------------------------------------------------------------

def test_starting_twice_gives_back_the_open_assist_with_an_unguessable_token(sku):
    # given a live session with the product pinned and an assist offer
    session_id, pin_id = assist_session(sku)
    # when a shopper starts an assist twice, and another shopper once
    with db.connection_context():
        first, created = assist.start(buyer("ann").id, session_id, "CARD-A")
        again, created_again = assist.start(buyer("ann").id, session_id, "CARD-A")
        other, _ = assist.start(buyer("ben").id, session_id, "CARD-A")
    # then the first start made it, the second gave it back; tokens are long and distinct
    assert created and not created_again and again.id == first.id
    assert len(first.token) >= 22 and first.token != other.token
    assert (first.helpers_needed, first.price_fen, first.pin_id) == (3, 6_900, pin_id)
    assert counts()[0] == 2


def test_a_scheduled_session_takes_assists_but_not_closed_or_unknown_ones(shop, sku):
    # given a scheduled session, an ended one, and a pinned product without an offer
    scheduled, _ = assist_session(sku, state="scheduled")
    ended, _ = assist_session(sku)
    plain = shop.card_sku(keys=1, price=5_000, code="PLAIN")
    with db.connection_context():
        LiveSession.update(state="ended", ended_at=utcnow()).where(LiveSession.id == ended).execute()
        LivePin.create(session=scheduled, sku=plain.id, position=2)
        ann = buyer("ann").id
        # when the shopper starts assists on each
        assert assist.start(ann, scheduled, "CARD-A")[1]
        refused("session_closed", assist.start, ann, ended, "CARD-A")
        refused("live_not_found", assist.start, ann, 999_999, "CARD-A")
        refused("not_pinned", assist.start, ann, scheduled, "NOPE")
        refused("no_assist_offer", assist.start, ann, scheduled, "PLAIN")
    # then only the scheduled session's assist exists
    assert counts()[0] == 1


# -- counting helpers ---------------------------------------------------------------------------

def test_three_distinct_helpers_unlock_and_self_and_duplicates_do_not_count(sku):
    # given ann's assist needing 3 helpers
    session_id, _ = assist_session(sku)
    mine = started(session_id, "ann")
    # when ann helps herself, ben helps twice, then carl and dora help
    with db.connection_context():
        refused("self_assist", help_assist, buyer("ann").id, mine.token, ip="10.0.0.1", policy=POLICY)
    helps(mine.token, "ben")
    with db.connection_context():
        refused("already_helped", help_assist, buyer("ben").id, mine.token, ip="10.0.0.2", policy=POLICY)
    before = utcnow()
    carl, dora = helps(mine.token, "carl", "dora", ip="10.9.9.9")
    # then three helpers counted, the third unlocked it for the window
    assert (carl.helpers, carl.unlocked_until) == (2, None)
    assert dora.helpers == 3 and dora.unlocked_until is not None
    assert before + dt.timedelta(seconds=1800) <= dora.unlocked_until <= utcnow() + dt.timedelta(seconds=1800)
    with db.connection_context():
        row = Assist.get_by_id(mine.id)
        recorded = sorted((h.helper.openid, h.ip) for h in AssistHelp.select())
    assert (row.helpers, row.unlocked_until) == (3, dora.unlocked_until)
    assert recorded == [("ben", "10.1.1.1"), ("carl", "10.9.9.9"), ("dora", "10.9.9.9")]
    # and a fourth helper is refused: the assist is complete
    with db.connection_context():
        refused("assist_complete", help_assist, buyer("eve").id, mine.token, ip="", policy=POLICY)
    assert counts()[1:] == (3, 3)


def test_another_account_with_the_starters_unionid_does_not_count(sku):
    # given ann's assist, and a second account of ann's with her WeChat unionid
    session_id, _ = assist_session(sku)
    mine = started(session_id, "ann")
    with db.connection_context():
        User.update(unionid="union-ann").where(User.openid == "ann").execute()
        second = User.create(openid="ann-2", unionid="union-ann")
        stranger = User.create(openid="stranger", unionid="union-other")
        # when both help
        refused("same_person", help_assist, second.id, mine.token, ip="", policy=POLICY)
        help_assist(stranger.id, mine.token, ip="", policy=POLICY)
    # then only the stranger counted
    assert counts()[1] == 1


def test_helping_needs_a_live_session_and_an_open_token(sku):
    # given an assist started before the session went live
    session_id, _ = assist_session(sku, state="scheduled")
    mine = started(session_id, "ann")
    with db.connection_context():
        # when a friend helps before the session is live, or with a token nobody issued
        refused("session_not_live", help_assist, buyer("ben").id, mine.token, ip="", policy=POLICY)
        refused("assist_not_found", help_assist, buyer("ben").id, "x" * 22, ip="", policy=POLICY)
        # then nothing was written; once live the same friend counts
        assert counts()[1:] == (0, 0)
        LiveSession.update(state="live", started_at=utcnow()).where(LiveSession.id == session_id).execute()
    assert helps(mine.token, "ben")[0].helpers == 1


def test_a_helper_helps_at_most_the_limit_per_session(shop, sku):
    # given four shoppers' assists in one session and one in another session
    session_id, _ = assist_session(sku)
    other_session, _ = assist_session(sku)
    tokens = [started(session_id, f"s{i}").token for i in range(4)]
    elsewhere = started(other_session, "s0").token
    # when one friend helps all of them under a limit of 3 per session
    for token in tokens[:3]:
        helps(token, "friend")
    with db.connection_context():
        refused("help_limit_reached", help_assist, buyer("friend").id, tokens[3], ip="", policy=POLICY)
    helps(elsewhere, "friend")
    # then the fourth in the first session was refused and left nothing behind
    with db.connection_context():
        assert Assist.get(Assist.token == tokens[3]).helpers == 0
        used = dict(AssistQuota.select(AssistQuota.session_id, AssistQuota.used).tuples())
    assert used == {session_id: 3, other_session: 1}
    assert counts()[1] == 4


def test_new_users_only_refuses_a_helper_who_has_paid_before(sku, shop):
    # given a new-users-only offer, a friend who bought before and one who never did
    session_id, _ = assist_session(sku, new_users_only=True, helpers_needed=2)
    mine = started(session_id, "ann")
    paid(shop.card_sku(keys=2, price=100, code="OLD"), "regular", dispatch=False)
    # when both help
    with db.connection_context():
        refused("not_new_user", help_assist, buyer("regular").id, mine.token, ip="", policy=POLICY)
    # then only the new one counted, and the refused one's quota was not touched
    assert helps(mine.token, "newcomer")[0].helpers == 1
    assert counts()[1:] == (1, 1)


def test_concurrent_helps_count_exactly_and_keep_the_per_session_limit(sku):
    # given one assist needing 20 helpers, and 3 assists one busy friend tries at once
    session_id, _ = assist_session(sku, helpers_needed=20)
    big = started(session_id, "ann")
    tokens = [started(session_id, f"s{i}").token for i in range(6)]
    with db.connection_context():
        friends = [buyer(f"f{i}").id for i in range(12)]
        busy = buyer("busy").id
        friends.append(friends[0])  # one friend presses twice

    def one(helper_id: int, token: str) -> str:
        with db.connection_context():
            try:
                help_assist(helper_id, token, ip="", policy=POLICY)
                return "ok"
            except DomainError as exc:
                return exc.code

    jobs = iter([(f, big.token) for f in friends] + [(busy, t) for t in tokens])
    # when all of them arrive at the same moment
    results = at_once(lambda: one(*next(jobs)), len(friends) + len(tokens))
    # then 12 distinct friends counted once each, and the busy friend helped exactly 3 assists
    assert sorted(results).count("ok") == 15
    assert results.count("already_helped") == 1 and results.count("help_limit_reached") == 3
    with db.connection_context():
        assert Assist.get_by_id(big.id).helpers == 12
        assert AssistQuota.get(AssistQuota.helper_id == busy).used == 3


# -- the unlocked price and the order that uses it ----------------------------------------------

def test_an_unlocked_assist_serves_one_order_and_comes_back_when_it_expires(sku):
    # given ann's assist, unlocked by one helper, with a 10-minute window from the offer
    session_id, _ = assist_session(sku, helpers_needed=1, window_s=600)
    mine = started(session_id, "ann")
    with db.connection_context():
        ann = buyer("ann").id
        assert assist.unlocked_for_order(ann, session_id, sku.id, utcnow()) is None  # not yet unlocked
    done = helps(mine.token, "ben")[0]
    now = utcnow()
    assert done.unlocked_until - now <= dt.timedelta(seconds=600)
    with db.connection_context():
        # when the live placement asks for it and consumes it for an order, twice
        found = assist.unlocked_for_order(ann, session_id, sku.id, now)
        assert found == (mine.id, 6_900)
        assert assist.unlocked_for_order(buyer("ben").id, session_id, sku.id, now) is None
        assert assist.consume(mine.id, 101) is True
        assert assist.consume(mine.id, 102) is False
        # then it is used up; the order's expiry gives it back while the window lasts
        assert assist.unlocked_for_order(ann, session_id, sku.id, now) is None
        assert assist.release_for_orders([101]) == 1
        assert assist.unlocked_for_order(ann, session_id, sku.id, now) == (mine.id, 6_900)
        assert assist.consume(mine.id, 103) is True
        # and after the window an expired order no longer frees it, nor can it be consumed
        later = done.unlocked_until + dt.timedelta(seconds=1)
        assert assist.release_for_orders([103], now=later) == 0
        assert Assist.get_by_id(mine.id).order_id == 103
        assert assist.unlocked_for_order(ann, session_id, sku.id, later) is None


def test_a_late_payment_takes_its_assist_back_unless_another_order_has_it(sku):
    # given ann's unlocked assist used by order 201, which expired and gave it back
    session_id, _ = assist_session(sku, helpers_needed=1)
    mine = started(session_id, "ann")
    helps(mine.token, "ben")
    with db.connection_context():
        assert assist.consume(mine.id, 201) and assist.release_for_orders([201]) == 1
        # when the expired order's payment arrives late, then it takes the assist back
        assert assist.reclaim(mine.id, 201) is True
        assert Assist.get_by_id(mine.id).order_id == 201
        # and when another order had used it meanwhile, the late payment cannot have it
        assert assist.release_for_orders([201]) == 1 and assist.consume(mine.id, 202)
        assert assist.reclaim(mine.id, 201) is False
        assert Assist.get_by_id(mine.id).order_id == 202


def test_a_lapsed_unused_assist_can_be_started_again(sku):
    # given ann's assist unlocked and never used
    session_id, _ = assist_session(sku, helpers_needed=1)
    mine = started(session_id, "ann")
    until = helps(mine.token, "ben")[0].unlocked_until
    with db.connection_context():
        ann = buyer("ann").id
        # when she starts again inside the window, then she gets the same one
        assert assist.start(ann, session_id, "CARD-A") == (Assist.get_by_id(mine.id), False)
        # when she starts again after the window, then the old one is closed and a new one begins
        fresh, created = assist.start(ann, session_id, "CARD-A", now=until + dt.timedelta(seconds=1))
        assert created and fresh.id != mine.id and fresh.helpers == 0
        assert Assist.get_by_id(mine.id).closed_at is not None
        # and the closed token takes no more help
        refused("assist_not_found", help_assist, buyer("carl").id, mine.token, ip="", policy=POLICY)


def test_state_for_shows_my_progress_only(sku):
    # given ann's assist with one of three helpers, and ben's own assist
    session_id, pin_id = assist_session(sku)
    mine = started(session_id, "ann")
    started(session_id, "ben")
    helps(mine.token, "carl")
    with db.connection_context():
        state = assist.state_for(buyer("ann").id, session_id)
    # then ann sees her one assist with its progress and share path
    assert state == [{"token": mine.token, "session_id": session_id, "pin_id": pin_id, "sku": "CARD-A",
                      "helpers": 1, "helpers_needed": 3, "price_fen": 6_900, "unlocked": False,
                      "unlocked_until": None, "usable": False, "order_id": None,
                      "share_path": f"pages/live/assist?token={mine.token}"}]
