"""Payout adapters: money out to a creator's WeChat wallet.

- `WeChatTransferAdapter`: WeChat Pay v2 merchant transfers to a wallet (企业付款到零钱,
  mmpaymkttransfers/promotion/transfers and gettransferinfo) through wechatpy; the request
  needs the merchant certificate (WECHATPAY_MCH_CERT / WECHATPAY_MCH_KEY).
- `SandboxPayoutAdapter`: dev and tests, no outside party; its memory is in Redis.

Both implement models.payouts.PayoutAdapter (re-exported here).
"""

from __future__ import annotations

from redis import Redis
from wechatpy.exceptions import WeChatPayException
from wechatpy.pay import WeChatPay

from models.payouts import PayoutAdapter, PayoutFailed, PayoutUnclear, TransferState, TransferStatus

__all__ = ["PayoutAdapter", "SandboxPayoutAdapter", "WeChatTransferAdapter"]

# Error codes after which the transfer was certainly not made and will not be by retrying the
# same request: the withdrawal fails and its money returns to the creator. Every other error
# (SYSTEMERROR, SEND_FAILED, NOTENOUGH, FREQ_LIMIT, a transport failure, a certificate problem)
# leaves the outcome open: the withdrawal stays `paying` and is queried by its no later.
DEFINITE_FAILURES = frozenset({
    "OPENID_ERROR", "NAME_MISMATCH", "AMOUNT_LIMIT", "V2_ACCOUNT_SIMPLE_BAN", "MONEY_LIMIT",
    "SENDNUM_LIMIT", "RECV_ACCOUNT_NOT_ALLOWED", "PAY_CHANNEL_NOT_ALLOWED", "PARAM_ERROR", "NO_AUTH",
})


class WeChatTransferAdapter:
    """The pay object is `qianxing.gateways.payments.make_wechatpay(...)`, whose API_BASE_URL
    is WECHATPAY_API_BASE_URL. `server_ip` is sent as spbill_create_ip (wechatpy would
    otherwise resolve api.mch.weixin.qq.com to find it)."""

    name = "wechatpay"

    def __init__(self, pay: WeChatPay, server_ip: str = "127.0.0.1") -> None:
        self.pay = pay
        self.server_ip = server_ip

    def transfer(self, no: str, openid: str, amount_fen: int, desc: str) -> str:
        try:
            result = self.pay.transfer.transfer(
                user_id=openid, amount=amount_fen, desc=desc[:100], client_ip=self.server_ip,
                check_name="NO_CHECK", out_trade_no=no)
        except WeChatPayException as exc:
            code = exc.errcode or ""
            message = f"WeChat Pay transfer: {code or exc.return_code or 'HTTP error'} {exc.errmsg or ''}"
            if exc.result_code == "FAIL" and code in DEFINITE_FAILURES:
                raise PayoutFailed(message.strip()) from None
            raise PayoutUnclear(message.strip()) from None
        except Exception as exc:  # requests' timeouts and connection errors, a garbled answer
            raise PayoutUnclear(f"WeChat Pay could not be reached: {type(exc).__name__}") from None
        if not isinstance(result, dict):
            raise PayoutUnclear("WeChat Pay answered something that is not XML")
        return str(result.get("payment_no") or no)

    def query(self, no: str) -> TransferStatus:
        try:
            result = self.pay.transfer.query(no)
        except WeChatPayException as exc:
            if exc.result_code == "FAIL" and exc.errcode == "NOT_FOUND":
                return TransferStatus(TransferState.NOT_FOUND)
            raise PayoutUnclear(f"WeChat Pay transfer query: {exc.errcode or exc.return_code}") from None
        except Exception as exc:
            raise PayoutUnclear(f"WeChat Pay could not be reached: {type(exc).__name__}") from None
        if not isinstance(result, dict):
            raise PayoutUnclear("WeChat Pay answered something that is not XML")
        status = result.get("status")
        if status == "SUCCESS":
            return TransferStatus(TransferState.SUCCESS, str(result.get("detail_id") or no))
        if status == "FAILED":
            return TransferStatus(TransferState.FAILED, reason=str(result.get("reason") or "FAILED"))
        return TransferStatus(TransferState.PROCESSING)


class SandboxPayoutAdapter:
    """Pays nobody. Mode `fail` refuses every transfer; per wallet, openids starting with
    `fail` are refused, `flaky` ones are paid but the first answer is lost (a timeout after the
    money left), and `lost` ones fail the first attempt before anything is paid. Idempotent per
    no, like the real provider."""

    name = "sandbox"

    def __init__(self, redis: Redis, mode: str = "ok") -> None:
        self.redis, self.mode = redis, mode

    def _key(self, kind: str, no: str) -> str:
        return f"qianxing:sandbox-payout:{kind}:{no}"

    def transfer(self, no: str, openid: str, amount_fen: int, desc: str) -> str:
        self.redis.incr(self._key("calls", no))
        self.redis.expire(self._key("calls", no), 86400)
        if (ref := self.redis.get(self._key("done", no))) is not None:
            return ref.decode()
        first_try = self.redis.set(self._key("seen", no), 1, nx=True, ex=86400)
        if self.mode == "fail" or openid.startswith("fail"):
            raise PayoutFailed("sandbox payout refused the transfer")
        if openid.startswith("lost") and first_try:
            raise PayoutUnclear("sandbox payout timed out before paying")
        ref = f"SBX{no}"
        self.redis.set(self._key("done", no), ref, ex=86400)
        if openid.startswith("flaky") and first_try:
            raise PayoutUnclear("sandbox payout timed out after paying")
        return ref

    def query(self, no: str) -> TransferStatus:
        if (ref := self.redis.get(self._key("done", no))) is not None:
            return TransferStatus(TransferState.SUCCESS, ref.decode())
        return TransferStatus(TransferState.NOT_FOUND)

    def calls(self, no: str) -> int:
        """How many transfer requests were made for this no (tests)."""
        return int(self.redis.get(self._key("calls", no)) or 0)
