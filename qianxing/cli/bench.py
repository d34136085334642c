"""`qianxing bench ...`: the benchmarks (their runs live in qianxing/bench/)."""

from __future__ import annotations

import json

import click

from qianxing.bench import fanout, faults, flash_sale, settle, webhook
from qianxing.cli.boot import settings


@click.group()
def bench() -> None:
    """Benchmarks; the last line printed is one JSON object."""


@bench.command("flash-sale")
@click.option("--clients", default=64, show_default=True)
@click.option("--keys", default=20000, show_default=True)
@click.option("--duration", default=20.0, show_default=True, help="seconds per phase")
def bench_flash_sale(clients: int, keys: int, duration: float) -> None:
    """Concurrent buyers create and pay orders against a pool of keys."""
    result = flash_sale.run(settings(), clients=clients, keys=keys, duration=duration)
    click.echo(json.dumps(result))


@bench.command("settle")
@click.option("--orders", default=200_000, show_default=True, help="paid orders to settle")
@click.option("--creators", default=10_000, show_default=True, help="creators in the tree")
@click.option("--sample", default=1000, show_default=True, help="orders in the naive baseline")
@click.option("--batch", type=int, default=None, help="orders per batch (default: SETTLE_BATCH)")
def bench_settle(orders: int, creators: int, sample: int, batch: int | None) -> None:
    """Batch settlement of N orders against a naive per-order loop (scratch database)."""
    if orders < 1 or creators < 1 or sample < 1:
        raise click.BadParameter("--orders, --creators and --sample must be at least 1")
    click.echo(json.dumps(settle.run(settings(), orders=orders, creators=creators, sample=sample,
                                      batch=batch)))


@bench.command("webhook")
@click.option("--rate", default=webhook.RATE, show_default=True, help="requests per second, fixed (open loop)")
@click.option("--duration", default=webhook.DURATION_S, show_default=True, help="seconds per phase")
@click.option("--posters", default=webhook.POSTERS, show_default=True, help="uncached poster renders to time")
@click.option("--aes/--no-aes", default=True, show_default=True, help="also time the AES-encrypted WeChat mode")
def bench_webhook(rate: float, duration: float, posters: int, aes: bool) -> None:
    """Telegram and WeChat webhook latency at a fixed rate, and the poster render time."""
    if rate <= 0 or not 0 < duration <= webhook.MAX_DURATION_S or posters < 1:
        raise click.BadParameter(f"--rate must be positive, --duration 0-{webhook.MAX_DURATION_S:g} s, "
                                 "--posters at least 1")
    click.echo(json.dumps(webhook.run(settings(), rate=rate, duration=duration, posters=posters, aes=aes)))


@bench.command("fanout")
@click.option("--recipients", default=600, show_default=True, help="chats that get the message")
@click.option("--rate", default=30.0, show_default=True, help="configured messages per second")
@click.option("--paid", is_flag=True, help="a paid broadcast (allow_paid_broadcast, its own bucket)")
@click.option("--inject-429", default=5, show_default=True, help="single 429s (retry_after=1) during the run")
@click.option("--fake-limit", default=1.1, show_default=True,
              help="the fake Bot API refuses sends beyond this many times the rate in any second (0: off)")
@click.option("--concurrency", default=16, show_default=True, help="sends in flight")
def bench_fanout(recipients: int, rate: float, paid: bool, inject_429: int, fake_limit: float,
                 concurrency: int) -> None:
    """One message to N chats through the outbound sender against the fake Bot API."""
    if recipients < 1 or rate <= 0 or inject_429 < 0 or fake_limit < 0 or concurrency < 1:
        raise click.BadParameter("--recipients, --rate and --concurrency must be positive")
    click.echo(json.dumps(fanout.run(settings(), recipients=recipients, rate=rate, paid=paid, inject_429=inject_429,
                                     fake_limit=fake_limit, concurrency=concurrency)))


@bench.command("faults")
@click.option("--clients", default=faults.CLIENTS, show_default=True, help="concurrent buyers")
@click.option("--duration-per-fault", "duration", default=faults.DURATION_S, show_default=True,
              help="seconds of load per fault")
@click.option("--keys", default=faults.KEYS, show_default=True, help="card keys in the pool")
def bench_faults(clients: int, duration: float, keys: int) -> None:
    """Purchase load while the worker, Redis and the database connections are killed in turn."""
    click.echo(json.dumps(faults.run(settings(), clients=clients, duration=duration, keys=keys)))


@bench.command("admin")
@click.option("--orders", default=1_000_000, show_default=True, help="orders in the scratch database")
@click.option("--creators", default=10_000, show_default=True, help="creators in the tree")
@click.option("--samples", default=50, show_default=True, help="timed requests per page (and pings)")
def bench_admin(orders: int, creators: int, samples: int) -> None:
    """Admin page latency over a scratch shop of N orders, against GET /api/v1/ping; exits 1
    after the JSON line when a page answered anything but 200 or a data check failed."""
    from qianxing.bench import admin

    if orders < 1 or creators < 1 or samples < 1:
        raise click.BadParameter("--orders, --creators and --samples must be at least 1")
    result = admin.run(settings(), orders=orders, creators=creators, samples=samples)
    click.echo(json.dumps(result, ensure_ascii=False))
    if not result["ok"]:
        raise SystemExit(1)


