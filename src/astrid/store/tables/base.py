"""What every table shares: the declarative base, its naming convention, the clock, column types.

Every table module imports this one and nothing else of the store except table modules
below it, so the package has no import cycle.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Dialect, Enum, MetaData
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = ["NAMING", "Base", "JSONType", "TimestampMixin", "UTCDateTime", "status_enum", "utcnow"]

#: JSON column: JSONB on PostgreSQL, JSON text elsewhere.
JSONType = JSON().with_variant(JSONB(), "postgresql")

#: Stable constraint names, so Alembic migrations name the same constraints on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A point in time, stored in UTC and always read back timezone-aware (UTC).

    PostgreSQL keeps the zone (``timestamptz``); SQLite keeps none, so values are converted to
    UTC before they are written and marked UTC when read. Every backend therefore gives the same
    answers (the API shows ``+00:00`` on both, and a backup restores across backends).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    """Timezone-aware current UTC time (the only clock the store uses)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for Alembic)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSONType, list[Any]: JSONType, datetime: UTCDateTime()}


def status_enum(enum_cls: type[enum.Enum], name: str) -> Enum:
    """Column type of a status enum, stored as its string values.

    Plain strings (no native ENUM) so adding a state needs no type migration.
    """
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class TimestampMixin:
    """A ``created_at`` column set to :func:`utcnow` on insert."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
