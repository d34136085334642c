"""The reservation lottery's draw (issue 13, seed 001: "100 reservations -> 10 free orders"):
one pure, deterministic rule that the draw job and `qianxing live verify-draw` both run, so
anyone can recompute the winners from the published data.

The rule, exactly (enough to reimplement it in any language):

1. **Seed.** At scheduling the service draws a secret seed of 32 random bytes and publishes
   `seed_hash` = lowercase hex SHA-256 of those 32 bytes. After the draw it publishes the seed
   itself as 64 lowercase hex characters.
2. **List hash.** The reservation ids of the session (integers, each reservation once), in
   ascending order, written in decimal without leading zeros, joined with a single line feed
   ("\\n", no trailing line feed), UTF-8 encoded: `list_hash` = lowercase hex SHA-256 of that
   text. No reservation: SHA-256 of the empty string.
3. **Score.** For each reservation id `r`: `score(r)` = HMAC-SHA256 with key = the 32 seed bytes
   and message = the UTF-8 text `f"{session_id}:{list_hash}:{r}"` (session id in decimal,
   list_hash in lowercase hex), compared as a 32-byte big-endian unsigned number.
4. **Winners.** With `prizes` = N, the N reservations with the lowest `(score, r)` win (a tie of
   scores, practically impossible, goes to the lower id); they are listed by rank, lowest score
   first. With fewer than N reservations everyone wins (the service never draws below its
   threshold, and N <= threshold).

The list is read twice (once for its hash, which every score depends on, once for the scores)
and never held: `compute` keeps a heap of the N best while streaming, so memory is O(N) whatever
the number of reservations.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

SEED_BYTES = 32


def seed_hash(seed: bytes) -> str:
    """The published commitment to the seed: lowercase hex SHA-256 of its bytes."""
    return hashlib.sha256(seed).hexdigest()


def list_hash(reservation_ids: Iterable[int]) -> tuple[str, int]:
    """(lowercase hex SHA-256 of the ids joined by "\\n", how many), streamed. Raises ValueError
    unless the ids are strictly ascending (the list is defined in that order)."""
    digest, count, last = hashlib.sha256(), 0, None
    for r in reservation_ids:
        if isinstance(r, bool) or not isinstance(r, int) or (last is not None and r <= last):
            raise ValueError(f"reservation ids must be ascending integers (got {r!r} after {last!r})")
        digest.update((f"\n{r}" if count else str(r)).encode())
        count, last = count + 1, r
    return digest.hexdigest(), count


def score(seed: bytes, session_id: int, list_digest: str, reservation_id: int) -> bytes:
    """HMAC-SHA256(key=seed, msg=f"{session_id}:{list_hash}:{r}")."""
    return hmac.new(seed, f"{session_id}:{list_digest}:{reservation_id}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class DrawResult:
    list_hash: str
    count: int
    winners: list[int]  # reservation ids by rank (lowest score first)


def compute(seed: bytes, session_id: int, reservation_ids: Iterable[int], prizes: int) -> DrawResult:
    """The whole draw. `reservation_ids` is iterated twice (a list, or an object that streams
    the list again on each iteration), ascending."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"the seed is {SEED_BYTES} bytes")
    if prizes < 0:
        raise ValueError("prizes must not be negative")
    digest, count = list_hash(reservation_ids)
    best: list[tuple[int, int]] = []  # max-heap of the N best by (score, id), as negatives
    seen = 0
    for r in reservation_ids:
        seen += 1
        item = (-int.from_bytes(score(seed, session_id, digest, r), "big"), -r)
        if len(best) < prizes:
            heapq.heappush(best, item)
        elif prizes and item > best[0]:
            heapq.heapreplace(best, item)
    if seen != count:
        raise ValueError("the reservation list changed while it was read")
    winners = [-r for _, r in sorted(best, reverse=True)]
    return DrawResult(digest, count, winners)


def draw(seed: bytes, session_id: int, reservation_ids: Iterable[int], prizes: int) -> list[int]:
    """The winning reservation ids, by rank."""
    return compute(seed, session_id, reservation_ids, prizes).winners


def check_public(public: dict[str, Any], session_id: int, reservation_ids: Iterable[int]) -> list[str]:
    """Recompute a published lottery (the public summary of models/lottery.public_state and
    the public reservation list) and say what does not match; [] when everything does.

    Drawn: sha256(seed) = seed_hash, the list's hash and count, the winners. Below threshold:
    the seed, the list, and that the list is indeed shorter than the threshold."""
    state = public.get("state")
    if state not in ("drawn", "below_threshold"):
        return [f"no draw to check: the lottery is {state}"]
    problems: list[str] = []
    try:
        seed = bytes.fromhex(str(public.get("seed") or ""))
    except ValueError:
        seed = b""
    if len(seed) != SEED_BYTES:
        return ["the published seed is not 64 hex characters"]
    if seed_hash(seed) != public.get("seed_hash"):
        problems.append("sha256(seed) differs from the seed_hash published at scheduling")
    result = compute(seed, session_id, reservation_ids, int(public.get("prizes") or 0))
    if result.list_hash != public.get("list_hash"):
        problems.append(f"the reservation list hashes to {result.list_hash}, published {public.get('list_hash')}")
    if result.count != public.get("reservations"):
        problems.append(f"the list has {result.count} reservations, published {public.get('reservations')}")
    if state == "drawn":
        if result.winners != list(public.get("winners") or []):
            problems.append(f"the winners are {result.winners}, published {public.get('winners')}")
    elif result.count >= int(public.get("threshold") or 0):
        problems.append(f"{result.count} reservations reach the threshold, yet no draw was made")
    return problems
