"""Operator commands for the creator network: activity import, star levels, creators, rewards.

Registered on the `qianxing` command in qianxing/cli/__init__.py (`COMMANDS`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from models.money import yuan
from qianxing.cli.boot import OPERATOR, boot

if TYPE_CHECKING:
    from models.network import Creator

@contextmanager
def _session() -> Iterator[None]:
    """Boot, open a connection, and turn domain errors into a clean CLI error."""
    boot()
    from models.db import connection
    from models.errors import DomainError

    with connection():
        try:
            yield
        except DomainError as exc:
            raise click.ClickException(f"{exc.message} ({exc.code})") from None


def _creator(code: str) -> Creator:
    from models.errors import NotFound
    from models.network import Creator

    found = Creator.get_or_none(Creator.code == code)
    if found is None:
        raise NotFound(f"no creator has the code {code!r}", code="unknown_creator")
    return found


# ---- activity -----------------------------------------------------------------------------------


@click.group()
def activity() -> None:
    """Short-video plays and live-room entries."""


@activity.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--timezone", default="Asia/Shanghai", show_default=True,
              help="time zone of occurred_at values written without an offset")
def activity_import(file: Path, timezone: str) -> None:
    """Import a platform export (CSV: event_id, creator_code, type, ref, count, occurred_at).
    Re-importing a file adds nothing; bad rows are listed by line and skipped."""
    from models.activity import import_csv

    with _session():
        report = import_csv(file, timezone=timezone)
    for bad in report.bad:
        click.echo(f"line {bad.line}: {bad.code}: {bad.message}")
    if report.bad_count > len(report.bad):
        click.echo(f"... and {report.bad_count - len(report.bad)} more bad rows")
    click.echo(f"imported {report.imported}, duplicates {report.duplicates}, bad rows {report.bad_count} "
               f"(of {report.rows} rows)")


# ---- levels -------------------------------------------------------------------------------------


@click.group()
def levels() -> None:
    """Star levels (一星 ... 千星)."""


@levels.command("show")
def levels_show() -> None:
    """The level table, with the entry thresholds from the settings."""
    from models import levels as lv
    from qianxing.wiring import runtime

    with _session():
        s = runtime().settings
        rows = lv.table()
    click.echo(f"{'rank':>4} {'name':<4} {'plays':>9} {'live GMV':>12} {'own GMV':>12} {'team':>4} "
               f"{'own%':>6} {'team1%':>6} {'team2%':>6} {'fee%':>6} {'supply':>6}")
    for r in rows:
        plays, team = (f"{s.ENTRY_VIDEOS} vid", str(s.ENTRY_INVITES)) if r.rank == 1 else (
            str(r.min_video_plays), str(r.min_team_size))
        fee = "-" if r.withdraw_fee_bp is None else f"{r.withdraw_fee_bp / 100:.2f}"
        click.echo(f"{r.rank:>4} {r.name:<4} {plays:>9} {yuan(r.min_live_gmv_fen):>12} "
                   f"{yuan(r.min_own_gmv_fen):>12} {team:>4} {r.own_rate_bp / 100:>6.2f} "
                   f"{r.team1_rate_bp / 100:>6.2f} {r.team2_rate_bp / 100:>6.2f} {fee:>6} {r.supply_tier:>6}")
    click.echo(f"entry (一星): {s.ENTRY_VIDEOS} video(s) AND {s.ENTRY_INVITES} invite(s); "
               f"thousand-star bonus {yuan(s.THOUSAND_STAR_BONUS_FEN)} yuan")


@levels.command("evaluate")
def levels_evaluate() -> None:
    """Promote every creator to the level it has earned now (the worker also runs this)."""
    from models import level_evaluation as lv
    from qianxing.wiring import runtime

    with _session():
        rt = runtime()
        s = rt.settings
        changes = lv.evaluate_levels(entry_videos=s.ENTRY_VIDEOS, entry_invites=s.ENTRY_INVITES,
                                     bonus_fen=s.THOUSAND_STAR_BONUS_FEN, notifiers=rt.notifiers,
                                     actor=OPERATOR)
    for c in changes:
        bonus = f", bonus {yuan(c.bonus_fen)} yuan" if c.bonus_fen else ""
        click.echo(f"creator {c.creator_id}: {c.from_rank} -> {c.to_rank} {c.name}{bonus}")
    click.echo(f"promoted {len(changes)} creators")


# ---- creators -----------------------------------------------------------------------------------


@click.group()
def creators() -> None:
    """Operator actions on creators."""


@creators.command("show")
@click.argument("code")
def creators_show(code: str) -> None:
    """A creator: level, uplines, activity, sales, balances, team and recent events."""
    from models import events, ledger
    from models import levels as lv
    from models.network import Creator, team
    from qianxing.wiring import runtime

    with _session():
        s = runtime().settings
        c = _creator(code)
        parents = {p.id: p.code for p in Creator.select(Creator.id, Creator.code).where(
            Creator.id.in_([i for i in (c.parent_id, c.grandparent_id) if i]))}
        prog = lv.progress(c, entry_videos=s.ENTRY_VIDEOS, entry_invites=s.ENTRY_INVITES)
        m = lv.metrics_of(c)
        f = lv.funnel(c)
        owed = ledger.owed_to_creator(c.id)
        t = team(c)
        history = events.events_for(f"creator:{c.id}")[-10:]
    cap = f" (capped at {c.rank_cap})" if c.rank_cap is not None else ""
    click.echo(f"{c.code} #{c.id} {c.name or '-'} {'active' if c.active else 'inactive'}: "
               f"rank {c.rank} {prog.name}{cap}")
    click.echo(f"  upline: {parents.get(c.parent_id, '-')} / {parents.get(c.grandparent_id, '-')}")
    click.echo(f"  videos {m.videos}, plays {m.video_plays}, live entries {m.live_entries}, "
               f"orders {f.orders}, GMV {yuan(m.own_gmv_fen)} (live {yuan(m.live_gmv_fen)}), "
               f"orders per 1,000 plays {f.orders_per_1000_plays}")
    if prog.next_rank is not None:
        needs = ", ".join(f"{t.metric} {t.have}/{t.need}" for t in prog.thresholds) or "nothing"
        click.echo(f"  next: {prog.next_name} needs {needs}{' (ready)' if prog.ready else ''}")
    click.echo(f"  {prog.invite_line}")
    click.echo("  balances: " + ", ".join(f"{b} {yuan(v)}" for b, v in owed.items()))
    click.echo(f"  team: {len(t.direct)} direct (GMV {yuan(t.direct_gmv_fen)}), "
               f"{t.second} second level (GMV {yuan(t.second_gmv_fen)})")
    for e in history:
        click.echo(f"  {e.created_at:%Y-%m-%d %H:%M:%S} {e.topic} by {e.actor} {e.payload}")


@creators.command("rebind")
@click.argument("code")
@click.option("--to", "to_code", default=None, help="the new upline's invite code")
@click.option("--detach", is_flag=True, help="remove the upline")
@click.option("--reason", required=True, help="why (kept in the audit event)")
def creators_rebind(code: str, to_code: str | None, detach: bool, reason: str) -> None:
    """Move a creator under another upline, or detach it (audited)."""
    if bool(to_code) == detach:
        raise click.UsageError("give exactly one of --to CODE or --detach")
    from models.network import rebind

    with _session():
        moved = rebind(_creator(code), None if detach else to_code, actor=OPERATOR, reason=reason)
    click.echo(f"{code}: upline {'detached' if detach else to_code}"
               + ("" if moved.parent_id is None else f" (creator {moved.parent_id})"))


@creators.command("penalize")
@click.argument("code")
@click.option("--to-rank", type=int, required=True, help="the highest rank allowed until lifted")
@click.option("--reason", required=True)
def creators_penalize(code: str, to_rank: int, reason: str) -> None:
    """A risk penalty: lower the creator to a rank and cap it there (audited)."""
    from models.level_evaluation import penalize

    with _session():
        before = _creator(code)
        after = penalize(before, to_rank, actor=OPERATOR, reason=reason)
    click.echo(f"{code}: rank {before.rank} -> {after.rank}, capped at {after.rank_cap}")


@creators.command("lift-penalty")
@click.argument("code")
@click.option("--reason", default="")
def creators_lift_penalty(code: str, reason: str) -> None:
    """Remove a creator's rank cap; the next evaluation promotes as earned."""
    from models.level_evaluation import lift_penalty

    with _session():
        lift_penalty(_creator(code), OPERATOR, reason)
    click.echo(f"{code}: penalty lifted")


# ---- rewards ------------------------------------------------------------------------------------


@click.group()
def rewards() -> None:
    """Other earnings: traffic rewards."""


@rewards.command("traffic")
def rewards_traffic() -> None:
    """Pay the traffic rewards earned so far (each tier of each video once)."""
    from models.activity import award_traffic_rewards

    with _session():
        paid = award_traffic_rewards()
    click.echo(f"paid {paid} traffic rewards")


COMMANDS = (activity, levels, creators, rewards)
