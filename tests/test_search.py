"""Chinese full-text search: two-character words, longer phrases, several terms, both databases."""

from __future__ import annotations

import random
import re
import sys
import unicodedata
import uuid

import pytest
from sqlalchemy import text

from server.domain.search import _CJK, _NFKC_STABLE, index_tokens, query_plan
from server.services.search import FTS_TABLES
from tests.factories import visit_note

TEXTS = [
    "企业反映融资难融资贵，希望协调银行续贷500万元。",
    "招工难，一线技术工人缺口约80人，用工成本增加。",
    "引进的研发骨干住房困难，希望落实人才住房支持。",
    "出口产品关税过高，订单下降。",
    "5G基站建设需要电力增容。",
]


def test_tokens_are_bigrams_and_words():
    assert index_tokens("融资难") == "融资 资难"
    assert index_tokens("5G基站，ABC") == "5g 基站 abc"
    assert index_tokens("难") == "难"
    assert index_tokens(None, "") == ""
    # Full-width letters and digits are folded (NFKC).
    assert index_tokens("ＡＢＣ１２３") == "abc123"


def test_text_that_skips_nfkc_has_the_tokens_nfkc_would_give():
    token_char = re.compile(f"[{_CJK}0-9A-Za-z]")
    stable = [chr(c) for c in range(sys.maxunicode + 1) if _NFKC_STABLE.fullmatch(chr(c))]
    assert len(stable) > 27_000  # the unified ideographs at least
    for c in stable:
        normalised = unicodedata.normalize("NFKC", c)
        # Unchanged, or punctuation still (a separator either way); never a combining mark.
        assert normalised == c or not token_char.search(normalised), hex(ord(c))
        assert not unicodedata.combining(c), hex(ord(c))
    # Whole texts: mixes of stable characters and of ones that NFKC changes.
    rng = random.Random(7)
    alphabet = "融资难贵用工住房ABC abc123，。！、“”《》（）…—〇々·\u3000\uff61５Ｇ①ﬁⅫ\uf900e\u0301"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert index_tokens(text) == index_tokens(unicodedata.normalize("NFKC", text)), text


def test_query_plan():
    assert query_plan("融资") == (["融资"], [])
    assert query_plan("人才住房") == (["人才 才住 住房"], [])
    assert query_plan("融资 用工") == (["融资", "用工"], [])
    assert query_plan("5G基站") == (["5g", "基站"], [])
    assert query_plan("难 融资") == (["融资"], ["难"])
    assert query_plan("，。！") == ([], [])


@pytest.fixture
def problems(client, world):
    note = visit_note(world, summary="走访企业，座谈融资和用工问题。", problems=[
        {"category": "other", "description": text} for text in TEXTS
    ])  # fmt: skip
    return client.post("/api/v1/visits", json=note, headers=world.headers("cadre")).json["problems"]


def found(client, world, q, what="problems"):
    r = client.get(f"/api/v1/{what}", query_string={"q": q}, headers=world.headers("supervisor"))
    assert r.status_code == 200, r.json
    key = "description" if what == "problems" else "summary"
    return sorted(item[key] for item in r.json["items"])


@pytest.mark.parametrize(
    "q,expected",
    [
        ("融资", [0]),
        ("用工", [1]),
        ("住房", [2]),
        ("人才住房", [2]),
        ("融资难融资贵", [0]),
        ("关税过高", [3]),
        ("难", [0, 1, 2]),  # a single character falls back to a substring scan
        ("5G", [4]),
        ("5g基站", [4]),
        ("融资 用工", []),  # terms must all occur
        ("用工 招工", [1]),
        ("资用", []),  # not a substring of anything
        ("住房贵", []),
        ("，。", []),  # nothing searchable
    ],
)
def test_problem_search(client, world, problems, q, expected):
    assert found(client, world, q) == sorted(TEXTS[i] for i in expected)


def test_visit_search_and_reindex_on_edit(client, world, problems):
    assert len(found(client, world, "用工", "visits")) == 1
    assert found(client, world, "住房", "visits") == []
    visit_id = problems[0]["visit_id"]
    h = world.headers("cadre")
    body = {"summary": "走访企业，了解人才住房需求。", "version": 1}
    client.patch(f"/api/v1/visits/{visit_id}", json=body, headers=h)
    assert len(found(client, world, "住房", "visits")) == 1
    assert found(client, world, "用工", "visits") == []


