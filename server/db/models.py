"""Tables of the server store. Rules live in server/services and server/domain, not here."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from schemas.enums import (
    ParkType,
    ProblemCategory,
    ProblemOutcome,
    ProblemStatus,
    Role,
    TargetKind,
)
from server.db.types import UTCDateTime, new_id, utcnow

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Integer ids that must autoincrement on SQLite too (BIGINT is not an alias of rowid there).
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _enum(cls: type, name: str) -> Enum:
    # Stored as plain strings with a CHECK: adding a value is a migration of the check, not a type.
    return Enum(cls, name=name, native_enum=False, length=32, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), uuid.UUID: Uuid(), dict[str, Any]: JSON()}


class Timestamped:
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Department(Timestamped, Base):
    __tablename__ = "departments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    short_name: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(200))
    head_name: Mapped[str | None] = mapped_column(String(80))
    head_email: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(default=1)


class User(Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("(role = 'department_staff') = (department_id IS NOT NULL)", name="department_iff_staff"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(80))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"), index=True)
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    title: Mapped[str | None] = mapped_column(String(80))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(default=1)

    department: Mapped[Department | None] = relationship(lazy="joined")


class Device(Base):
    """One phone or laptop of a user. Revoking it cuts off every token it holds."""

    __tablename__ = "devices"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[dt.datetime | None]
    app_version: Mapped[str | None] = mapped_column(String(40))
    revoked_at: Mapped[dt.datetime | None]
    revoked_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))

    # Relationships also order the INSERTs of one flush (a device before its token).
    user: Mapped[User] = relationship(foreign_keys=[user_id])


class AuthToken(Base):
    """A bearer token, kept only as its SHA-256 hash."""

    __tablename__ = "auth_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    last_used_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()
    device: Mapped[Device] = relationship()


class Target(Timestamped, Base):
    """What a cadre visits: a park, a project or a firm. Projects and firms may sit in a park."""

    __tablename__ = "targets"
    __table_args__ = (
        UniqueConstraint("kind", "name", name="uq_targets_kind_name"),
        CheckConstraint("kind = 'park' OR park_type IS NULL", name="park_type_only_for_parks"),
        CheckConstraint("kind <> 'park' OR park_id IS NULL", name="parks_not_nested"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    kind: Mapped[TargetKind] = mapped_column(_enum(TargetKind, "target_kind"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    code: Mapped[str | None] = mapped_column(String(40), unique=True)
    park_type: Mapped[ParkType | None] = mapped_column(_enum(ParkType, "park_type"))
    park_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("targets.id"), index=True)
    district: Mapped[str | None] = mapped_column(String(40))
    address: Mapped[str | None] = mapped_column(String(200))
    industry: Mapped[str | None] = mapped_column(String(80))
    contact_name: Mapped[str | None] = mapped_column(String(80))
    contact_phone: Mapped[str | None] = mapped_column(String(40))
    notes: Mapped[str | None] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(default=1)

    park: Mapped[Target | None] = relationship(remote_side=[id], lazy="joined", join_depth=1)


class PortfolioEntry(Base):
    """包挂: a cadre is personally responsible for a target."""

    __tablename__ = "portfolio_entries"
    __table_args__ = (UniqueConstraint("user_id", "target_id", name="uq_portfolio_entries_user_target"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("targets.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Campaign(Timestamped, Base):
    """活动: 三走进三服务, 企业服务月 … Every visit and problem belongs to one."""

    __tablename__ = "campaigns"
    __table_args__ = (CheckConstraint("ends_on IS NULL OR ends_on >= starts_on", name="period"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(80), unique=True)
    starts_on: Mapped[dt.date] = mapped_column(Date)
    ends_on: Mapped[dt.date | None] = mapped_column(Date)
    description: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(default=1)


class Visit(Timestamped, Base):
    __tablename__ = "visits"
    __table_args__ = (
        Index("ix_visits_visited_at_id", "visited_at", "id"),
        Index("ix_visits_cadre_visited_at", "cadre_id", "visited_at"),
        Index("ix_visits_target_visited_at", "target_id", "visited_at"),
        Index("ix_visits_campaign_visited_at", "campaign_id", "visited_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    cadre_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("targets.id"))
    visited_at: Mapped[dt.datetime]
    service_categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    summary: Mapped[str] = mapped_column(Text)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location_text: Mapped[str | None] = mapped_column(String(200))
    device_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("devices.id"))
    version: Mapped[int] = mapped_column(default=1)

    problems: Mapped[list[Problem]] = relationship(
        back_populates="visit", order_by="Problem.position", cascade="all, delete-orphan"
    )
    target: Mapped[Target] = relationship(lazy="joined", innerjoin=True)
    cadre: Mapped[User] = relationship(lazy="joined", innerjoin=True)


class Problem(Timestamped, Base):
    """A difficulty a firm raised. Status (open/closed) and outcome are kept apart."""

    __tablename__ = "problems"
    __table_args__ = (
        CheckConstraint(
            "outcome <> 'deferred' OR (outcome_reason IS NOT NULL AND outcome_reason <> '')",
            name="deferred_has_reason",
        ),
        Index("ix_problems_raised_at_id", "raised_at", "id"),
        Index("ix_problems_campaign_raised_at", "campaign_id", "raised_at"),
        Index("ix_problems_department_raised_at", "department_id", "raised_at"),
        Index("ix_problems_status_raised_at", "status", "raised_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(default=0)
    # Copied from the visit so that reports and filters need no join.
    campaign_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("campaigns.id"))
    target_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("targets.id"), index=True)
    cadre_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    raised_at: Mapped[dt.datetime]
    category: Mapped[ProblemCategory] = mapped_column(_enum(ProblemCategory, "problem_category"), index=True)
    description: Mapped[str] = mapped_column(Text)
    # The department the problem concerns (set at triage); referrals add more later.
    department_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("departments.id"))
    status: Mapped[ProblemStatus] = mapped_column(_enum(ProblemStatus, "problem_status"), default=ProblemStatus.open)
    outcome: Mapped[ProblemOutcome | None] = mapped_column(_enum(ProblemOutcome, "problem_outcome"))
    outcome_reason: Mapped[str | None] = mapped_column(Text)
    outcome_note: Mapped[str | None] = mapped_column(Text)
    outcome_at: Mapped[dt.datetime | None]
    closed_at: Mapped[dt.datetime | None]
    version: Mapped[int] = mapped_column(default=1)

    visit: Mapped[Visit] = relationship(back_populates="problems")
    target: Mapped[Target] = relationship(lazy="joined", innerjoin=True)


class SearchEntry(Base):
    """Bigram tokens of one visit or problem (see server/domain/search.py).

    SQLite indexes `tokens` with an FTS5 table kept in step by triggers; PostgreSQL with a
    generated tsvector column and a GIN index. Both are created by the migration.
    """

    __tablename__ = "search_entries"
    __table_args__ = (UniqueConstraint("kind", "record_id", name="uq_search_entries_kind_record"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    record_id: Mapped[uuid.UUID] = mapped_column()
    tokens: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only: triggers refuse UPDATE and DELETE on both databases."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_entity", "entity", "entity_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"), index=True)
    device_id: Mapped[uuid.UUID | None] = mapped_column()
    action: Mapped[str] = mapped_column(String(40))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    request_id: Mapped[str | None] = mapped_column(String(64))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
