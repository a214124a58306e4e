"""Referral numbers in the bureau's document style: 徐工信交〔2026〕第0001号, counted per year.

The year sits in hexagonal brackets 〔〕 (U+3014/U+3015), as in official document numbers;
the sequence has at least four digits and grows past 9999 rather than wrapping. The parser
also reads what people type instead: [] 【】 （） () for the brackets, full-width digits,
spaces, a missing 第 or 号, and always gives back the canonical form.
"""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

DEFAULT_PREFIX = "徐工信交"

# After NFKC: full-width digits and （） become ASCII; 〔〕 and 【】 stay as they are.
_NUMBER = re.compile(
    r"""
    (?P<prefix>[^\s\[\]【】()〔〕0-9]+?) \s*
    [\[【(〔] \s* (?P<year>[0-9]{4}) \s* [\]】)〕] \s*
    第? \s* (?P<seq>[0-9]+) \s* 号?
    """,
    re.VERBOSE,
)


class ReferralNumber(NamedTuple):
    prefix: str
    year: int
    seq: int

    def __str__(self) -> str:
        return referral_number(self.year, self.seq, self.prefix)


def referral_number(year: int, seq: int, prefix: str = DEFAULT_PREFIX) -> str:
    """`referral_number(2026, 1) == "徐工信交〔2026〕第0001号"`."""
    if not 1000 <= year <= 9999:
        raise ValueError("year must have four digits")
    if seq < 1:
        raise ValueError("seq starts at 1")
    if not prefix or not prefix.strip() or prefix != prefix.strip():
        raise ValueError("prefix must be a non-blank word without surrounding spaces")
    return f"{prefix}〔{year}〕第{seq:04d}号"


def parse_referral_number(text: str) -> ReferralNumber:
    """The prefix, year and sequence of a referral number; ValueError when `text` is not one."""
    match = _NUMBER.fullmatch(unicodedata.normalize("NFKC", text).strip())
    if match is None:
        raise ValueError(f"not a referral number: {text!r}")
    year, seq = int(match["year"]), int(match["seq"])
    if year < 1000 or seq < 1:
        raise ValueError(f"not a referral number: {text!r}")
    return ReferralNumber(match["prefix"], year, seq)
