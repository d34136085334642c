"""`qianxing bench answers`: the grounded answer engine against its evaluation set.

The run owns a scratch database (`qx_bench_answers_<pid>` next to the PostgreSQL in
DATABASE_URL, dropped afterwards, or a SQLite file under var/bench/): migrated (the default FAQ
comes with migration 0022) and seeded with the demo shop (`qianxing.demo.seed_demo`). Then every
question of qianxing/bench/answers_eval.jsonl is asked through `content_ai.answers.reply`:

1. offline (no model): `accuracy`, `handoff_rate`, `p95_ms` (each reply timed, after one warm-up
   question that builds the index and loads the embedding model: `index_build_ms`);
2. with a model: the fake OpenAI-compatible server (tests/fakes/openai_api.py) on 127.0.0.1
   behind the real `Provider`, told before each question to answer with the offline answer as
   JSON, and on every INVENT_EVERY-th question to quote a price the facts do not hold (the guard
   must catch it: `model_guard_caught`); `model_accuracy`, `model_p95_ms`, `model_answers`
   (replies the model's text made it through).

A reply is right (`accuracy`) when the row expects facts and the reply cites one of them, does
not hand off, and its text states every number of the row's `numbers`; when the row expects
"handoff" and the reply hands off; when it expects "none" and the reply cites nothing.
`invented_numbers` counts delivered answers (either run) with a number that is not in the
facts they cite, re-checked here with the guard against the facts read again.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

from qianxing.bench.harness import ScratchDatabase, redis_bench_url
from qianxing.settings import Settings

EVAL_PATH = Path(__file__).with_name("answers_eval.jsonl")
ROOT = Path(__file__).resolve().parents[2]  # the checkout: the fake server is tests/fakes/openai_api.py
TARGETS = {"accuracy": 0.9, "invented_numbers": 0, "p95_ms": 50}
INVENT_EVERY = 5
AI_KEY = "sk-bench-answers"


def _log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def load_eval(path: Path = EVAL_PATH) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def expected(row: dict[str, Any]) -> tuple[set[str], bool]:
    """(fact ids any of which is right, whether a hand-off is right)."""
    expect = row["expect"]
    if expect == "handoff":
        return set(), True
    if expect == "none":
        return set(), False
    return {e for e in expect if e != "handoff"}, "handoff" in expect


def correct(row: dict[str, Any], reply: Any) -> bool:
    from content_ai.guard import numbers_in

    facts, handoff_ok = expected(row)
    if reply.handoff:
        return handoff_ok
    if row["expect"] == "none":
        return not reply.cited
    if not facts or not facts & set(reply.cited):
        return False
    wanted = {str(n) for n in row.get("numbers", [])}
    return wanted <= numbers_in(reply.text)


def invented(reply: Any, settings: Settings) -> list[str]:
    """Numbers of a delivered answer that the facts it cites (read now) do not state."""
    from content_ai.answers import facts_of
    from content_ai.guard import invented_numbers

    if reply.handoff or not reply.text:
        return []
    return invented_numbers(reply.text, facts_of(reply, settings))


def p95(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def ask_all(rows: list[dict[str, Any]], settings: Settings, *, ai: Any = None, fake: Any = None) -> dict[str, Any]:
    """Every question once; the measures of this pass."""
    from content_ai.answers import reply
    from models.db import db

    times, right, handoffs, made_up, answered, caught, wrong = [], 0, 0, 0, 0, 0, []
    with db.connection_context():
        for i, row in enumerate(rows):
            if fake is not None:
                _prime(fake, row, settings, invent=(i % INVENT_EVERY == INVENT_EVERY - 1))
            t0 = time.perf_counter()
            got = reply(row["q"], settings=settings, ai=ai, audience=row.get("audience", "shopper"))
            times.append((time.perf_counter() - t0) * 1000)
            ok = correct(row, got)
            right += ok
            handoffs += got.handoff
            made_up += bool(invented(got, settings))
            answered += got.source == "model"
            caught += got.reason == "guard:number"
            if not ok and len(wrong) < 12:
                wrong.append({"q": row["q"][:40], "expect": row["expect"], "cited": list(got.cited),
                              "handoff": got.handoff, "reason": got.reason})
    n = len(rows)
    return {"accuracy": round(right / n, 3) if n else 0.0, "invented_numbers": made_up,
            "handoff_rate": round(handoffs / n, 3) if n else 0.0, "p95_ms": p95(times),
            "p50_ms": round(sorted(times)[len(times) // 2], 1) if times else 0.0,
            "model_answers": answered, "guard_caught": caught, "wrong": wrong}


def _prime(fake: Any, row: dict[str, Any], settings: Settings, *, invent: bool) -> None:
    """Tell the fake what to answer: the offline answer as the model's JSON, or on `invent` a
    fluent answer quoting a price no fact holds."""
    from content_ai.answers import reply

    offline = reply(row["q"], settings=settings, audience=row.get("audience", "shopper"))
    if invent:
        made_up = "今天下单只要 8.8 元，还送一个月会员！"
        fake.answer({"answer": made_up, "cited": list(offline.cited), "confident": True})
    else:
        fake.answer({"answer": offline.text, "cited": list(offline.cited), "confident": True})


def run(settings: Settings, *, limit: int | None = None, model: bool = True,
        log: Any = _log) -> dict[str, Any]:
    """Build the scratch shop, ask every question offline and with the fake model; the result
    the CLI prints as its last line."""
    from content_ai import retrieval
    from content_ai.answers import reply
    from models.db import db
    from models.migrations import migrate
    from qianxing import wiring
    from qianxing.demo import seed_demo

    # one OpenMP thread per embedding: a short query is as fast on one, and several spin and stall
    # when the cores are shared (a p95 of seconds instead of tens of milliseconds on a busy host)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = load_eval()[: limit or None]
    scratch = ScratchDatabase(settings, "answers")
    scratch.create()
    updates: dict[str, Any] = {"DATABASE_URL": scratch.url, "AI_BASE_URL": None}
    if settings.REDIS_URL:
        updates["REDIS_URL"] = redis_bench_url(settings.REDIS_URL)
    local = settings.model_copy(update=updates)
    try:
        wiring.reset()
        runtime = wiring.bootstrap(local)
        t0 = time.perf_counter()
        migrate()
        with db.connection_context():
            seed_demo(keys_per_sku=5)
        setup_s = time.perf_counter() - t0
        retrieval.forget()
        with db.connection_context():
            t0 = time.perf_counter()
            reply("爱奇艺会员多少钱", settings=local)  # builds the index, loads the embedding model
            build_ms = (time.perf_counter() - t0) * 1000
            docs = len(retrieval.current(local).docs)
        log(f"scratch database {scratch.name}: demo shop seeded in {setup_s:.1f} s, {docs} facts indexed "
            f"in {build_ms:.0f} ms; {len(rows)} questions")
        offline = ask_all(rows, local)
        log(f"offline: accuracy {offline['accuracy']}, p95 {offline['p95_ms']} ms, wrong: {offline['wrong']}")
        result: dict[str, Any] = {
            "accuracy": offline["accuracy"], "invented_numbers": offline["invented_numbers"],
            "handoff_rate": offline["handoff_rate"], "p95_ms": offline["p95_ms"], "p50_ms": offline["p50_ms"],
            "n": len(rows), "facts": docs, "index_build_ms": round(build_ms, 1),
            "backend": "postgresql" if scratch.postgres else "sqlite",
        }
        if model:
            result.update(_model_pass(rows, local, runtime.redis, log))
        result["peak_rss_mb"] = peak_rss_mb()
        result["targets_met"] = (result["accuracy"] >= TARGETS["accuracy"] and result["p95_ms"] < TARGETS["p95_ms"]
                                 and result["invented_numbers"] + result.get("model_invented_numbers", 0) == 0)
        return result
    finally:
        retrieval.forget()
        scratch.remove()
        wiring.reset()


def _model_pass(rows: list[dict[str, Any]], local: Settings, redis: Any, log: Any) -> dict[str, Any]:
    from content_ai.provider import Provider

    if not (ROOT / "tests" / "fakes" / "openai_api.py").exists():
        raise RuntimeError("bench answers runs its model pass from a checkout: tests/fakes/openai_api.py is missing "
                           "(or pass --no-model)")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from tests.fakes.openai_api import FakeOpenAI

    with FakeOpenAI(AI_KEY) as fake:
        ai_settings = local.model_copy(update={"AI_BASE_URL": fake.base_url_v1, "AI_API_KEY": AI_KEY,
                                               "AI_CACHE_S": 0, "AI_RETRIES": 0, "AI_TIMEOUT_S": 5})
        for key in redis.scan_iter("ai:*"):
            redis.delete(key)
        ai = Provider(ai_settings, redis)
        found = ask_all(rows, ai_settings, ai=ai, fake=fake)
        calls = len(fake.chat_calls)
    log(f"model: accuracy {found['accuracy']}, p95 {found['p95_ms']} ms, {found['model_answers']} model answers, "
        f"{found['guard_caught']} invented numbers caught, {calls} chat calls")
    return {"model_accuracy": found["accuracy"], "model_invented_numbers": found["invented_numbers"],
            "model_handoff_rate": found["handoff_rate"], "model_p95_ms": found["p95_ms"],
            "model_answers": found["model_answers"], "model_guard_caught": found["guard_caught"],
            "model_chat_calls": calls}
