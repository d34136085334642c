"""Group-buy (拼团, issue 14): an activity on a SKU, teams of N that succeed when N members have
paid and fail when their window closes first, members whose orders wait for the team.

The one name callers use: the tables (models/group_tables.py), the pure rules
(models/group_rules.py) and the services — seats (models/group_seats.py: `prepare`,
`released`, `reclaim`), the life of a team after placement (models/group_life.py: `advance`,
`close_team`, `on_refund`, refund retries) and the pages (models/group_pages.py:
`create_activity`, `team_page`, ...) — are re-exported here. Nothing here imports
models.orders or models.payments at run time (they import this module).

States: team open -> succeeded | failed. Member joining (its order unpaid) -> paid (paid,
awaiting the team) -> deliverable -> delivered, or -> refunding -> refunded; a member whose
unpaid order expired or was cancelled -> left (its seat freed).
"""

from __future__ import annotations

from models.group_life import (
    VIRTUAL_ACCOUNT,
    Advanced,
    Closed,
    FailingRefund,
    advance,
    close_team,
    delivered,
    due_teams,
    expire_due,
    failing_refunds,
    on_refund,
    refund_failed,
    refunds_due,
    stranded,
)
from models.group_pages import (
    ActivityView,
    MemberView,
    TeamView,
    activity_view,
    create_activity,
    list_activities,
    open_teams,
    set_chat,
    team_page,
)
from models.group_rules import ActivitySpec
from models.group_seats import ACTOR, held, open_team_ids, prepare, reclaim, released, team_of_order
from models.group_tables import TABLES, GroupActivity, GroupMember, GroupTeam, MemberState, TeamState

__all__ = [
    "ACTOR", "TABLES", "VIRTUAL_ACCOUNT", "ActivitySpec", "ActivityView", "Advanced", "Closed", "FailingRefund",
    "GroupActivity", "GroupMember", "GroupTeam", "MemberState", "MemberView", "TeamState", "TeamView",
    "activity_view", "advance", "close_team", "create_activity", "delivered", "due_teams", "expire_due",
    "failing_refunds", "held", "list_activities", "on_refund", "open_team_ids", "open_teams", "prepare",
    "reclaim", "refund_failed", "refunds_due", "released", "set_chat", "stranded", "team_of_order", "team_page",
]
