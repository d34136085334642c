"""Loopback fakes of the WeChat API and WeChat Pay v2 for driving the real wechatpy clients."""

from tests.fakes.http import FakeResponse, FakeServer, RecordedRequest
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.fakes.wechat_pay import FakeOrder, FakeRefund, FakeWeChatPay, NotifyAttempt

__all__ = [
    "FakeOrder",
    "FakeRefund",
    "FakeResponse",
    "FakeServer",
    "FakeWeChatAPI",
    "FakeWeChatPay",
    "NotifyAttempt",
    "RecordedRequest",
]
