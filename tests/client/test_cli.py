"""The command line: every command with --json, Chinese messages for cadres, exit codes, docs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from client_sync.cli import COMMANDS, main
from tests.client.fakesync import FakeSync
from tests.client.loopback import LoopbackServer, error
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    """Runs `python -m client_sync` in-process against one device home."""

    def __init__(self, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.home = home
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main(["--home", str(self.home), *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str, expect: int = 0) -> dict:
        code, out, err = self(*args, "--json")
        assert code == expect, (out, err)
        lines = out.strip().splitlines()
        assert len(lines) == 1, out  # one JSON object, nothing else on stdout
        return json.loads(lines[0])


@pytest.fixture
def cli(tmp_path, capsys) -> Cli:
    return Cli(tmp_path / "home", capsys)


@pytest.fixture
def world(fake):
    """The fake server with one target in the cadre's portfolio and one running campaign."""
    app, server = fake
    target, campaign = str(uuid.uuid4()), str(uuid.uuid4())
    app.publish("target", {"id": target, "name": "徐州重型机械有限公司", "kind": "firm", "active": True})
    app.publish(
        "campaign", {"id": campaign, "name": "三走进三服务", "code": "s3", "starts_on": "2000-01-01", "ends_on": None}
    )
    return app, server, target, campaign


def test_every_command_answers_json(cli, world, tmp_path):
    app, server, target, _campaign = world
    photo = tmp_path / "门口.jpg"
    photo.write_bytes(os.urandom(5000))
    logged = cli.json("login", "--server", server.url, "--username", "cadre", "--password", "pw")
    assert logged["ok"] and logged["user"]["username"] == "cadre"
    assert cli.json("sync")["done"]
    listed = cli.json("targets")
    assert [t["id"] for t in listed["targets"]] == [target] and len(listed["campaigns"]) == 1
    added = cli.json(
        "add", "--target", "徐州重型", "--summary", "走访企业，了解生产经营情况。", "--category", "走访调研",
        "--category", "financial_support", "--problem", "融资:流动资金贷款利率偏高", "--problem", "用工：招工难",
        "--photo", str(photo),
    )  # fmt: skip
    note = added["id"]
    assert [p["category"] for p in added["note"]["problems"]] == ["financing", "labor"]
    assert cli.json("edit", note[:8], "--summary", "改过的走访情况")["seq"] == 2
    assert cli.json("problem", note[:8], "税收:出口退税慢")["seq"] == 3
    assert cli.json("attach", note[:8], str(photo), "--caption", "车间")["seq"] == 4
    status = cli.json("status")
    assert status["counts"]["queued"] == 1 and status["queue_depth"] == 4 and status["files_pending"] == 1
    assert cli.json("status", note[:8])["note"]["summary"] == "改过的走访情况"
    synced = cli.json("sync")
    assert synced["done"] and synced["lanes"][0]["counts"]["acknowledged"] == 4
    assert cli.json("status")["counts"]["acknowledged"] == 1
    app.reject = lambda c: {"code": "validation_error", "message": "Invalid.", "errors": {"summary": ["Too short."]}}
    cli.json("edit", note[:8], "--summary", "短")
    cli.json("sync")
    assert cli.json("status", note[:8])["note"]["status"] == "needs_attention"
    app.reject = lambda c: None
    fixed = cli.json("fix", note[:8], "--summary", "走访企业，企业反映融资难融资贵，用工成本上升。")
    assert fixed["fixed"] == 5 and fixed["seq"] == 6
    cli.json("sync")
    app.edit_on_server(note)
    cli.json("edit", note[:8], "--location", "徐州经济技术开发区")
    cli.json("sync")
    assert cli.json("status", note[:8])["note"]["status"] == "conflict"
    resolved = cli.json("resolve", note[:8], "--use-device")
    assert resolved["resolution"] == "use_device" and app.resolved[0][1] == "use_device"
    assert cli.json("status", note[:8])["note"]["status"] == "acknowledged"
    cli.json("sync")  # brings the version the resolution made
    assert cli.json("delete", note[:8])["seq"] == 8
    assert cli.json("sync")["done"] and note not in app.versions


def test_status_speaks_chinese_with_the_reason_and_what_to_do(cli, world):
    app, server, target, _campaign = world
    cli.json("login", "--server", server.url, "--username", "cadre", "--password", "pw")
    cli.json("sync")
    cli.json("add", "--target", target, "--summary", "走访", "--category", "research")
    code, out, _err = cli("status")
    assert code == 0 and "待上传 1" in out and "[待上传]" in out and "徐州重型机械有限公司" in out
    errors = {
        "target_id": ["The target is no longer active."],
        "problems": {"0": {"description": ["Missing data for required field."]}},
    }
    app.reject = lambda c: {"code": "validation_error", "message": "The change is invalid.", "errors": errors}
    code, out, _err = cli("sync")
    assert code == 0 and "需处理 1" in out
    code, out, _err = cli("status")
    assert "[需处理]" in out
    assert "原因：内容不符合要求；" in out
    assert "走访对象：走访对象已停用" in out and "问题 · 第 1 项 · 问题描述：必填" in out
    assert "python -m client_sync fix" in out


