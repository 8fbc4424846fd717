"""The declarative base, the naming convention and the column shapes the schema shares."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from sqlalchemy import MetaData, String, Text, func, text
from sqlalchemy.dialects.postgresql import (
    ARRAY,
    DOUBLE_PRECISION,
    INET,
    JSONB,
    TIMESTAMP,
    UUID,
)
from sqlalchemy.orm import DeclarativeBase, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

NOW = text("now()")

UuidPk = Annotated[
    uuid.UUID,
    mapped_column(UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")),
]
Timestamp = Annotated[dt.datetime, mapped_column(TIMESTAMP(timezone=True))]
CreatedAt = Annotated[dt.datetime, mapped_column(TIMESTAMP(timezone=True), server_default=NOW)]
UpdatedAt = Annotated[
    dt.datetime,
    mapped_column(TIMESTAMP(timezone=True), server_default=NOW, onupdate=func.now()),
]
JsonObject = Annotated[dict[str, Any], mapped_column(JSONB, server_default=text("'{}'::jsonb"))]
JsonList = Annotated[list[Any], mapped_column(JSONB, server_default=text("'[]'::jsonb"))]
TextArray = Annotated[list[str], mapped_column(ARRAY(Text))]
Inet = Annotated[str, mapped_column(INET)]
Str50 = Annotated[str, mapped_column(String(50))]
Str100 = Annotated[str, mapped_column(String(100))]
Str255 = Annotated[str, mapped_column(String(255))]
Str20 = Annotated[str, mapped_column(String(20))]
Str63 = Annotated[str, mapped_column(String(63))]
Str64 = Annotated[str, mapped_column(String(64))]

# What a bare annotation means, so that `Mapped[dt.datetime]` can only be TIMESTAMPTZ,
# `Mapped[str]` is TEXT (lengths come from the Str* shapes) and ids are native UUIDs.
TYPE_MAP: dict[Any, Any] = {
    dt.datetime: TIMESTAMP(timezone=True),
    uuid.UUID: UUID(as_uuid=True),
    str: Text(),
    float: DOUBLE_PRECISION(),
    dict[str, Any]: JSONB(),
    list[str]: ARRAY(Text),
}


class Base(DeclarativeBase):
    """Every table of the shared schema the agent reads or writes."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = TYPE_MAP