@bench.command("live-burst")
@click.option("--units", default=100, show_default=True, help="units at the two-tier ladder (half at each price)")
@click.option("--buyers", default=5000, show_default=True, help="distinct buyers in the burst")
@click.option("--window", default=1.0, show_default=True, help="seconds over which the buyers arrive (open loop)")
@click.option("--baseline", "baseline_s", default=3.0, show_default=True, help="seconds per ping baseline window")
def bench_live_burst(units: int, buyers: int, window: float, baseline_s: float) -> None:
    """A live flash sale: N buyers within a second for a two-tier ladder, mostly refused."""
    from qianxing.bench import live_burst

    if units < 1 or buyers < 1 or window <= 0 or baseline_s <= 0:
        raise click.BadParameter("--units and --buyers at least 1, --window and --baseline positive")
    click.echo(json.dumps(live_burst.run(settings(), units=units, buyers=buyers, window=window,
                                         baseline_s=baseline_s)))


@bench.command("reminders")
@click.option("--reservations", default=100_000, show_default=True, help="reservations of the session")
@click.option("--rate", default=500.0, show_default=True,
              help="configured messages per second of EACH platform (a benchmark setting: real ones are ~30-50/s)")
@click.option("--lead", "lead_s", default=60.0, show_default=True, help="seconds until the T-10m reminder is due")
@click.option("--fake-limit", default=1.1, show_default=True,
              help="the fakes refuse sends beyond this many times the rate in any second (0: off)")
def bench_reminders(reservations: int, rate: float, lead_s: float, fake_limit: float) -> None:
    """The T-10m reminders of one session reserved by N people, planned and sent against fake
    Telegram and WeChat servers that enforce a limit."""
    from qianxing.bench import reminders

    if reservations < 2 or rate <= 0 or lead_s < 1 or fake_limit < 0:
        raise click.BadParameter("--reservations at least 2, --rate positive, --lead at least 1")
    click.echo(json.dumps(reminders.run(settings(), reservations=reservations, rate=rate, lead_s=lead_s,
                                        fake_limit=fake_limit), ensure_ascii=False))


@bench.command("group-buy")
@click.option("--teams", default=2000, show_default=True, help="teams started (one in ten left one member short)")
@click.option("--size", default=3, show_default=True, help="members per team")
@click.option("--clients", default=64, show_default=True, help="teams in flight (and ping clients)")
@click.option("--baseline", "baseline_s", default=3.0, show_default=True, help="seconds per ping baseline window")
def bench_group_buy(teams: int, size: int, clients: int, baseline_s: float) -> None:
    """Distinct buyers start and join group-buy teams concurrently through the API; the
    worker delivers full teams and refunds the expired ones."""
    from qianxing.bench import groupbuy

    if teams < 1 or not 2 <= size <= 50 or clients < 1 or baseline_s <= 0:
        raise click.BadParameter("--teams and --clients at least 1, --size 2-50, --baseline positive")
    click.echo(json.dumps(groupbuy.run(settings(), teams=teams, size=size, clients=clients, baseline_s=baseline_s)))


@bench.command("risk")
@click.option("--orders", default=200_000, show_default=True, help="paid orders to score")
@click.option("--creators", default=10_000, show_default=True, help="creators in the tree")
@click.option("--sample", default=1000, show_default=True, help="orders in the per-order baseline")
@click.option("--fraud-share", default=0.05, show_default=True, help="share of orders that are injected fraud")
@click.option("--batch", type=int, default=None, help="orders per scoring batch (default: RISK_SCORE_BATCH)")
@click.option("--baseline-budget", default=120.0, show_default=True, help="seconds at most for the per-order baseline")
@click.option("--rule-timings/--no-rule-timings", default=True, show_default=True,
              help="time each rule's query over all batches after the run")
def bench_risk(orders: int, creators: int, sample: int, fraud_share: float, batch: int | None,
               baseline_budget: float, rule_timings: bool) -> None:
    """Batched risk scoring of N paid orders (honest traffic plus labelled fraud patterns)
    against scoring a sample one order at a time; recall and false positives (scratch database)."""
    from qianxing.bench import risk

    if (orders < 100 or creators < 20 or sample < 1 or not 0 <= fraud_share <= 0.5 or baseline_budget <= 0
            or (batch is not None and batch < 1)):
        raise click.BadParameter("--orders at least 100, --creators at least 20, --sample and --batch at least 1, "
                                 "--fraud-share 0-0.5, --baseline-budget positive")
    click.echo(json.dumps(risk.run(settings(), orders=orders, creators=creators, sample=min(sample, orders),
                                   fraud_share=fraud_share, batch=batch, baseline_budget_s=baseline_budget,
                                   per_rule_timings=rule_timings)))


@bench.command("answers")
@click.option("--limit", type=int, default=None, help="ask only the first N questions of the evaluation set")
@click.option("--model/--no-model", default=True, show_default=True,
              help="also ask every question with a model (the fake OpenAI-compatible server on 127.0.0.1)")
def bench_answers(limit: int | None, model: bool) -> None:
    """The grounded answer engine against qianxing/bench/answers_eval.jsonl (scratch database with the
    demo shop and the default FAQ): accuracy, invented numbers, hand-off rate, p95 offline and with a model."""
    from qianxing.bench import answers

    if limit is not None and limit < 1:
        raise click.BadParameter("--limit must be at least 1")
    click.echo(json.dumps(answers.run(settings(), limit=limit, model=model)))
