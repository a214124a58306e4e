"""Referral numbers in the bureau's style, and reading them back from what people type."""

from __future__ import annotations

import pytest

from server.domain.numbering import DEFAULT_PREFIX, ReferralNumber, parse_referral_number, referral_number


@pytest.mark.parametrize(
    ("year", "seq", "expected"),
    [
        (2026, 1, "徐工信交〔2026〕第0001号"),
        (2026, 33, "徐工信交〔2026〕第0033号"),
        (2027, 9999, "徐工信交〔2027〕第9999号"),
        (2027, 10000, "徐工信交〔2027〕第10000号"),  # grows rather than wraps
    ],
)
def test_referral_number(year, seq, expected):
    assert referral_number(year, seq) == expected
    assert parse_referral_number(expected) == ReferralNumber(DEFAULT_PREFIX, year, seq)


def test_other_prefix():
    assert referral_number(2026, 7, prefix="徐经开交") == "徐经开交〔2026〕第0007号"


@pytest.mark.parametrize(
    ("year", "seq", "prefix"),
    [
        (2026, 0, "徐工信交"),
        (2026, -1, "徐工信交"),
        (999, 1, "徐工信交"),
        (10000, 1, "徐工信交"),
        (2026, 1, ""),
        (2026, 1, " 徐"),
    ],
)
def test_referral_number_refuses_nonsense(year, seq, prefix):
    with pytest.raises(ValueError):
        referral_number(year, seq, prefix)


@pytest.mark.parametrize(
    "text",
    [
        "徐工信交〔2026〕第0012号",
        "徐工信交[2026]第12号",
        "徐工信交【2026】12号",
        "徐工信交（2026）第012号",
        "徐工信交(2026)12",
        " 徐工信交 〔 2026 〕 第 12 号 ",
        "徐工信交［２０２６］第００１２号",  # full-width brackets and digits
        "徐工信交〔2026〕第0012号\u3000",  # ideographic space
    ],
)
def test_parse_reads_what_people_type(text):
    number = parse_referral_number(text)
    assert number == ReferralNumber("徐工信交", 2026, 12)
    assert str(number) == "徐工信交〔2026〕第0012号"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "徐工信交",
        "〔2026〕第0001号",  # no prefix
        "徐工信交〔26〕第0001号",  # two-digit year
        "徐工信交〔0999〕第0001号",
        "徐工信交〔2026〕第0000号",
        "徐工信交〔2026〕第号",
        "徐工信交〔2026〕第0001号附件",
        "徐工信交2026第0001号",  # no brackets
        "徐工 信交〔2026〕第0001号",
    ],
)
def test_parse_refuses_what_is_not_a_number(text):
    with pytest.raises(ValueError):
        parse_referral_number(text)


def test_numbers_of_one_year_sort_by_sequence_when_parsed():
    numbers = [referral_number(2026, seq) for seq in (10, 2, 10000, 1)]
    assert [parse_referral_number(n).seq for n in sorted(numbers, key=parse_referral_number)] == [1, 2, 10, 10000]
