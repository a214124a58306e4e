"""The command line over client_sync.Client: ``python -m client_sync <command> … [--json]``.

Messages are for cadres, in Chinese; ``--json`` prints one JSON object on stdout instead (and
progress as JSON lines on stderr). Exit codes: 0 done, 1 refused or failed, 2 wrong usage,
3 log in again, 4 no network or server busy (try later), 5 the note does not pass the schema.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from client_sync import messages
from client_sync.client import Client
from client_sync.engine import Progress, SyncReport
from client_sync.errors import LoginRequired, NoteInvalid, SyncError, TransportError, UsageError
from client_sync.version import __version__
from schemas.common import SHANGHAI

PROG = "python -m client_sync"
EXIT_CODES = {LoginRequired: 3, TransportError: 4, NoteInvalid: 5, UsageError: 2}

LANES = {"push": "上传记录", "pull": "下载更新", "upload": "上传附件"}
Handler = Callable[[Client, argparse.Namespace], tuple[dict[str, Any], list[str]]]


def default_home() -> Path:
    return Path(os.environ.get("CLIENT_SYNC_HOME") or Path.home() / ".client_sync")


def _out(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> None:
    if args.json:
        print(json.dumps({"ok": True, **data}, ensure_ascii=False, default=str))
    else:
        for line in lines:
            print(line)


# Commands ------------------------------------------------------------------------------------


def cmd_login(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    username = args.username or (client.store.get("user") or {}).get("username")
    if not username:
        raise UsageError("--username is needed.", zh="请用 --username 给出用户名。")
    password = args.password or os.environ.get("CLIENT_SYNC_PASSWORD")
    if not password:
        if not sys.stdin.isatty():
            raise UsageError("No password (--password, CLIENT_SYNC_PASSWORD or a terminal).", zh="请输入密码。")
        password = getpass.getpass(f"用户 {username} 的密码：")
    user = client.login(username, password, server_url=args.server, device_name=args.device_name)
    data = {"user": user, "device_id": client.device_id, "server_url": client.transport.base_url}
    return data, [f"已登录：{user.get('display_name') or username}（设备 {client.device_id[:8]}）。"]


def cmd_targets(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    targets = client.targets(portfolio_only=args.mine, query=args.query)
    lines = [
        f"{t['id']}  {'包挂 ' if t['in_portfolio'] else '     '}{t.get('name')}"
        + ("" if t.get("active", True) else "（已停用）")
        for t in targets
    ] or ["本机还没有走访对象，请先联网同步：" + f"{PROG} sync"]
    campaigns = client.campaigns()
    lines += [f"{c['id']}  活动 {c.get('name')}  {c.get('starts_on')}–{c.get('ends_on') or ''}" for c in campaigns]
    return {"targets": targets, "campaigns": campaigns}, lines


def _when(value: str | None) -> str:
    """An ISO time as Beijing time, to the minute."""
    if not value:
        return ""
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(SHANGHAI)
    return when.strftime("%Y-%m-%d %H:%M")


def cmd_add(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    campaign = args.campaign and _campaign_id(client, args.campaign)
    result = client.add_note(
        target_id=client.find_target(args.target),
        campaign_id=campaign or None,
        summary=args.summary,
        service_categories=args.category,
        visited_at=args.visited_at,
        problems=args.problem or [],
        files=args.photo or [],
        location_text=args.location,
    )
    note = result["note"]
    lines = [
        f"已保存走访记录 {result['id'][:8]}（待上传，序号 {result['seq']}）：问题 {len(note['problems'])} 个，"
        f"附件 {len(note['attachments'])} 个。"
    ]
    return result, lines


def _campaign_id(client: Client, text: str) -> str:
    for c in client.campaigns():
        if text in (c.get("id"), c.get("code"), c.get("name")) or str(c.get("id", "")).startswith(text):
            return str(c["id"])
    return text


def _edits(client: Client, args: argparse.Namespace) -> dict[str, Any]:
    edits: dict[str, Any] = {}
    if args.summary is not None:
        edits["summary"] = args.summary
    if args.category:
        edits["service_categories"] = args.category
    if args.visited_at:
        edits["visited_at"] = args.visited_at
    if args.location is not None:
        edits["location_text"] = args.location
    if getattr(args, "target", None):
        edits["target_id"] = client.find_target(args.target)
    if getattr(args, "campaign", None):
        edits["campaign_id"] = _campaign_id(client, args.campaign)
    return edits


def cmd_edit(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    result = client.edit_note(args.note, **_edits(client, args))
    return result, [f"已保存修改（待上传，序号 {result['seq']}）。"]


def cmd_problem(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    from client_sync.notes import parse_problem

    problem = parse_problem(args.problem)
    result = client.add_problem(args.note, problem["category"], problem["description"])
    return result, [f"已添加问题（待上传，序号 {result['seq']}）。"]


def cmd_attach(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    result = client.attach(args.note, args.file, caption=args.caption)
    ref = result["attachment"]
    return result, [f"已添加附件 {ref['filename']}（{ref['size']} 字节，待上传，序号 {result['seq']}）。"]


def cmd_delete(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    result = client.delete_note(args.note)
    return result, [f"已删除（待上传，序号 {result['seq']}）。"]


def _note_lines(note: dict[str, Any], detail: bool = False) -> list[str]:
    head = (
        f"{note['id'][:8]}  [{messages.status(note['status'])}]  {note.get('target_name') or note['target_id'][:8]}"
        f"  {_when(note.get('visited_at'))}  {(note.get('summary') or '')[:30]}"
        + ("（已删除）" if note["deleted"] else "")
    )
    lines = [head]
    files = note["attachments"]
    if files["total"]:
        lines.append(f"          附件 {files['total']} 个：已上传 {files['uploaded']}，待上传 {files['pending']}")
        if files["refused"] or files["lost"]:
            lines.append(f"          附件被拒收 {files['refused']} 个，本机丢失 {files['lost']} 个")
    if note["status"] in ("needs_attention", "conflict", "queued") and note.get("reason"):
        lines.append(f"          原因：{messages.reason(note['reason'])}")
    if note["status"] == "needs_attention":
        lines.append(f"          修改后重发：{PROG} fix {note['id'][:8]} --summary … 或 --edit")
    elif note["status"] == "conflict":
        lines.append(f"          处理冲突：{PROG} resolve {note['id'][:8]} --keep-server 或 --use-device")
    if detail:
        lines.append(f"          服务内容：{messages.service_categories(note.get('service_categories', []))}")
        lines.append(f"          走访情况：{note.get('summary')}")
        for n, p in enumerate(note.get("problems", []), start=1):
            lines.append(f"          问题 {n}：[{messages.problem_category(p['category'])}] {p.get('description')}")
        for c in note["changes"]:
            closed = f"（{messages.resolution(c['resolution'])}）" if c.get("resolution") else ""
            open_ = c["status"] != "acknowledged" and not c.get("resolution")
            why = f" {messages.reason(c['reason'])}" if c.get("reason") and open_ else ""
            kind = messages.KIND.get(c["kind"], c["kind"])
            lines.append(f"          序号 {c['seq']} {kind}：{messages.status(c['status'])}{closed}{why}")
    return lines


def cmd_status(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    if args.note:
        note = client.note(args.note)
        return {"note": note}, _note_lines(note, detail=True)
    status = client.status()
    user = status["user"] or {}
    counts = status["counts"]
    lines = [
        f"设备 {status['device_id'][:8]} · {user.get('display_name') or '未登录'}"
        f" · {status['server_url'] or '未设置服务器'}",
        f"上次同步：{_when(status['last_sync_at']) or '从未'}",
        " · ".join(f"{messages.status(k)} {v}" for k, v in counts.items()) + f" · 待上传附件 {status['files_pending']}",
    ]
    if status["needs_login"]:
        lines.append(f"登录已失效，请重新登录：{PROG} login")
    if status["upgrade_required"]:
        lines.append("应用版本过旧，请升级（待上传的记录仍会被接收）。")
    for note in status["notes"]:
        if args.all or note["status"] != "acknowledged":
            lines += _note_lines(note)
    return status, lines


def _progress_printer(args: argparse.Namespace) -> Callable[[Progress], None]:
    tty = sys.stderr.isatty()

    def show(p: Progress) -> None:
        if args.json:
            print(json.dumps({"progress": p.__dict__}, ensure_ascii=False), file=sys.stderr, flush=True)
            return
        if p.lane == "upload" and not tty and p.done < (p.total or 0):
            return  # one line per finished file when nobody watches the bar
        label = LANES[p.lane]
        amount = f"{p.done}/{p.total}" if p.total else f"{p.done} 条"
        if p.lane == "upload" and p.total:
            amount = f"{p.detail} {100 * p.done // p.total}%"
        print(
            f"\r{label} {amount}   " if tty else f"{label} {amount}",
            end="" if tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    return show


def _sync_lines(report: SyncReport, client: Client) -> list[str]:
    lanes = {lane.lane: lane for lane in report.lanes}
    lines = []
    if "push" in lanes and lanes["push"].ok:
        c = lanes["push"].counts
        lines.append(
            f"上传记录：确认 {c.get('acknowledged', 0)}，"
            f"需处理 {c.get('needs_attention', 0)}，冲突 {c.get('conflict', 0)}。"
        )
    if "pull" in lanes and lanes["pull"].ok:
        lines.append(f"下载更新：{lanes['pull'].counts.get('changes', 0)} 条。")
    if "upload" in lanes and lanes["upload"].ok:
        c = lanes["upload"].counts
        lines.append(f"上传附件：{c.get('uploaded', 0)} 个（服务器已有 {c.get('present', 0)} 个）。")
    for lane in report.lanes:
        if not lane.ok:
            why = messages.reason({"code": lane.error_code, "message": lane.error})
            lines.append(f"{LANES[lane.lane]}未完成：{why}")
    counts = client.status()["counts"]
    if counts["needs_attention"] or counts["conflict"]:
        lines.append(f"有 {counts['needs_attention']} 条记录需处理、{counts['conflict']} 条冲突：{PROG} status")
    lines.append(
        "同步完成。" if report.done else f"还有 {report.pending_changes} 条记录、{report.pending_files} 个附件待上传。"
    )
    return lines


def cmd_sync(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    progress = _progress_printer(args)
    try:
        report = _run_sync(client, args, progress)
    except LoginRequired:
        if args.json or not sys.stdin.isatty():
            raise
        # Ask once; a second refusal ends the command (the queue is kept either way).
        user = (client.store.get("user") or {}).get("username")
        print("登录已失效。", file=sys.stderr)
        password = getpass.getpass(f"请重新输入用户 {user} 的密码：")
        client.login(str(user), password)
        report = _run_sync(client, args, progress)
    if sys.stderr.isatty() and not args.json:
        print(file=sys.stderr)
    data = report.as_dict()
    if not report.ok and any(lane.error_code == "network" for lane in report.lanes):
        data["exit_code"] = 4
    elif not report.ok:
        data["exit_code"] = 1
    return data, _sync_lines(report, client)


def _run_sync(client: Client, args: argparse.Namespace, progress: Callable[[Progress], None]) -> SyncReport:
    if args.until_done:
        return client.sync_until_done(progress=progress, batch_size=args.batch_size)
    return client.sync(progress=progress, max_batches=args.max_batches, batch_size=args.batch_size)


def _edit_in_editor(payload: dict[str, Any], header: str) -> dict[str, Any]:
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, encoding="utf-8") as f:
        json.dump(payload, f, ensure_ascii=False, indent=2)
        path = f.name
    try:
        print(header, file=sys.stderr)
        subprocess.run([*shlex.split(editor), path], check=True)
        text = Path(path).read_text(encoding="utf-8")
    finally:
        os.unlink(path)
    try:
        edited = json.loads(text)
    except json.JSONDecodeError as e:
        raise UsageError(f"Not JSON: {e}", zh=f"修改后的内容不是有效的 JSON：{e}") from e
    if edited == payload:
        raise UsageError("Nothing was changed.", zh="内容没有修改，未重发。")
    return dict(edited)


def cmd_fix(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    payload = None
    if args.payload:
        text = sys.stdin.read() if args.payload == "-" else Path(args.payload).read_text(encoding="utf-8")
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as e:
            raise UsageError(f"Not JSON: {e}", zh=f"文件内容不是有效的 JSON：{e}") from e
    elif args.edit:
        note = client.note(args.note)
        payload = _edit_in_editor(
            client.refused_payload(args.note, args.seq), f"原因：{messages.reason(note.get('reason'))}"
        )
    result = client.fix(args.note, seq=args.seq, problems=args.problem, payload=payload, **_edits(client, args))
    if result["seq"] is None:
        return result, ["已撤销被拒绝的删除，记录保留。"]
    return result, [f"已修改并重新排队（新序号 {result['seq']}，原序号 {result['fixed']}）。同步后生效：{PROG} sync"]


def cmd_resolve(client: Client, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    resolution = "use_device" if args.use_device else "keep_server"
    result = client.resolve_conflict(args.note, resolution)
    label = "采用本机版本" if resolution == "use_device" else "保留服务器版本"
    return result, [f"冲突已处理：{label}。下次同步后本机显示最新内容。"]


# Parser --------------------------------------------------------------------------------------

COMMANDS: dict[str, tuple[Handler, str]] = {
    "login": (cmd_login, "log in; the device keeps its token"),
    "targets": (cmd_targets, "targets and campaigns held on the device"),
    "add": (cmd_add, "write a visit note (offline), with problems and photos"),
    "edit": (cmd_edit, "change a note (offline)"),
    "problem": (cmd_problem, "add a problem to a note (offline)"),
    "attach": (cmd_attach, "attach a photo or file to a note (offline)"),
    "delete": (cmd_delete, "withdraw a note (offline)"),
    "status": (cmd_status, "the queue and each note's status, with reasons"),
    "sync": (cmd_sync, "push notes, pull targets and assignments, upload files"),
    "fix": (cmd_fix, "correct a refused note and queue it again"),
    "resolve": (cmd_resolve, "settle a conflict on the server"),
}


def _note_fields(p: argparse.ArgumentParser, *, create: bool) -> None:
    p.add_argument("--summary", help="走访情况")
    p.add_argument("--category", action="append", help="服务内容, e.g. research or 走访调研 (repeat)")
    p.add_argument("--visited-at", help="ISO time, default now (+08:00)")
    p.add_argument("--location", help="地点")
    if create:
        p.add_argument("--target", help="target id, id prefix or name")
        p.add_argument("--campaign", help="campaign id, code or name (default: the one running today)")


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output")
    common.add_argument("--home", default=argparse.SUPPRESS, help="the device's data directory")
    root = argparse.ArgumentParser(
        prog=PROG, description="三走进三服务 field-visit client (offline sync).", parents=[common]
    )
    root.add_argument("--version", action="version", version=f"client_sync {__version__}")
    sub = root.add_subparsers(dest="command", required=True, metavar="command")
    for name, (_handler, help_) in COMMANDS.items():
        p = sub.add_parser(name, help=help_, description=help_, parents=[common])
        if name == "login":
            p.add_argument("--server", help="server address, e.g. http://127.0.0.1:5000")
            p.add_argument("--username")
            p.add_argument("--password", help="or CLIENT_SYNC_PASSWORD, or typed at the prompt")
            p.add_argument("--device-name")
        elif name == "targets":
            p.add_argument("--mine", action="store_true", help="only my portfolio (包挂)")
            p.add_argument("--query", help="name contains")
        elif name == "add":
            _note_fields(p, create=True)
            p.add_argument("--problem", action="append", help="类别:描述, e.g. 融资:贷款利率偏高 (repeat)")
            p.add_argument("--photo", action="append", help="a photo or file to attach (repeat)")
        elif name == "edit":
            p.add_argument("note")
            _note_fields(p, create=False)
        elif name == "problem":
            p.add_argument("note")
            p.add_argument("problem", help="类别:描述")
        elif name == "attach":
            p.add_argument("note")
            p.add_argument("file")
            p.add_argument("--caption")
        elif name == "delete":
            p.add_argument("note")
        elif name == "status":
            p.add_argument("note", nargs="?", help="show one note in detail")
            p.add_argument("--all", action="store_true", help="list acknowledged notes too")
        elif name == "sync":
            p.add_argument("--batch-size", type=int, default=200)
            p.add_argument("--max-batches", type=int, help="stop after this many push batches")
            p.add_argument("--until-done", action="store_true", help="retry until everything is sent")
        elif name == "fix":
            p.add_argument("note")
            p.add_argument("--seq", type=int, help="which refused change (default: the first)")
            _note_fields(p, create=True)
            p.add_argument("--problem", action="append", help="replace the problems: 类别:描述 (repeat)")
            p.add_argument("--edit", action="store_true", help="edit the refused payload as JSON in $EDITOR")
            p.add_argument("--payload", help="the corrected payload as a JSON file ('-': stdin)")
        elif name == "resolve":
            p.add_argument("note")
            group = p.add_mutually_exclusive_group(required=True)
            group.add_argument("--keep-server", action="store_true")
            group.add_argument("--use-device", action="store_true")
    return root


def _fail(args: argparse.Namespace, exc: BaseException, code: int) -> int:
    text = messages.error(exc)
    if args.json:
        body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc), "message_zh": text}
        for attr in ("status", "code", "errors", "details", "retry_after"):
            if getattr(exc, attr, None):
                body[attr] = getattr(exc, attr)
        print(json.dumps({"ok": False, "error": body}, ensure_ascii=False, default=str))
    else:
        print(text, file=sys.stderr)
        if isinstance(exc, LoginRequired):
            print(f"重新登录：{PROG} login", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.json = getattr(args, "json", False)
    home = Path(getattr(args, "home", None) or default_home())
    handler = COMMANDS[args.command][0]
    try:
        with Client(home) as client:
            data, lines = handler(client, args)
    except SyncError as e:
        code = next((c for cls, c in EXIT_CODES.items() if isinstance(e, cls)), 1)
        return _fail(args, e, code)
    _out(args, data, lines)
    return int(data.get("exit_code", 0))
