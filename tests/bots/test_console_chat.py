"""`qianxing chat --as USER [--group CHAT]` through click's CliRunner: lines in, the core's
replies printed, images saved, buttons pressed with #N, EOF ends with status 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from models.db import db
from models.withdrawals import Withdrawal
from tests.bots.conftest import creator_of, join
from tests.factories import earn


def test_no_input_exits_cleanly(cli):
    result = cli("chat", "--as", "ci", input="")
    assert result.exit_code == 0, result.output
    assert result.output == ""


def test_a_private_conversation_with_a_poster_and_buttons(cli, tmp_path):
    # given lines typed by 'ann': join, ask for help, press its first button (the poster)
    result = cli("chat", "--as", "ann", "--images", str(tmp_path),
                 input="/join\n\n帮助\n#1\n#99\n海报\n")
    assert result.exit_code == 0, result.output
    out = result.output
    code = creator_of("ann").code
    assert f"bot> 欢迎加入千星计划！你的邀请码：{code}" in out
    assert "bot> 千星机器人命令" in out
    # the poster image is saved and its path printed
    saved = re.search(r"\[图片\] (\S+\.png)", out)
    assert saved and open(saved.group(1), "rb").read().startswith(b"\x89PNG")
    assert str(tmp_path) in saved.group(1)
    # buttons are numbered; a number that is no button is refused, not sent
    assert "[按钮] #1 邀请海报" in out
    assert "没有按钮 #99" in out
    # pressing #1 and typing the keyword give the same poster
    assert len(set(re.findall(r"\[图片\] (\S+\.png)", out))) == 1
    assert len(re.findall(r"\[图片\]", out)) == 2


def test_withdraw_confirmed_with_a_button(cli):
    creator = join("rich", rank=1)
    earn(creator, 50_000)
    result = cli("chat", "--as", "rich", input="/withdraw 120\n#1\n#1\n")
    assert result.exit_code == 0, result.output
    assert "[按钮] #1 确认提现   #2 取消" in result.output
    assert "提现已提交，等待人工审核：¥120.00" in result.output  # a first withdrawal is reviewed (risk)
    with db.connection_context():
        assert Withdrawal.select().count() == 1


def test_withdraw_cancelled_with_a_button(cli):
    creator = join("rich", rank=1)
    earn(creator, 50_000)
    result = cli("chat", "--as", "rich", input="提现 120\n#2\n")
    assert "已取消，未发起提现" in result.output
    with db.connection_context():
        assert Withdrawal.select().count() == 0


def test_group_mode_welcomes_and_keeps_private_things_private(cli):
    cli("groups", "rules", "add", "--match", "contains", "--pattern", "发货", "--reply", "自动发货")
    result = cli("chat", "--as", "ann", "--group", "g1",
                 input="!join 小红\n什么时候发货\n/vouchers\n/withdraw 100\n聊点别的\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "bot> 欢迎 小红 加入本群" in out
    assert "bot> 自动发货" in out
    assert "bot> 请私聊机器人查看卡券。" in out
    assert "bot> 请私聊机器人：" in out
    assert "（机器人没有回复）" in out


def test_bad_lines_never_crash_the_chat(cli):
    lines = ["/withdraw 💰💰", "/markup", "/" + "z" * 300, "长" * 5000, "\t", "#", "#abc", "/start ___"]
    result = cli("chat", "--as", "fuzz", input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "稍后再试" not in result.output


@pytest.mark.parametrize("closed", [False, True])
def test_a_real_process_without_stdin_exits_zero(settings, closed):
    # given the chat started as CI would: stdin at end of file, or not open at all
    env = {**os.environ, **{k: str(v) for k, v in settings.model_dump().items() if v is not None}}
    result = subprocess.run(
        [sys.executable, "-m", "qianxing.cli", "chat", "--as", "ci"], env=env, capture_output=True,
        stdin=subprocess.DEVNULL, timeout=60, preexec_fn=(lambda: os.close(0)) if closed else None)
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == b""
