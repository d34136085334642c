"""`qianxing bench answers`: the evaluation set is well formed (at least 150 shopper and creator
questions whose expected facts exist in the demo shop, the default FAQ and the rules), and a run
of the real command over the whole set offline and behind the fake model prints its JSON with
the accuracy target met and no invented number delivered. Never asserts on speed."""

from __future__ import annotations

import json

from content_ai import retrieval
from models.db import db
from qianxing.bench import answers
from qianxing.demo import seed_demo
from tests.bench.run import bench_result

REQUIRED = ("accuracy", "invented_numbers", "handoff_rate", "p95_ms", "model_p95_ms", "model_accuracy",
            "model_invented_numbers", "model_guard_caught", "model_answers", "peak_rss_mb", "n", "facts")


def test_the_evaluation_set_refers_to_facts_that_exist(rt, settings):
    # given the demo shop and the default FAQ
    with db.connection_context():
        seed_demo(keys_per_sku=1)
        known = {d.id for d in retrieval.current(settings).docs}
    rows = answers.load_eval()
    # then the set is large, mixes both audiences and every kind of expectation
    assert len(rows) >= 150
    assert {r["audience"] for r in rows} == {"shopper", "creator"}
    assert sum(r["audience"] == "creator" for r in rows) >= 30
    kinds = {"handoff" if r["expect"] == "handoff" else "none" if r["expect"] == "none" else "facts" for r in rows}
    assert kinds == {"handoff", "none", "facts"}
    # and every expected fact is one the engine can retrieve, every number a plain number
    for row in rows:
        assert set(row) <= {"q", "audience", "expect", "numbers"}, row
        if isinstance(row["expect"], list):
            facts = [e for e in row["expect"] if e != "handoff"]
            assert facts and set(facts) <= known, row
        else:
            assert row["expect"] in ("handoff", "none"), row
        for n in row.get("numbers", []):
            float(n)
    assert len({r["q"] for r in rows}) == len(rows)  # no question twice
    retrieval.forget()


def test_scoring_counts_only_the_right_facts_or_the_right_handoff():
    from content_ai.answers import Reply

    row = {"q": "爱奇艺多少钱", "audience": "shopper", "expect": ["sku:IQY-GOLD-1M"], "numbers": ["19.9"]}
    right = Reply("爱奇艺 ¥19.90", False, 0.8, ("sku:IQY-GOLD-1M",), "offline")
    assert answers.correct(row, right)
    assert not answers.correct(row, Reply("爱奇艺 ¥29.90", False, 0.8, ("sku:IQY-GOLD-1M",), "offline"))
    assert not answers.correct(row, Reply("QQ ¥15.00", False, 0.8, ("sku:QQM-GREEN-1M",), "offline"))
    assert not answers.correct(row, Reply("转人工", True, 0.2, (), "none"))
    assert answers.correct({**row, "expect": "handoff"}, Reply("转人工", True, 0.2, (), "none"))
    assert not answers.correct({**row, "expect": "none"}, right)
    assert answers.correct({**row, "expect": "none"}, Reply("", False, 0.0, (), "none"))


def test_the_command_meets_the_accuracy_target(rt):
    result = bench_result("answers", required=REQUIRED, timeout=900)
    assert result["n"] == len(answers.load_eval())
    assert result["accuracy"] >= 0.9 and result["model_accuracy"] >= 0.9
    assert result["invented_numbers"] == 0 and result["model_invented_numbers"] == 0
    # the fake model invented a price on every fifth question it was asked: each was caught
    assert result["model_guard_caught"] >= 1 and result["model_answers"] >= 1
    assert 0 < result["handoff_rate"] < 0.5
    json.dumps(result)
