"""The output guards: generated text may state only what the facts state.

Every model answer, script, talk track and hook passes `check(text, facts)` before anyone sees
it; a failure drops the generated text for the offline one. The guards read the output only, so
whatever the user's text asked for ("ignore previous instructions", role play), an answer with a
number or a promise the facts do not hold never gets out.

- Numbers: every number in the text (digits with decimals, ¥ amounts, percentages, dates and
  times split into their numbers, Chinese numerals such as 七天 or 二十四小时) must appear among
  the numbers of the facts (or `allowed`, for a caller's own figures such as a script's 15 s).
  "19.90" and "19.9" are the same number; "¥19.90" is 19.9.
- Promises: a refund, a discount or gift, a delivery time, or a guarantee is a promise; each
  kind needs words of its kind in the facts ("退款", "优惠", "自动发货", ...), else it is one the
  facts do not make.

Citation markers `[sku:CODE]`, `[faq:ID]` and `[rule:NAME]` are not read (the answer layer
turns them into names after the check).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

CITATION = re.compile(r"\[(?:sku|faq|rule|topic|product):[^\]\s]{1,64}\]")
_DIGITS = re.compile(r"\d+(?:,\d{3}(?!\d))*(?:\.\d+)?")
_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7,
              "八": 8, "九": 9}
_CN_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百千万]+")
# a Chinese numeral that is part of a word, not a quantity ("一起", "一下", "万一", "统一", ...)
_CN_WORDS = re.compile(
    r"一(?:起|下|定|些|点|直|样|般|旦|切|边|面|共|致|律|键|次性|站|手|口气|眼|步|把|份子)|万一|唯一|统一|同一|"
    r"第一时间|之一|不一|专一|一一|十分|万分|百分百|千万(?!元)|三思|九州|五湖|四海|七嘴八舌")


def _number(text: str) -> str:
    """Canonical form: no thousands separators, no trailing decimal zeros."""
    text = text.replace(",", "")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text.lstrip("0") or "0"


def _cn_value(word: str) -> int | None:
    """The value of a Chinese numeral (up to the 万s), None if it is not one."""
    total, section, digit = 0, 0, None
    for ch in word:
        if ch in _CN_DIGITS:
            if digit is not None:  # "二四" read digit by digit
                digit = digit * 10 + _CN_DIGITS[ch]
            else:
                digit = _CN_DIGITS[ch]
        else:
            unit = _CN_UNITS[ch]
            if unit == 10_000:
                total = (total + section + (digit or 0)) * unit
                section, digit = 0, None
            else:
                section += (1 if digit is None else digit) * unit
                digit = None
    return total + section + (digit or 0)


def numbers_in(text: str) -> set[str]:
    """Every number the text states, in canonical form."""
    text = CITATION.sub(" ", unicodedata.normalize("NFKC", text or ""))
    found = {_number(m) for m in _DIGITS.findall(text)}
    text = _CN_WORDS.sub(" ", text)
    for word in _CN_NUMBER.findall(text):
        value = _cn_value(word)
        if value is not None:
            found.add(str(value))
    return found


@dataclass(frozen=True)
class Promise:
    kind: str
    trigger: re.Pattern[str]
    support: tuple[str, ...]  # any of these in the facts makes a promise of this kind stated


PROMISES: tuple[Promise, ...] = (
    Promise("refund", re.compile(r"退款|退货|退钱|包退|全额退|无理由|可退|能退|退换"),
            ("退款", "退货", "可退", "退换")),
    Promise("discount", re.compile(r"打折|折扣|[一二三四五六七八九\d]折|优惠|立减|满减|便宜|特价|减免|"
                                   r"返现|红包|赠送|送你|免单"),
            ("优惠", "折", "立减", "满减", "券", "特价", "赠")),
    Promise("delivery_time", re.compile(r"(?:马上|立即|立刻|秒|当天|即时|很快|尽快)(?:发货|到账|送达|发)|"
                                        r"(?:小时|分钟|天|工作日)内(?:发货|到账|送达|发出)"),
            ("自动发货", "立即", "到账", "内发货", "小时内", "分钟内")),
    Promise("guarantee", re.compile(r"保证|承诺|绝对|百分之百|百分百|100\s*%|稳赚|包赚|包过|必定|一定能"),
            ("保证", "承诺")),
)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    invented: tuple[str, ...] = ()  # numbers the facts do not state
    promises: tuple[str, ...] = ()  # promise kinds the facts do not make
    reasons: tuple[str, ...] = field(default=())

    def __bool__(self) -> bool:
        return self.ok


def invented_numbers(text: str, facts: str, allowed: Iterable[str | int] = ()) -> list[str]:
    known = numbers_in(facts) | {_number(str(a)) for a in allowed}
    return sorted(numbers_in(text) - known)


def unstated_promises(text: str, facts: str) -> list[str]:
    text = CITATION.sub(" ", unicodedata.normalize("NFKC", text or ""))
    facts = unicodedata.normalize("NFKC", facts or "")
    return [p.kind for p in PROMISES if p.trigger.search(text) and not any(s in facts for s in p.support)]


def check(text: str, facts: str, *, allowed: Iterable[str | int] = ()) -> Verdict:
    """Whether `text` states only numbers and promises that `facts` (the retrieved facts as
    text) states; `allowed`: further numbers the caller vouches for."""
    invented = tuple(invented_numbers(text, facts, allowed))
    promises = tuple(unstated_promises(text, facts))
    reasons = tuple([f"number {n} not in the facts" for n in invented]
                    + [f"{k} promise not in the facts" for k in promises])
    return Verdict(ok=not reasons, invented=invented, promises=promises, reasons=reasons)
