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
    text,
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
    # Sync state (docs/sync-protocol.md): the last seq applied, committed with the changes.
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    queue_depth: Mapped[int | None]
    protocol_version: Mapped[int | None]
    last_push_at: Mapped[dt.datetime | None]
    last_pull_at: Mapped[dt.datetime | None]

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
        # Whether a target was visited in a campaign: one probe (the summary report's coverage).
        Index("ix_visits_target_campaign_visited_at", "target_id", "campaign_id", "visited_at"),
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
    attachments: Mapped[list[VisitAttachment]] = relationship(
        back_populates="visit", order_by="VisitAttachment.created_at", cascade="all, delete-orphan"
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
        # Covers the summary report: it groups by these columns in this order and reads no table rows
        # (duplicate_of_id last: the report leaves merged duplicates out from the index entries too).
        Index(
            "ix_problems_report", "campaign_id", "category", "department_id", "outcome", "raised_at", "duplicate_of_id"
        ),
        # A survivor's duplicates. Partial: the few merged rows only, so that no planner takes it for
        # the "not merged" filter of every list and report (duplicate_of_id IS NULL).
        Index(
            "ix_problems_duplicate_of_id",
            "duplicate_of_id",
            sqlite_where=text("duplicate_of_id IS NOT NULL"),
            postgresql_where=text("duplicate_of_id IS NOT NULL"),
        ),
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
    # A duplicate merged into another problem of the same target (the survivor): closed, left out
    # of reports and of default lists, still readable. Never points at a duplicate (one level).
    duplicate_of_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("problems.id"))
    merged_at: Mapped[dt.datetime | None]
    merged_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(default=1)

    visit: Mapped[Visit] = relationship(back_populates="problems")
    target: Mapped[Target] = relationship(lazy="joined", innerjoin=True)


class Attachment(Base):
    """The bytes of a photo or file, stored once by their SHA-256 (instance/attachments/)."""

    __tablename__ = "attachments"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(String(100))
    stored_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    uploaded_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))


class VisitAttachment(Base):
    """A visit's reference to a file by hash; pending until the file's bytes have arrived."""

    __tablename__ = "visit_attachments"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    visit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("visits.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    filename: Mapped[str] = mapped_column(String(200))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    caption: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    visit: Mapped[Visit] = relationship(back_populates="attachments")
    blob: Mapped[Attachment | None] = relationship(
        primaryjoin="foreign(VisitAttachment.sha256) == Attachment.sha256", lazy="joined", viewonly=True
    )

    @property
    def status(self) -> str:
        return "available" if self.blob is not None else "pending"


class Upload(Base):
    """A tus upload in progress (docs/sync-protocol.md); its bytes sit in instance/uploads/."""

    __tablename__ = "uploads"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str | None] = mapped_column(String(64))
    length: Mapped[int] = mapped_column(BigInteger)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    filename: Mapped[str | None] = mapped_column(String(200))
    content_type: Mapped[str | None] = mapped_column(String(100))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    device_id: Mapped[uuid.UUID | None] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    completed_at: Mapped[dt.datetime | None]


class SyncCounter(Base):
    """One row: the last change number handed out. Its row lock orders change numbers by commit."""

    __tablename__ = "sync_counter"

    id: Mapped[int] = mapped_column(primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class ChangeLogEntry(Base):
    """The latest change of each record, numbered in commit order; devices pull from a number on."""

    __tablename__ = "change_log"
    __table_args__ = (
        Index("ix_change_log_owner_change_no", "owner_id", "change_no"),
        Index("ix_change_log_target_change_no", "target_id", "change_no"),
        Index("ix_change_log_scope_change_no", "scope", "change_no"),
    )

    entity: Mapped[str] = mapped_column(String(24), primary_key=True)
    record_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    change_no: Mapped[int] = mapped_column(BigInteger, unique=True)
    op: Mapped[str] = mapped_column(String(8))
    # Who receives it: 'all' (reference data), or by owner / target (docs/sync-protocol.md).
    scope: Mapped[str] = mapped_column(String(8))
    owner_id: Mapped[uuid.UUID | None] = mapped_column()
    target_id: Mapped[uuid.UUID | None] = mapped_column()
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SyncChange(Base):
    """Every change a device pushed, with its result: replays answer from here, rejections stay here."""

    __tablename__ = "sync_changes"
    __table_args__ = (Index("ix_sync_changes_status_received", "status", "received_at"),)

    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    kind: Mapped[str] = mapped_column(String(24))
    record_id: Mapped[uuid.UUID] = mapped_column()
    status: Mapped[str] = mapped_column(String(12))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SyncConflict(Base):
    """An edit based on a version that was no longer current: both versions are kept."""

    __tablename__ = "sync_conflicts"
    __table_args__ = (Index("ix_sync_conflicts_status_created", "status", "created_at"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    device_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("devices.id"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    seq: Mapped[int] = mapped_column(BigInteger)
    entity: Mapped[str] = mapped_column(String(24))
    record_id: Mapped[uuid.UUID] = mapped_column()
    base_version: Mapped[int]
    server_version: Mapped[int]
    device_payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    server_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12), default="open")
    resolution: Mapped[str | None] = mapped_column(String(16))
    resolved_by_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))
    resolved_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class SearchEntry(Base):
    """Bigram tokens of one visit or problem (see server/domain/search.py).

    SQLite indexes `tokens` with one FTS5 table per kind (external content: a view of the kind's
    entries), which server/services/search.py tells of new entries and triggers of changed or
    deleted ones; PostgreSQL with a generated tsvector column and a GIN index per kind. The
    migrations create both.
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


# The referral workflow's tables live in their own module; import them so that the metadata
# (and Alembic's autogenerate) sees every table.
from server.db import followup_models as _followup_models  # noqa: E402, F401


class ConsoleSession(Base):
    """A browser's login to the web console; the cookie holds a random id, stored here as a hash.

    Server-side, so that logging out (or an admin deactivating the user) ends it at once.
    """

    __tablename__ = "console_sessions"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    user_agent: Mapped[str | None] = mapped_column(String(300))
    remote_addr: Mapped[str | None] = mapped_column(String(64))
