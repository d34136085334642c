"""The coupons' periodic job (issue 14): `expire_grants`, hourly (tasks/periodic.py PERIODIC).

Flips the wallet grants past their end from AVAILABLE to EXPIRED in batches (models/coupons.py
`expire_grants`, a conditional UPDATE per batch: running it twice or in two workers at once
changes nothing more). Only bookkeeping: the wallet and a reservation already judge expiry at
read time, so a late or missed run never lets an expired coupon be used.
"""

from __future__ import annotations

import datetime as dt
import logging

from models import coupons
from models.db import connection

log = logging.getLogger(__name__)


def expire_grants(now: dt.datetime | None = None) -> int:
    with connection():
        flipped = coupons.expire_grants(now)
    if flipped:
        log.info("coupons: %d grants expired", flipped)
    return flipped
