"""The summary report: the article's figures, by category, by department, coverage, one sentence."""

from __future__ import annotations

import datetime as dt

from schemas.enums import TargetKind
from server import db
from server.demo import seed
from server.domain.reports import Counts, summary_sentence
from tests.factories import visit_note


def test_sentence_in_the_articles_style():
    counts = Counts(collected=265, solved=182, coordinating=83)
    sentence = summary_sentence(counts, {TargetKind.park: (13, 20), TargetKind.firm: (55, 100)})
    assert sentence == (
        "共梳理问题265个，已经解决问题182个、正在协调解决的问题83个。走访园区13个（共20个）、企业55家（共100家）。"
    )
    full = summary_sentence(Counts(2691, 2276, 321, 94, 0), {})
    assert full == "共梳理问题2691个，已经解决问题2276个、正在协调解决的问题321个、暂不具备解决条件的问题94个。"


def test_summary_counts_and_cuts(client, world):
    h = world.headers("supervisor")
    a = client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre")).json
    client.post(
        "/api/v1/visits",
        json=visit_note(world, visited_at="2026-10-01T10:00:00+08:00", target_id=str(world.project)),
        headers=world.headers("cadre"),
    )
    p = a["problems"][0]
    client.patch(
        f"/api/v1/problems/{p['id']}",
        json={"department_id": str(world.dept), "outcome": "solved", "version": 1},
        headers=h,
    )
    r = client.get("/api/v1/reports/summary", headers=h)
    assert r.status_code == 200
    body = r.json
    assert body["visits"] == 2
    assert body["problems"] == {"collected": 4, "solved": 1, "coordinating": 0, "deferred": 0, "open": 3}
    by_cat = {c["category"]: c for c in body["by_category"]}
    assert by_cat["financing"]["collected"] == 2 and by_cat["financing"]["solved"] == 1
    assert by_cat["financing"]["label"] == "融资"
    depts = {d["department_id"]: d for d in body["by_department"]}
    assert depts[str(world.dept)]["solved"] == 1
    assert depts[None]["department_name"] == "未分派" and depts[None]["collected"] == 3
    coverage = {c["kind"]: (c["visited"], c["total"]) for c in body["coverage"]}
    assert coverage == {"park": (0, 1), "project": (1, 1), "firm": (1, 1)}
    assert body["sentence"].startswith("共梳理问题4个，已经解决问题1个、正在协调解决的问题0个、尚待办理的问题3个。")

    november = client.get("/api/v1/reports/summary?from=2026-11-01&to=2026-11-30", headers=h).json
    assert november["problems"]["collected"] == 2
    assert november["visits"] == 1
    other = client.post(
        "/api/v1/campaigns", json={"code": "other", "name": "别的活动", "starts_on": "2026-01-01"}, headers=h
    ).json
    empty = client.get(f"/api/v1/reports/summary?campaign={other['id']}", headers=h).json
    assert empty["problems"]["collected"] == 0
    assert empty["sentence"].startswith("共梳理问题0个")


def test_demo_data_reproduces_the_articles_figures(app, client):
    with app.app_context(), db.session_scope() as s:
        assert seed(s, today=dt.date(2026, 11, 25)) is True
    with app.app_context(), db.session_scope() as s:
        assert seed(s, today=dt.date(2026, 11, 25)) is False  # running it twice changes nothing
    login = client.post("/api/v1/auth/login", json={"username": "supervisor", "password": "xuzhou-demo-2026"})
    h = {"Authorization": f"Bearer {login.json['token']}"}
    campaigns = {c["name"]: c["id"] for c in client.get("/api/v1/campaigns", headers=h).json}
    szjsfw = client.get(f"/api/v1/reports/summary?campaign={campaigns['三走进三服务']}", headers=h).json
    assert szjsfw["sentence"].startswith("共梳理问题265个，已经解决问题182个、正在协调解决的问题83个。")
    month = client.get(f"/api/v1/reports/summary?campaign={campaigns['企业服务月']}", headers=h).json
    assert month["problems"] == {"collected": 2691, "solved": 2276, "coordinating": 321, "deferred": 94, "open": 0}
    users = client.get("/api/v1/users?role=cadre", headers=h).json
    assert len(users) == 43
    total = client.get("/api/v1/reports/summary", headers=h).json
    assert {c["kind"]: c["total"] for c in total["coverage"]} == {"park": 20, "project": 100, "firm": 100}