def test_a_visit_is_found_by_its_place_as_by_its_summary(client, world):
    """A visit's entry indexes its summary and its place (location_text); a lone character is
    scanned for in both, so every kind of term finds the place."""
    note = visit_note(world, summary="走访企业，座谈融资问题。", location_text="铜山经济开发区厂区")
    assert client.post("/api/v1/visits", json=note, headers=world.headers("cadre")).status_code == 201
    for q in ("开发区", "铜山", "铜", "融资 厂区", "谈 厂"):
        assert found(client, world, q, "visits") == [note["summary"]], q
    assert found(client, world, "铜 用工", "visits") == []


def test_search_respects_rows_a_role_may_see(client, world, problems):
    r = client.get("/api/v1/problems", query_string={"q": "融资"}, headers=world.headers("other_cadre"))
    assert r.json["items"] == []


def test_withdrawn_note_leaves_the_index(client, world, problems):
    client.delete(f"/api/v1/visits/{problems[0]['visit_id']}", headers=world.headers("cadre"))
    assert found(client, world, "融资") == []


def test_every_write_keeps_the_index_whole(app, client, world):
    """Each way an entry is written (a push's bulk insert, a POST, a problem added alone through
    the ORM, an edit, a withdrawal) leaves the index agreeing with the entries: found by search,
    and on SQLite FTS5's own check of an external-content index against its table passes."""
    from server import db
    from tests.factories import PASSWORD
    from tests.sync_helpers import device, note_payload

    phone = device(client, "cadre", PASSWORD)
    pushed = [note_payload(world, summary=f"推送的记录{i}，企业反映订单增长。") for i in range(3)]
    r = phone.push([phone.change("visit.create", record_id, payload) for record_id, payload in pushed])
    assert [x["status"] for x in r.json["results"]] == ["applied"] * 3
    h = world.headers("cadre")
    posted = client.post("/api/v1/visits", json=visit_note(world, summary="直接提交的记录，研发投入加大。"), headers=h)
    assert posted.status_code == 201, posted.json
    visit_id = pushed[0][0]
    problem = {"visit_id": visit_id, "category": "other", "description": "物流成本上升"}
    added = phone.push([phone.change("problem.create", str(uuid.uuid4()), problem)])
    assert added.json["results"][0]["status"] == "applied", added.json
    rewritten = {"summary": "改写后的记录，环保设备更新。", "version": 1}
    edit = client.patch(f"/api/v1/visits/{pushed[1][0]}", json=rewritten, headers=h)
    assert edit.status_code == 200, edit.json
    assert client.delete(f"/api/v1/visits/{pushed[2][0]}", headers=h).status_code == 204

    assert len(found(client, world, "订单", "visits")) == 1  # the withdrawn and the rewritten one are gone
    assert found(client, world, "研发", "visits") == ["直接提交的记录，研发投入加大。"]
    assert found(client, world, "环保", "visits") == ["改写后的记录，环保设备更新。"]
    assert found(client, world, "物流") == ["物流成本上升"]
    with app.app_context():
        session = db.session()
        if session.get_bind().dialect.name == "sqlite":
            for table in FTS_TABLES.values():
                session.execute(text(f"INSERT INTO {table}({table}, rank) VALUES ('integrity-check', 1)"))


@pytest.mark.parametrize("few", [0, 1, 2, 1000])
def test_a_phrase_is_found_exactly_whichever_plan_its_count_picks(client, world, monkeypatch, few):
    """The plan is chosen by a count that may overshoot (on PostgreSQL, entries holding every
    bigram of the phrase, side by side or not); either plan returns exactly the phrase's rows."""
    from server.services import search

    monkeypatch.setattr(search, "FEW_MATCHES", few)
    texts = [
        "推进技术改造项目。",  # the phrase
        "学技术、术改进、改造厂房。",  # its bigrams 技术 术改 改造, never side by side
        "技术改造和设备更新。",  # the phrase
        "设备更新。",
    ]
    note = visit_note(world, problems=[{"category": "other", "description": t} for t in texts])
    assert client.post("/api/v1/visits", json=note, headers=world.headers("cadre")).status_code == 201
    assert found(client, world, "技术改造") == sorted([texts[0], texts[2]])
    assert found(client, world, "技术 改造") == sorted(texts[:3])
