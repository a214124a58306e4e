"""Chinese full-text search terms: overlapping character bigrams, the way Lucene's CJK analyzer does it.

Chinese has no spaces, so a word index would need a dictionary; bigrams need none. A text is
indexed as the sequence of its CJK bigrams (融资难 -> 融资 资难) and its lowercased Latin/digit
words. A query of two or more CJK characters becomes a phrase of its bigrams, so it matches
exactly the texts that contain it as a substring: 融资 finds 融资难融资贵, 人才住房 finds
…企业人才住房支持…. Both SQLite FTS5 and PostgreSQL tsvector index the same token string.
"""

from __future__ import annotations

import re
import unicodedata

# CJK Unified Ideographs with extensions A and compatibility ideographs: the characters that
# have no word separators.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_RUN = re.compile(rf"[{_CJK}]+|[0-9a-z]+")
_IS_CJK = re.compile(rf"[{_CJK}]")


# Text made only of these characters comes out of NFKC with the same tokens, so it skips it: ASCII,
# the unified ideographs, and CJK and fullwidth punctuation (NFKC leaves it as it is or makes it
# ASCII punctuation, a separator either way; no combining mark among them). Nearly all Chinese
# text is, and NFKC was a third of the time a note's tokens took. tests/test_search.py checks
# every character of the class.
_NFKC_STABLE = re.compile(
    "[\x00-\x7f\u00b7\u2010-\u2027\u3000-\u3029\u3030-\u3037\u3400-\u4dbf\u4e00-\u9fff"
    "\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]*"
)


def _runs(text: str) -> list[str]:
    if not _NFKC_STABLE.fullmatch(text):
        text = unicodedata.normalize("NFKC", text)
    return _RUN.findall(text.lower())


def _run_tokens(run: str) -> list[str]:
    # A run is all CJK or all [0-9a-z]; every CJK character sorts after "z".
    if len(run) > 1 and run[0] > "z":
        return list(map(str.__add__, run, run[1:]))  # the bigrams run[i:i+2]
    return [run]


def index_tokens(*texts: str | None) -> str:
    """The space-separated token string stored for a document made of `texts`."""
    tokens: list[str] = []
    for text in texts:
        if text:
            for run in _runs(text):
                tokens.extend(_run_tokens(run))
    return " ".join(tokens)


def query_plan(query: str) -> tuple[list[str], list[str]]:
    """What a query asks for: (phrases for the index, single characters to scan for).

    Every whitespace-separated term must occur. Within a term, each CJK run of two or more
    characters becomes a phrase of its bigrams and each Latin/digit word a one-token phrase,
    so "5G基站" asks for "5g" and "基站". A lone CJK character cannot be found through
    bigrams; it is returned apart, for a substring scan.
    """
    phrases: list[str] = []
    singles: list[str] = []
    for term in query.split():
        for run in _runs(term):
            if _IS_CJK.fullmatch(run):
                singles.append(run)
            else:
                phrases.append(" ".join(_run_tokens(run)))
    return phrases, singles
