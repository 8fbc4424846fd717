"""A fake clock for the database: time moves on when every stored time it compares moves back.

The due rules and the leases read only the database's clock, so dating every last check and
lease expiry back by some seconds is that clock moving forward by as many, for code that runs
unchanged on the real PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import text

from models.session import session_scope

# Every column a due rule or a lease compares, by table.
DATED = {
    "infrastructure_instances": "last_health_check",
    "service_installations": "last_health_check",
    "mcp_server": "last_health_check",
    "agent_leases": "expires_at",
}


class FakeClock:
    """Seconds since the start of a test, moved forward by dating the database back."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def advance_to(self, now_s: float) -> None:
        """Let time run on to `now_s`."""
        step = now_s - self.now_s
        assert step >= 0, "a clock only moves forward"
        with session_scope() as session:
            for table, column in DATED.items():
                session.execute(
                    text(f"UPDATE {table} SET {column} = {column} - make_interval(secs => :s)"),
                    {"s": step},
                )
        self.now_s = now_s
