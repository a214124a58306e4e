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


def _runs(text: str) -> list[str]:
    normalised = unicodedata.normalize("NFKC", text).lower()
    return _RUN.findall(normalised)


def _run_tokens(run: str) -> list[str]:
    if not _IS_CJK.match(run):
        return [run]
    if len(run) == 1:
        return [run]
    return [run[i : i + 2] for i in range(len(run) - 1)]


def index_tokens(*texts: str | None) -> str:
    """The space-separated token string stored for a document made of `texts`."""
    tokens: list[str] = []
    for text in texts:
        if text:
            for run in _runs(text):
                tokens.extend(_run_tokens(run))
    return " ".join(tokens)


def query_phrases(query: str) -> list[str]:
    """Phrases (space-separated tokens) that must all occur: one per whitespace-separated term.

    Runs inside one term stay one phrase only when they are adjacent in the index, so a term
    like "5G基站" becomes two phrases ("5g", "基站"), each of which must match. A lone CJK
    character cannot be found through bigrams; callers fall back to a substring scan for it.
    """
    phrases: list[str] = []
    for term in query.split():
        for run in _runs(term):
            phrases.append(" ".join(_run_tokens(run)))
    return phrases


def needs_substring_scan(query: str) -> bool:
    """True when some term is a single CJK character, which the bigram index cannot answer."""
    return any(_IS_CJK.fullmatch(run) for term in query.split() for run in _runs(term))
