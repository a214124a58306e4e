"""Import and export targets as CSV or XLSX, with Chinese headers a bureau's own list would have.

Import is all or nothing: every row is checked first, and any bad row refuses the whole file
with the row numbers and reasons, so a half-loaded list never happens. Rows are matched to
existing targets by code when they have one, else by kind and name; a re-import of the same
file changes nothing.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from marshmallow import ValidationError
from openpyxl import Workbook, load_workbook
from sqlalchemy import select
from sqlalchemy.orm import Session

from schemas.enums import ParkType, Role, TargetKind
from schemas.targets import TargetSchema
from server.db.models import Target
from server.errors import ApiError
from server.services import audit
from server.services.actors import Actor
from server.services.targets import FIELDS

# (field, Chinese header). The park is referred to by name.
COLUMNS = [
    ("kind", "类型"),
    ("name", "名称"),
    ("code", "编码"),
    ("park_type", "园区类型"),
    ("park", "所在园区"),
    ("district", "县区"),
    ("address", "地址"),
    ("industry", "行业"),
    ("contact_name", "联系人"),
    ("contact_phone", "联系电话"),
    ("notes", "备注"),
    ("active", "启用"),
]
_HEADER_TO_FIELD = {h: f for f, h in COLUMNS} | {f: f for f, _ in COLUMNS}
_LABELS = {
    "kind": {m.label: m.value for m in TargetKind},
    "park_type": {m.label: m.value for m in ParkType},
}
_TRUE = {"1", "true", "yes", "是", "启用", "y"}
_FALSE = {"0", "false", "no", "否", "停用", "n"}
MAX_ROWS = 20_000


def export_rows(session: Session) -> list[list[Any]]:
    parks = {t.id: t.name for t in session.scalars(select(Target).where(Target.kind == TargetKind.park))}
    rows: list[list[Any]] = [[h for _, h in COLUMNS]]
    for t in session.scalars(select(Target).order_by(Target.kind, Target.name)):
        rows.append(
            [
                t.kind.label,
                t.name,
                t.code or "",
                t.park_type.label if t.park_type else "",
                parks.get(t.park_id, "") if t.park_id else "",
                t.district or "",
                t.address or "",
                t.industry or "",
                t.contact_name or "",
                t.contact_phone or "",
                t.notes or "",
                "是" if t.active else "否",
            ]
        )
    return rows


def to_csv(rows: list[list[Any]]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    # The BOM makes Excel on Windows open the file as UTF-8 instead of GBK.
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def to_xlsx(rows: list[list[Any]], title: str = "走访对象") -> bytes:
    wb = Workbook(write_only=True)
    ws = wb.create_sheet(title)
    for row in rows:
        ws.append(row)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def read_table(filename: str, content: bytes) -> list[dict[str, str]]:
    """Rows of a CSV (UTF-8, with or without BOM, or GB18030) or XLSX file as {field: text}."""
    try:
        if filename.lower().endswith(".xlsx"):
            wb = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
            ws = wb.worksheets[0]
            table = [["" if c is None else str(c).strip() for c in row] for row in ws.iter_rows(values_only=True)]
        elif filename.lower().endswith(".csv"):
            try:
                text = content.decode("utf-8-sig")
            except UnicodeDecodeError:
                text = content.decode("gb18030")
            table = [[c.strip() for c in row] for row in csv.reader(io.StringIO(text))]
        else:
            raise ApiError(415, "Send a .csv or .xlsx file.", code="unsupported_file_type")
    except ApiError:
        raise
    except Exception as e:  # a corrupt file of any kind is the client's error, not ours
        raise ApiError(422, f"The file could not be read: {e.__class__.__name__}.", code="unreadable_file") from e
    table = [row for row in table if any(row)]
    if not table:
        raise ApiError(422, "The file is empty.", code="unreadable_file")
    header, body = table[0], table[1:]
    unknown = [h for h in header if h and h not in _HEADER_TO_FIELD]
    if unknown:
        raise ApiError(422, errors={"header": [f"Unknown column: {unknown[0]}"]}, code="unreadable_file")
    fields = [_HEADER_TO_FIELD.get(h) for h in header]
    if "kind" not in fields or "name" not in fields:
        raise ApiError(422, errors={"header": ["Columns 类型 (kind) and 名称 (name) are required."]})
    if len(body) > MAX_ROWS:
        raise ApiError(413, f"At most {MAX_ROWS} rows per file.")
    return [{f: (row[i] if i < len(row) else "") for i, f in enumerate(fields) if f} for row in body]


def _parse(row: dict[str, str]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field, value in row.items():
        if field in _LABELS:
            value = _LABELS[field].get(value, value)
        if field == "active":
            low = value.lower()
            if low and low not in _TRUE | _FALSE:
                raise ValidationError({"active": ["Use 是 or 否."]})
            data["active"] = low not in _FALSE
            continue
        data[field] = value or None
    return data


def import_targets(session: Session, actor: Actor, filename: str, content: bytes) -> dict[str, int]:
    actor.require(Role.admin)
    rows = read_table(filename, content)
    schema = TargetSchema()
    existing = list(session.scalars(select(Target)))
    by_code = {t.code: t for t in existing if t.code}
    by_name = {(t.kind, t.name): t for t in existing}
    parks = {t.name: t for t in existing if t.kind is TargetKind.park}
    errors: dict[str, list[str]] = {}
    parsed: list[tuple[int, dict[str, Any], str | None]] = []
    for number, row in enumerate(rows, start=2):
        try:
            data = _parse(row)
            park_name = data.pop("park", None)
            loaded = schema.load({k: v for k, v in data.items() if v is not None})
            parsed.append((number, loaded, park_name))
        except ValidationError as e:
            errors[f"row {number}"] = [f"{k}: {v[0] if isinstance(v, list) else v}" for k, v in e.messages_dict.items()]
    # Parks first, so that a park and the firms in it can arrive in one file.
    parsed.sort(key=lambda item: item[1]["kind"] is not TargetKind.park)
    counts = {"created": 0, "updated": 0, "unchanged": 0}
    for number, data, park_name in parsed:
        if park_name:
            park = parks.get(park_name)
            if park is None:
                errors[f"row {number}"] = [f"park: No such park: {park_name}"]
                continue
            data["park_id"] = park.id
        else:
            data["park_id"] = None
        data.pop("id", None)
        target = by_code.get(data["code"]) if data.get("code") else None
        target = target or by_name.get((data["kind"], data["name"]))
        if target is None:
            target = Target(**data)
            session.add(target)
            session.flush()
            by_name[(target.kind, target.name)] = target
            if target.code:
                by_code[target.code] = target
            if target.kind is TargetKind.park:
                parks[target.name] = target
            audit.record(session, actor, "import", "target", target.id, audit.snapshot(target, FIELDS))
            counts["created"] += 1
            continue
        if target.kind is not data["kind"]:
            errors[f"row {number}"] = ["code: The code belongs to a target of another kind."]
            continue
        changes = audit.apply(target, {k: v for k, v in data.items() if k != "kind"})
        if changes:
            target.version += 1
            audit.record(session, actor, "import", "target", target.id, changes)
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    if errors:  # the error handler rolls the transaction back
        raise ApiError(422, "The file has errors; nothing was imported.", code="import_rejected", errors=errors)
    return counts
