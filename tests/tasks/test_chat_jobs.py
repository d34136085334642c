"""The outbound side's housekeeping jobs: pruning the image cache under POSTER_DIR."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bots.sender import store_image
from models.chat import OutboundMessage
from models.db import db
from qianxing import wiring
from tasks.chat import prune_posters
from tasks.periodic import PERIODIC, resolve

DAY = 86400
PNG = b"\x89PNG\r\n\x1a\n fake image bytes"


@pytest.fixture
def posters(rt, tmp_path: Path, monkeypatch) -> Path:  # noqa: ANN001
    """POSTER_DIR of this test, kept for 30 days."""
    folder = tmp_path / "posters"
    folder.mkdir()
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(
        update={"POSTER_DIR": str(folder), "POSTER_MAX_AGE_DAYS": 30}))
    return folder


def file(folder: Path, name: str, age_s: float) -> Path:
    path = folder / name
    path.write_bytes(PNG)
    then = time.time() - age_s
    os.utime(path, (then, then))
    return path


def message(key: str, image_key: str, state: str) -> None:
    with db.connection_context():
        wiring.runtime().sender.enqueue(key, "telegram", "900001", {"text": "看看这个", "image_key": image_key})
        OutboundMessage.update(state=state).where(OutboundMessage.key == key).execute()


def test_images_unused_for_the_max_age_go_unless_a_waiting_message_needs_them(posters: Path) -> None:
    # given images last used 40 days ago: one nobody refers to, one a sent message used, one a
    # pending and one a sending message still need; and images used yesterday
    stale = file(posters, "stale.png", 40 * DAY)
    sent = file(posters, "sent.png", 40 * DAY)
    pending = file(posters, "pending.png", 40 * DAY)
    sending = file(posters, "sending.png", 40 * DAY)
    fresh = file(posters, "fresh.png", 1 * DAY)
    message("m-sent", "sent", "sent")
    message("m-pending", "pending", "pending")
    message("m-sending", "sending", "sending")
    # and what an interrupted write left two hours ago, one being written now, another file
    leftover = file(posters, ".stale.abc.tmp", 2 * 3600)
    writing = file(posters, ".new.def.tmp", 5)
    other = file(posters, "README.txt", 400 * DAY)
    # when the pruning job runs
    result = prune_posters()
    # then only the unused images and the leftover are gone
    assert result == {"deleted": 2, "kept_for_messages": 2, "leftovers": 1}
    gone = {stale, sent, leftover}
    assert all(not p.exists() for p in gone)
    assert all(p.exists() for p in (pending, sending, fresh, writing, other))
    # and a second run finds nothing more to do
    assert prune_posters() == {"deleted": 0, "kept_for_messages": 2, "leftovers": 0}


def test_storing_an_image_again_marks_it_as_used(posters: Path) -> None:
    # given an image a message stored 40 days ago
    old = file(posters, "again.png", 40 * DAY)
    inode = old.stat().st_ino
    # when a new message stores the same image (same content, same key)
    store_image(posters, "again", PNG)
    # then the file is not rewritten but counts as used today, so pruning keeps it
    assert old.stat().st_ino == inode and time.time() - old.stat().st_mtime < 60
    assert prune_posters()["deleted"] == 0 and old.exists()


def test_no_poster_folder_yet_is_nothing_to_prune(rt, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(rt, "settings", rt.settings.model_copy(
        update={"POSTER_DIR": str(tmp_path / "never-made")}))
    assert prune_posters() == {"deleted": 0, "kept_for_messages": 0, "leftovers": 0}


def test_pruning_is_a_daily_job():
    assert dict(PERIODIC)["tasks.chat.prune_posters"] == 86400
    assert resolve("tasks.chat.prune_posters") is prune_posters
