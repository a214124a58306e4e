"""Targets: parks, projects and firms; import and export as CSV/XLSX; portfolios."""

from __future__ import annotations

import io

from openpyxl import Workbook, load_workbook

CSV = """类型,名称,编码,园区类型,所在园区,县区,地址,行业
园区,徐州测试开发区,P900,省级开发区,,铜山区,徐州市铜山区,
企业,徐州测试机械有限公司,91320300TEST00001,,徐州测试开发区,铜山区,测试路1号,工程机械
项目,年产5万台测试挖掘机项目,J900,,徐州测试开发区,铜山区,,工程机械
"""


def upload(client, world, content: bytes, name: str):
    return client.post(
        "/api/v1/targets/import",
        data={"file": (io.BytesIO(content), name)},
        content_type="multipart/form-data",
        headers=world.headers("admin"),
    )


def names(client, world, **query):
    r = client.get("/api/v1/targets", query_string={"limit": 500, **query}, headers=world.headers("cadre"))
    return sorted(t["name"] for t in r.json["items"])


def test_import_csv_then_reimport_changes_nothing(client, world):
    r = upload(client, world, CSV.encode("utf-8-sig"), "list.csv")
    assert r.status_code == 200, r.json
    assert r.json == {"created": 3, "updated": 0, "unchanged": 0}
    again = upload(client, world, CSV.encode(), "list.csv")
    assert again.json == {"created": 0, "updated": 0, "unchanged": 3}
    firm = client.get("/api/v1/targets", query_string={"q": "测试机械"}, headers=world.headers("cadre")).json["items"]
    assert firm[0]["park_name"] == "徐州测试开发区"
    park = client.get("/api/v1/targets", query_string={"q": "徐州测试开发区"}, headers=world.headers("cadre")).json
    park_id = park["items"][0]["id"]
    assert names(client, world, park=park_id) == ["年产5万台测试挖掘机项目", "徐州测试机械有限公司"]


def test_import_gbk_csv_from_excel(client, world):
    r = upload(client, world, CSV.encode("gb18030"), "list.csv")
    assert r.status_code == 200
    assert r.json["created"] == 3


def test_import_updates_by_code(client, world):
    upload(client, world, CSV.encode(), "list.csv")
    changed = CSV.replace("测试路1号", "测试路99号")
    assert upload(client, world, changed.encode(), "list.csv").json == {"created": 0, "updated": 1, "unchanged": 2}


def test_a_bad_row_refuses_the_whole_file(client, world):
    bad = CSV + "企业,,,,,,,\n工厂,某厂,,,,,,\n企业,某公司,,,没有的园区,,,\n"
    before = names(client, world)
    r = upload(client, world, bad.encode(), "list.csv")
    assert r.status_code == 422
    assert r.json["code"] == "import_rejected"
    assert set(r.json["errors"]) == {"row 5", "row 6", "row 7"}
    assert names(client, world) == before


def test_unknown_column_and_wrong_file_type(client, world):
    r = upload(client, world, "类型,名称,颜色\n企业,某公司,红\n".encode(), "list.csv")
    assert r.status_code == 422
    r = upload(client, world, b"%PDF-1.4", "list.pdf")
    assert r.status_code == 415
    r = upload(client, world, b"not a zip", "list.xlsx")
    assert r.status_code == 422
    r = client.post("/api/v1/targets/import", headers=world.headers("admin"))
    assert r.status_code == 422


def test_xlsx_round_trip(client, world):
    upload(client, world, CSV.encode(), "list.csv")
    exported = client.get("/api/v1/targets/export?format=xlsx", headers=world.headers("supervisor"))
    assert exported.status_code == 200
    assert exported.mimetype.endswith("spreadsheetml.sheet")
    sheet = load_workbook(io.BytesIO(exported.data)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:5] == ("类型", "名称", "编码", "园区类型", "所在园区")
    assert ("企业", "徐州测试机械有限公司") in {r[:2] for r in rows}
    # The exported file imports back without changes.
    assert upload(client, world, exported.data, "targets.xlsx").json["created"] == 0


def test_xlsx_import(client, world):
    wb = Workbook()
    ws = wb.active
    ws.append(["类型", "名称", "园区类型"])
    ws.append(["园区", "徐州第二测试园", "信息软件园区"])
    out = io.BytesIO()
    wb.save(out)
    assert upload(client, world, out.getvalue(), "parks.xlsx").json["created"] == 1


def test_csv_export_opens_in_excel(client, world):
    r = client.get("/api/v1/targets/export?format=csv", headers=world.headers("admin"))
    assert r.data.startswith("\ufeff".encode())
    assert "类型,名称" in r.data.decode("utf-8-sig").splitlines()[0]


def test_park_rules(client, world):
    h = world.headers("admin")
    r = client.post("/api/v1/targets", json={"kind": "park", "name": "无类型园区"}, headers=h)
    assert r.status_code == 422 and "park_type" in r.json["errors"]
    r = client.post("/api/v1/targets", json={"kind": "firm", "name": "某企业", "park_type": "software_park"}, headers=h)
    assert r.status_code == 422
    r = client.post("/api/v1/targets", json={"kind": "firm", "name": "某企业", "park_id": str(world.firm)}, headers=h)
    assert r.status_code == 422 and "park_id" in r.json["errors"]


def test_visited_target_cannot_be_deleted(client, world):
    from tests.factories import visit_note

    client.post("/api/v1/visits", json=visit_note(world), headers=world.headers("cadre"))
    r = client.delete(f"/api/v1/targets/{world.firm}", headers=world.headers("admin"))
    assert r.status_code == 409 and r.json["code"] == "target_in_use"


def test_portfolio(client, world):
    h = world.headers("admin")
    url = f"/api/v1/users/{world.users['cadre']}/portfolio"
    assert client.get(url, headers=h).json["target_ids"] == [str(world.firm)]
    r = client.put(url, json={"target_ids": [str(world.park), str(world.project)]}, headers=h)
    assert r.status_code == 200
    assert names(client, world, cadre=str(world.users["cadre"])) == sorted(
        t["name"] for t in (client.get(f"/api/v1/targets/{i}", headers=h).json for i in (world.park, world.project))
    )
    staff = f"/api/v1/users/{world.users['staff']}/portfolio"
    assert client.put(staff, json={"target_ids": []}, headers=h).status_code == 422
