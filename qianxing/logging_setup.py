"""Logging with secrets kept out: every record passes a redaction filter, and the libraries
that log request bodies or signing strings at DEBUG (wechatpy, urllib3) are held at INFO."""

from __future__ import annotations

import logging
import re

_QUERY_SECRET = re.compile(r"((?:secret|access_token|key|js_code|sign|paySign)=)[^&\s'\"]+", re.I)
_noisy = ("wechatpy", "urllib3", "requests")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        clean = _QUERY_SECRET.sub(r"\1[redacted]", text)
        for secret in self._secrets:
            clean = clean.replace(secret, "[redacted]")
        return clean

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        # A traceback is formatted from exc_info unless exc_text is set: format and redact it
        # here, or an exception message (a URL with ?secret=...) reaches the log verbatim.
        if record.exc_info and not record.exc_text:
            record.exc_text = _formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_formatter = logging.Formatter()


def configure_logging(level: str, secrets: list[str]) -> None:
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    for handler in root.handlers:
        handler.filters = [f for f in handler.filters if not isinstance(f, RedactingFilter)]
        handler.addFilter(RedactingFilter(secrets))
    root.setLevel(level.upper())
    for name in _noisy:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