def test_errors_are_chinese_with_exit_codes(cli, world, capsys):
    _app, server, target, _campaign = world
    code, _out, err = cli("sync")
    assert code == 3 and "登录" in err
    body = cli.json("sync", expect=3)
    assert body["ok"] is False and body["error"]["type"] == "LoginRequired" and "登录" in body["error"]["message_zh"]
    cli.json("login", "--server", server.url, "--username", "cadre", "--password", "pw")
    cli.json("sync")
    code, _out, err = cli("add", "--target", target, "--summary", "", "--category", "走访调研")
    assert code == 5 and "走访情况：长度须在 1–20000 之间" in err
    body = cli.json("add", "--target", target, "--summary", "好", "--category", "喝茶", expect=5)
    assert body["error"]["errors"] == {"service_categories": {"0": ["Must be one of: " + ", ".join(
        ["research", "project_progress", "tech_innovation", "environmental_compliance", "enterprise_cultivation",
         "financial_support", "burden_reduction", "publicity"]) + "."]}}  # fmt: skip
    code, _out, err = cli("fix", "abcd")
    assert code == 2 and "没有编号为 abcd 的记录" in err
    code, _out, err = cli("status", "ab")
    assert code == 2 and "前 4 位" in err


def test_no_network_is_exit_4_and_nothing_is_lost(cli, world):
    _app, server, target, _campaign = world
    cli.json("login", "--server", server.url, "--username", "cadre", "--password", "pw")
    cli.json("sync")
    cli.json("add", "--target", target, "--summary", "离线写的记录", "--category", "research")
    from client_sync import Client

    with Client(cli.home) as c:
        c.store.set(server_url=f"http://127.0.0.1:{free_port()}")
    code, out, _err = cli("sync")
    assert code == 4 and "网络不通" in out and "还有 1 条记录" in out
    assert cli.json("status")["counts"]["queued"] == 1


def test_login_refused_is_explained(cli, capsys):
    with LoopbackServer(lambda r: error(401, "invalid_credentials", "Wrong username or password.")) as server:
        code, _out, err = cli("login", "--server", server.url, "--username", "cadre", "--password", "wrong")
    assert code == 3 and "用户名或密码错误" in err


def test_fix_from_a_json_file_and_from_the_editor(cli, world, tmp_path):
    app, server, target, _campaign = world
    cli.json("login", "--server", server.url, "--username", "cadre", "--password", "pw")
    cli.json("sync")
    app.reject = lambda c: (
        {"code": "validation_error", "message": "Invalid."} if "坏" in c["payload"].get("summary", "") else None
    )
    first = cli.json("add", "--target", target, "--summary", "坏的一条", "--category", "research")["id"]
    second = cli.json("add", "--target", target, "--summary", "坏的另一条", "--category", "research")["id"]
    cli.json("sync")
    from client_sync import Client

    with Client(cli.home) as c:
        body = c.refused_payload(first) | {"summary": "用文件改好的一条"}
    with_file = tmp_path / "fixed.json"
    with_file.write_text(json.dumps(body, ensure_ascii=False))
    assert cli.json("fix", first[:8], "--payload", str(with_file))["seq"] == 3
    editor = tmp_path / "editor.py"
    editor.write_text(
        "import json, sys\np = sys.argv[1]\nd = json.load(open(p))\nd['summary'] = '用编辑器改好的一条'\n"
        "json.dump(d, open(p, 'w'), ensure_ascii=False)\n"
    )
    os.environ["EDITOR"] = f"{sys.executable} {editor}"
    try:
        assert cli.json("fix", second[:8], "--edit")["seq"] == 4
    finally:
        del os.environ["EDITOR"]
    assert cli.json("sync")["done"]
    assert [c["payload"]["summary"] for c in app.applied] == ["用文件改好的一条", "用编辑器改好的一条"]


def test_python_m_client_sync_runs():
    result = subprocess.run([sys.executable, "-m", "client_sync", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout


def test_every_command_is_documented_in_the_readme():
    text = (ROOT / "README.md").read_text()
    match = re.search(r"^## A cadre's day with client_sync\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    assert match, "README has no section 'A cadre's day with client_sync'"
    section = match.group(1)
    for name in COMMANDS:
        assert f"client_sync {name}" in section or f"`{name}`" in section, name


def test_fake_answers_are_what_the_real_schemas_allow():
    """Keep the fake honest: its push answer passes the shared PushResultSchema."""
    from schemas.sync import PushResultSchema

    app = FakeSync()
    status, _headers, raw = app.push(
        {"changes": [{"seq": 1, "kind": "visit.create", "record_id": str(uuid.uuid4()), "payload": {}}]}
    )
    assert status == 200 and PushResultSchema().validate(json.loads(raw)) == {}
