"""Test data for the scheduler, the digests and mail: referrals written straight to the store,
a bureau with addresses, and a controlled clock (moments in Beijing time)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from schemas.enums import Role
from server.db.followup_models import FollowUp, Referral
from server.domain.numbering import referral_number
from server.domain.periods import SHANGHAI
from server.domain.workdays import WorkCalendar
from tests.factories import gen_department, gen_user

CAL = WorkCalendar()
_seq = itertools.count(1)


def bj(*args: int) -> dt.datetime:
    """A moment in Beijing time, as an aware UTC datetime."""
    return dt.datetime(*args, tzinfo=SHANGHAI).astimezone(dt.UTC)


def gen_referral(
    session: Session,
    department_id: uuid.UUID,
    issued_by_id: uuid.UUID,
    issued_at: dt.datetime,
    workdays: int = 5,
    status: str = "issued",
    **kw: Any,
) -> Referral:
    seq = next(_seq)
    deadline = CAL.deadline_at(issued_at, workdays)
    referral = Referral(
        **{
            "number": referral_number(issued_at.astimezone(SHANGHAI).year, seq),
            "year": issued_at.astimezone(SHANGHAI).year,
            "seq": seq,
            "status": status,
            "lead_department_id": department_id,
            "issued_by_id": issued_by_id,
            "issued_at": issued_at,
            "workdays": workdays,
            "original_deadline": deadline,
            "deadline": deadline,
            "requirements": f"请协调解决企业反映的融资难融资贵问题（测试{seq}），并反馈办理结果。",
        }
        | kw
    )
    session.add(referral)
    session.flush()
    return referral


def gen_revisit(session: Session, referral: Referral, satisfaction: str, completed_at: dt.datetime) -> FollowUp:
    followup = FollowUp(
        kind="revisit",
        status="done",
        referral_id=referral.id,
        title=f"回访：{referral.number}",
        satisfaction=satisfaction,
        completed_at=completed_at,
    )
    session.add(followup)
    session.flush()
    return followup


@dataclass
class Bureau:
    """Departments with a mailbox, a head and one staff member each; two supervisors; an admin."""

    supervisor: uuid.UUID
    departments: list[uuid.UUID] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)

    def dept_email(self, i: int) -> str:
        return f"{self.codes[i]}@dept.example.cn"

    def staff_email(self, i: int) -> str:
        return f"{self.codes[i]}-staff@dept.example.cn"

    def head_email(self, i: int) -> str:
        return f"{self.codes[i]}-head@dept.example.cn"


SUPERVISOR_EMAILS = ("duban1@bureau.example.cn", "duban2@bureau.example.cn")
ADMIN_EMAIL = "admin@bureau.example.cn"


def gen_bureau(session: Session, departments: int = 2) -> Bureau:
    sup = gen_user(session, Role.supervisor, email=SUPERVISOR_EMAILS[0])
    gen_user(session, Role.supervisor, email=SUPERVISOR_EMAILS[1])
    gen_user(session, Role.admin, email=ADMIN_EMAIL)
    bureau = Bureau(sup.id)
    for _ in range(departments):
        code = f"d{next(_seq):03d}"
        dept = gen_department(
            session,
            code=code,
            name=f"市测试局{code}",
            short_name=f"测试局{code}",
            email=f"{code}@dept.example.cn",
            head_name="王局长",
            head_email=f"{code}-head@dept.example.cn",
        )
        gen_user(session, Role.department_staff, department_id=dept.id, email=f"{code}-staff@dept.example.cn")
        bureau.departments.append(dept.id)
        bureau.codes.append(code)
    return bureau


# --- scheduler processes -----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def scheduler_env(db_url: str, instance: Path, **extra: Any) -> dict[str, str]:
    settings = {
        "DATABASE_URL": db_url,
        "SECRET_KEY": "test",
        "INSTANCE_PATH": str(instance),
        "PUBLIC_BASE_URL": "https://fieldvisit.example.cn",
        "LOG_LEVEL": "INFO",
        "SCHEDULER_LEASE_SECONDS": "3",
    } | {k: str(v) for k, v in extra.items()}
    return os.environ | settings


def start_scheduler(db_url: str, instance: Path, *args: str, log: Path, **settings: Any) -> subprocess.Popen[bytes]:
    """`flask --app wsgi scheduler ARGS` as a real process, its output in `log`."""
    instance.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "wsgi", "scheduler", *args],
            cwd=ROOT,
            env=scheduler_env(db_url, instance, **settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition: Any, timeout: float = 60.0, interval: float = 0.01) -> Any:
    """Poll `condition()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")
