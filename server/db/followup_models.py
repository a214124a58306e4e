"""Tables of the referral workflow, follow-ups, the working-day calendar, mail and the scheduler.

Rules live in server/domain/referrals.py, followups.py, workdays.py; these are only tables.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.db.models import Base, BigId, Department, Problem, Timestamped
from server.db.types import new_id, utcnow


class CalendarOverride(Base):
    """An admin's correction of China's calendar: True = working day, False = day off."""

    __tablename__ = "calendar_overrides"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    workday: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str | None] = mapped_column(String(200))
    updated_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ReferralCounter(Base):
    """The last referral number given out per year (its row lock makes numbers gapless)."""

    __tablename__ = "referral_counters"

    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last_seq: Mapped[int] = mapped_column(Integer, default=0)


class Referral(Timestamped, Base):
    """交办单: key problems handed to a lead department (主办) with co-departments (协办)."""

    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("year", "seq", name="uq_referrals_year_seq"),
        Index("ix_referrals_status_deadline", "status", "deadline"),
        Index("ix_referrals_lead_status", "lead_department_id", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    number: Mapped[str] = mapped_column(String(40), unique=True)
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(24))
    lead_department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id"))
    issued_by_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    issued_at: Mapped[dt.datetime]
    workdays: Mapped[int] = mapped_column(Integer)
    original_deadline: Mapped[dt.datetime]
    deadline: Mapped[dt.datetime]
    requirements: Mapped[str] = mapped_column(Text)
    signed_at: Mapped[dt.datetime | None]
    return_to: Mapped[str | None] = mapped_column(String(24))
    requested_until: Mapped[dt.date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(16))
    responded_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    # Frozen when the referral closes; never recomputed later.
    on_time: Mapped[bool | None] = mapped_column(Boolean)
    # The department's latest answer (办理反馈) and the latest request's text.
    answer: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    pending_reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)

    lead_department: Mapped[Department] = relationship(lazy="joined", innerjoin=True)
    co_departments: Mapped[list[ReferralDepartment]] = relationship(
        back_populates="referral", cascade="all, delete-orphan"
    )
    problems: Mapped[list[ReferralProblem]] = relationship(back_populates="referral", cascade="all, delete-orphan")
    events: Mapped[list[ReferralEventRow]] = relationship(
        back_populates="referral", order_by="ReferralEventRow.id", cascade="all, delete-orphan"
    )


class ReferralDepartment(Base):
    """A co-department (协办) of a referral: reads it, does not act on it."""

    __tablename__ = "referral_departments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    department_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("departments.id"), index=True)

    referral: Mapped[Referral] = relationship(back_populates="co_departments")
    __table_args__ = (UniqueConstraint("referral_id", "department_id", name="uq_referral_departments_pair"),)


class ReferralProblem(Base):
    """A problem handed over by a referral; a problem may be in several referrals."""

    __tablename__ = "referral_problems"
    __table_args__ = (UniqueConstraint("referral_id", "problem_id", name="uq_referral_problems_pair"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    problem_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("problems.id"), index=True)

    referral: Mapped[Referral] = relationship(back_populates="problems")
    # An inner join (problem_id is NOT NULL): as an outer join, SQLAlchemy nests Problem's own
    # inner join to its target inside it, which SQLite answers by materialising every problem
    # joined to its target (30 s a referral list at 300,000 problems; docs/benchmarks.md).
    problem: Mapped[Problem] = relationship(lazy="joined", innerjoin=True)


class ReferralEventRow(Base):
    """One line of a referral's history: what happened, who, when, with which reason."""

    __tablename__ = "referral_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    referral: Mapped[Referral] = relationship(back_populates="events")


class FollowUp(Timestamped, Base):
    """跟进任务 assigned to a person: a revisit (回访), a progress check, a reminder, an escalation.

    Cadres receive theirs through the sync pull; a revisit records the firm's satisfaction.
    """

    __tablename__ = "followups"
    __table_args__ = (
        Index("ix_followups_assignee_status", "assignee_id", "status"),
        Index("ix_followups_status_due", "status", "due_on"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(12), default="open")
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    referral_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("referrals.id"), index=True)
    problem_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("problems.id"), index=True)
    target_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("targets.id"))
    title: Mapped[str] = mapped_column(String(200))
    due_on: Mapped[dt.date | None] = mapped_column(Date)
    completed_at: Mapped[dt.datetime | None]
    # A revisit's result: satisfied / basically_satisfied / unsatisfied, with the cadre's note.
    satisfaction: Mapped[str | None] = mapped_column(String(24))
    result_note: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)


class NoticeSent(Base):
    """A reminder or escalation recorded before it is sent: never sent twice (followups.due_notices keys)."""

    __tablename__ = "notices_sent"

    referral_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("referrals.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[str] = mapped_column(String(24), primary_key=True)
    threshold: Mapped[str] = mapped_column(String(24), primary_key=True)
    anchor: Mapped[str] = mapped_column(String(16), primary_key=True)
    sent_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DigestSent(Base):
    """A weekly digest recorded before it is sent: one per recipient per ISO week."""

    __tablename__ = "digests_sent"

    recipient: Mapped[str] = mapped_column(String(64), primary_key=True)  # department id, or 'supervisors'
    week: Mapped[str] = mapped_column(String(10), primary_key=True)  # ISO week, e.g. 2026-W48
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class MailMessage(Base):
    """The mail outbox: written in the same transaction as what caused it, sent (and retried) later."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    dedupe_key: Mapped[str] = mapped_column(String(160), unique=True)
    to_addrs: Mapped[list[str]] = mapped_column(JSON)
    subject: Mapped[str] = mapped_column(String(300))
    text_body: Mapped[str] = mapped_column(Text)
    html_body: Mapped[str | None] = mapped_column(Text)
    headers: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    status: Mapped[str] = mapped_column(String(12), default="queued")  # queued, sending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]


class SchedulerLease(Base):
    """The leader lease of the scheduler on SQLite (PostgreSQL uses a session advisory lock)."""

    __tablename__ = "scheduler_leases"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[dt.datetime]


class JobRun(Base):
    """When each scheduled job last ran, so a restarted scheduler catches up once."""

    __tablename__ = "job_runs"

    job: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_started_at: Mapped[dt.datetime | None]
    last_finished_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    runs: Mapped[int] = mapped_column(BigInteger, default=0)
