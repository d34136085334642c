"""Group-buy (拼团, issue 14) tables: an activity on a SKU, its teams of N, their members (one
per order). The services are models/group_seats.py (start, join, seats), models/group_life.py
(payments advancing teams, expiry, refunds) and models/group_pages.py (activities, team pages);
models/groupbuy.py is the one name callers import them by. The states are explained in
models/group_rules.py.
"""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from models.db import BaseModel, utcnow


class TeamState(StrEnum):
    OPEN = "open"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class MemberState(StrEnum):
    JOINING = "joining"  # order placed, unpaid: holds a seat
    PAID = "paid"  # paid, awaiting the team: holds a seat
    DELIVERABLE = "deliverable"
    DELIVERED = "delivered"
    REFUNDING = "refunding"
    REFUNDED = "refunded"
    LEFT = "left"  # the unpaid order expired or was cancelled: seat freed


class GroupActivity(BaseModel):
    sku_id = pw.BigIntegerField()
    title = pw.CharField(max_length=60)
    size = pw.IntegerField()  # N members make a team
    window_s = pw.IntegerField()  # a team's time to fill
    group_price_fen = pw.IntegerField()  # unit price for members
    per_user_limit = pw.IntegerField(default=1)  # teams a user may be in (not left) per activity
    max_teams = pw.IntegerField(null=True)
    stock = pw.IntegerField(null=True)  # units for the whole activity
    teams_started = pw.IntegerField(default=0)
    units_taken = pw.IntegerField(default=0)  # held by joining or paid members
    starts_at = pw.DateTimeField()
    ends_at = pw.DateTimeField()
    leader_must_be_new = pw.BooleanField(default=False)
    virtual_complete = pw.BooleanField(default=False)  # fill an unfilled team at expiry (off by default)
    active = pw.BooleanField(default=True)
    created_by = pw.CharField(max_length=64, default="system")
    created_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "group_activity"
        constraints = [pw.SQL("CHECK (size >= 2 AND teams_started >= 0 AND units_taken >= 0)")]


class GroupTeam(BaseModel):
    activity = pw.ForeignKeyField(GroupActivity, backref="teams", on_delete="RESTRICT", index=False)
    leader_user_id = pw.BigIntegerField()
    state = pw.CharField(max_length=10, default=TeamState.OPEN.value)
    size = pw.IntegerField()
    seats_taken = pw.IntegerField(default=0)  # joining + paid members
    paid_count = pw.IntegerField(default=0)
    virtual_count = pw.IntegerField(default=0)  # seats filled virtually at expiry
    chat_platform = pw.CharField(max_length=16, null=True)  # the community group it was started in
    chat_id = pw.CharField(max_length=64, null=True)
    expires_at = pw.DateTimeField()
    created_at = pw.DateTimeField(default=utcnow)
    closed_at = pw.DateTimeField(null=True)

    class Meta:
        table_name = "group_team"
        indexes = ((("activity", "state"), False), (("state", "expires_at"), False))
        constraints = [pw.SQL("CHECK (seats_taken >= 0 AND seats_taken <= size AND paid_count >= 0 "
                              "AND paid_count <= size)")]


class GroupMember(BaseModel):
    team = pw.ForeignKeyField(GroupTeam, backref="members", on_delete="RESTRICT", index=False)
    user_id = pw.BigIntegerField()
    order_id = pw.BigIntegerField(unique=True)
    leader = pw.BooleanField(default=False)
    state = pw.CharField(max_length=12, default=MemberState.JOINING.value)
    created_at = pw.DateTimeField(default=utcnow)
    paid_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField(default=utcnow)

    class Meta:
        table_name = "group_member"
        # (state, updated_at): the refund retry and the stranded-payment sweep look members up by
        # state (refunding; joining or left) without reading every member ever.
        indexes = ((("team", "state"), False), (("user_id", "state"), False), (("state", "updated_at"), False))


TABLES: list[type[pw.Model]] = [GroupActivity, GroupTeam, GroupMember]
