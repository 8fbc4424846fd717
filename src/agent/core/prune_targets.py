"""A table the pruner empties of expired rows: a value the settings parse, so it lives in core."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

# Unquoted PostgreSQL identifiers only: anything else is refused before the catalog is asked.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


class PruneTarget(BaseModel):
    """A table whose rows are deleted once `column` is older than now minus `grace_s`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: str
    column: str = "expires_at"
    grace_s: float = Field(default=0, ge=0)

    @field_validator("table", "column")
    @classmethod
    def _plain_identifier(cls, value: str) -> str:
        if not IDENTIFIER.fullmatch(value):
            raise ValueError("must be a plain identifier: letters, digits, _ (at most 63)")
        return value
