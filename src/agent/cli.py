"""The `infra-agent` command."""

from __future__ import annotations

import sys
import uuid

import click

from agent.settings import ConfigError, get_settings, require
from tasks.common import TaskInputError


@click.group()
def main() -> None:
    """Keep the shared database true about the infrastructure it describes."""


@main.command()
def up() -> None:
    """Run worker, beat and Flower (embedded PostgreSQL and Redis unless configured)."""
    from agent import up as stack

    sys.exit(stack.up(get_settings()))


@main.command()
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
@click.option("--check", is_flag=True, help="Only report drift between models and database.")
def migrate(revision: str, check: bool) -> None:
    """Apply the shared-schema migrations to AGENT_DATABASE_URL."""
    from agent import migrate as migrations

    url = require(get_settings().database_url, "AGENT_DATABASE_URL")
    if check:
        migrations.check(url)
        click.echo("no drift between the models and the database")
        return
    migrations.upgrade(url, revision)


@main.command()
@click.argument("instance_id")
def check(instance_id: str) -> None:
    """Check one instance now, write the result, and print what was found."""
    from tasks.common import as_uuid
    from tasks.health import check_now

    summary = check_now(get_settings(), as_uuid(instance_id), holder=f"cli-{uuid.uuid4()}")
    click.echo(render_check(summary))
    sys.exit(0 if summary.get("status") == "online" else 1)


def render_check(summary: dict) -> str:
    """A check summary as an operator reads it."""
    if "check" not in summary:
        return f"{summary['instance_id']}: {summary['status']} ({summary.get('message', '')})"
    result = summary["check"]
    lines = [
        f"{summary['name']} ({summary['instance_id']})",
        f"  status:  {summary['previous_status']} -> {summary['status']}"
        f"  (failures in a row: {summary['consecutive_failures']})",
        f"  check:   {result['kind']} {result['status']} in {result['latency_ms']:.1f} ms"
        + (f"  [{result['error_class']}]" if result["error_class"] else ""),
    ]
    if result["message"]:
        lines.append(f"  message: {result['message']}")
    lines += [f"  {name}: {value}" for name, value in sorted(result["facts"].items())]
    return "\n".join(lines)


@main.group()
def secret() -> None:
    """Make secrets for connection_config and credentials."""


@secret.command("keygen")
def secret_keygen() -> None:
    """Print a new Fernet key for AGENT_SECRET_KEY."""
    from agent.credentials import generate_key

    click.echo(generate_key())


@secret.command("encrypt")
def secret_encrypt() -> None:
    """Read a secret on standard input and print its `enc:` reference."""
    from agent.credentials import SecretResolver

    settings = get_settings()
    key = require(
        settings.secret_key and settings.secret_key.get_secret_value(), "AGENT_SECRET_KEY"
    )
    value = sys.stdin.read().rstrip("\n")
    click.echo(SecretResolver(key).encrypt(value))


def run() -> None:
    """Entry point with configuration errors shown as one clear line."""
    try:
        main(standalone_mode=True)
    except (ConfigError, TaskInputError) as exc:
        click.echo(f"infra-agent: {exc}", err=True)
        sys.exit(2)
