"""Users and what authenticates them: SmartHub (seed 004) and Better-Auth (seed 001) tables."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import conv

from models.base import Base, CreatedAt, Inet, Str50, Str64, Str100, Str255, UpdatedAt, UuidPk

TRUE = text("true")
FALSE = text("false")
# Seed 004 names these two checks itself; `conv` keeps the naming convention off them.
EMAIL_FORMAT = r"email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Z|a-z]{2,}$'"


class User(Base):
    """One row per person, shared by every product.

    SmartHub's (004) columns, with `username` and `password_hash` nullable because
    Better-Auth (001) and yapkg (003) users may have neither; Better-Auth adds `name`
    and `image` (its `emailVerified` is 004's `email_verified`).
    """

    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint(EMAIL_FORMAT, name=conv("email_format")),
        Index("idx_users_email", "email"),
        Index("idx_users_username", "username"),
        Index("idx_users_is_active", "is_active"),
        Index("idx_users_created_at", text("created_at DESC")),
    )

    id: Mapped[UuidPk]
    email: Mapped[Str255] = mapped_column(unique=True)
    username: Mapped[Str100 | None] = mapped_column(unique=True)
    password_hash: Mapped[Str255 | None]
    first_name: Mapped[Str100 | None]
    last_name: Mapped[Str100 | None]
    avatar_url: Mapped[str | None] = mapped_column(String(512))
    is_active: Mapped[bool | None] = mapped_column(server_default=TRUE)
    email_verified: Mapped[bool | None] = mapped_column(server_default=FALSE)
    email_verified_at: Mapped[dt.datetime | None]
    last_login_at: Mapped[dt.datetime | None]
    name: Mapped[str | None]
    image: Mapped[str | None]
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
    deleted_at: Mapped[dt.datetime | None]


class Role(Base):
    """A named set of permissions (admin, user, viewer, moderator)."""

    __tablename__ = "roles"
    __table_args__ = (Index("idx_roles_name", "name"),)

    id: Mapped[UuidPk]
    name: Mapped[Str100] = mapped_column(unique=True)
    description: Mapped[str | None]
    is_system: Mapped[bool | None] = mapped_column(server_default=FALSE)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class UserRole(Base):
    """A role granted to a user."""

    __tablename__ = "user_roles"
    __table_args__ = (
        UniqueConstraint("user_id", "role_id"),
        Index("idx_user_roles_user_id", "user_id"),
        Index("idx_user_roles_role_id", "role_id"),
        Index("idx_user_roles_composite", "user_id", "role_id"),
    )

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    role_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    assigned_at: Mapped[CreatedAt]
    assigned_by: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id"))


class ApiKey(Base):
    """An API key, stored only as the SHA-256 hex digest of the key; deactivated when expired."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint("LENGTH(key_hash) = 64", name=conv("key_length")),
        Index("idx_api_keys_user_id", "user_id"),
        Index("idx_api_keys_expires_at", "expires_at"),
        Index("idx_api_keys_active", "is_active"),
    )

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key_hash: Mapped[Str64] = mapped_column(unique=True)
    name: Mapped[Str100 | None]
    description: Mapped[str | None]
    last_used_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    is_active: Mapped[bool | None] = mapped_column(server_default=TRUE)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]


class UserSession(Base):
    """A SmartHub login session (004), pruned once expired."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("idx_sessions_user_id", "user_id"),
        Index("idx_sessions_expires_at", "expires_at"),
        Index("idx_sessions_token_hash", "token_hash"),
    )

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[Str64]
    ip_address: Mapped[Inet | None]
    user_agent: Mapped[str | None]
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[CreatedAt]


class AuthSession(Base):
    """A Better-Auth session (001's singular `session`), pruned once expired.

    Better-Auth's ids are text; `user_id` is a UUID because it references the shared `users`.
    """

    __tablename__ = "session"

    id: Mapped[str] = mapped_column(primary_key=True)
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    token: Mapped[str] = mapped_column(unique=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[UpdatedAt]
    ip_address: Mapped[str | None]
    user_agent: Mapped[str | None]
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))


class Verification(Base):
    """A Better-Auth verification token (email, password reset), pruned once expired."""

    __tablename__ = "verification"

    id: Mapped[str] = mapped_column(primary_key=True)
    identifier: Mapped[str]
    value: Mapped[str]
    expires_at: Mapped[dt.datetime] = mapped_column(index=True)
    created_at: Mapped[CreatedAt | None]
    updated_at: Mapped[UpdatedAt | None]


class AuditLog(Base):
    """One change to one entity, by a user or by the agent (004)."""

    __tablename__ = "audit_logs"
    __table_args__ = (
        Index("idx_audit_logs_user_id", "user_id"),
        Index("idx_audit_logs_entity", "entity_type", "entity_id"),
        Index("idx_audit_logs_created_at", text("created_at DESC")),
    )

    id: Mapped[UuidPk]
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    entity_type: Mapped[Str100]
    entity_id: Mapped[uuid.UUID]
    action: Mapped[Str50]
    changes: Mapped[dict[str, Any] | None]
    ip_address: Mapped[Inet | None]
    user_agent: Mapped[str | None]
    created_at: Mapped[CreatedAt]
