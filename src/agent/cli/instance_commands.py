"""`infra-agent instances`: add, list, show and remove the instances the agent checks.

The database is the one every command uses (AGENT_DATABASE_URL). A removed instance is
soft-deleted through `deleted_at`, so its history stays and no check picks it up again.
"""

from __future__ import annotations

import datetime as dt
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import IntegrityError

from agent.cli.instances import (
    CONNECTION_TYPES,
    INSTANCE_KINDS,
    InstanceInputError,
    NewInstance,
    connection_config,
    read_host_key,
    row_values,
    secret_key,
    ssh_host_entry,
)
from agent.cli.reports.instances import printable
from agent.core.settings import get_settings

HISTORY_ROWS = 10
UPTIME_WINDOW = dt.timedelta(hours=24)


@click.group()
def instances() -> None:
    """Add, list, show and remove the instances the agent checks."""


@instances.command("add")
@click.argument("name")
@click.option("--type", "connection_type", required=True, type=click.Choice(CONNECTION_TYPES))
@click.option("--host", required=True, help="Host name or address.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (tcp needs one).")
@click.option(
    "--set", "pairs", multiple=True, metavar="FIELD=VALUE", help="A setting (JSON or text)."
)
@click.option(
    "--secret", "secret_files", multiple=True, metavar="FIELD=FILE", help="A secret, from FILE."
)
@click.option(
    "--secret-prompt", "prompted", multiple=True, metavar="FIELD", help="A secret, typed."
)
@click.option(
    "--host-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="ssh: pin the host key in FILE (ssh-keyscan output, known_hosts or .pub).",
)
@click.option("--trust-on-first-use", is_flag=True, help="ssh: trust the key seen at first check.")
@click.option("--tag", "tags", multiple=True, help="A tag, e.g. zone:dmz (repeatable).")
@click.option("--kind", "instance_type", type=click.Choice(INSTANCE_KINDS), help="Its `type`.")
@click.option("--space", "space_id", type=click.UUID, help="The space the instance belongs to.")
def add(
    name: str,
    connection_type: str,
    host: str,
    port: int | None,
    pairs: tuple[str, ...],
    secret_files: tuple[str, ...],
    prompted: tuple[str, ...],
    host_key_file: Path | None,
    trust_on_first_use: bool,
    tags: tuple[str, ...],
    instance_type: str | None,
    space_id: uuid.UUID | None,
) -> None:
    """Add instance NAME; print its id. Secrets are stored encrypted and never shown."""
    new = NewInstance(
        name=name,
        connection_type=connection_type,
        host=host,
        port=port,
        settings=_settings(pairs),
        secrets=_secrets(secret_files, prompted),
        host_key=_host_key(host_key_file),
        trust_on_first_use=trust_on_first_use,
        tags=tags,
        instance_type=instance_type,
        space_id=space_id,
    )
    instance_id = _store(new)
    interval_s = get_settings().health_interval_s
    click.echo(f"added {connection_type} instance {printable(name)} ({instance_id})")
    click.echo(
        f"the next health sweep checks it (every {interval_s} s);"
        f" `infra-agent check {instance_id}` checks it now"
    )


def _settings(pairs: tuple[str, ...]) -> dict[str, object]:
    from agent.cli.watch import arguments

    try:
        return arguments(pairs)
    except ValueError:
        raise click.UsageError("--set takes FIELD=VALUE") from None


def _secrets(files: tuple[str, ...], prompted: tuple[str, ...]) -> dict[str, str]:
    secrets = {}
    for pair in files:
        field, sep, path = pair.partition("=")
        if not (sep and field and path):
            raise click.UsageError("--secret takes FIELD=FILE (FILE - for standard input)")
        secrets[field] = _read_secret(path)
    for field in prompted:
        secrets[field] = click.prompt(field, hide_input=True, err=True)
    return secrets


def _read_secret(path: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise click.UsageError(f"cannot read the secret file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"the secret file {path} is not UTF-8 text") from None
    return text.rstrip("\n")


def _host_key(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return read_host_key(path.read_text())
    except OSError as exc:
        raise click.UsageError(f"cannot read the host key file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"the host key file {path} is not UTF-8 text") from None
    except InstanceInputError as exc:
        raise click.UsageError(f"{path}: {exc}") from None


def _store(new: NewInstance) -> uuid.UUID:
    from agent.core.credentials import SecretResolver
    from models import queries
    from models.session import session_scope
    from models.store import health as health_store
    from models.store import instances as instance_store

    key = secret_key(get_settings()) if new.secrets else None
    try:
        config = connection_config(new, SecretResolver(key) if key else None)
    except InstanceInputError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        with session_scope() as session:
            if queries.instances_named(session, new.name):
                raise click.UsageError(f"an instance named {printable(new.name)} exists")
            instance_id = instance_store.add_instance(session, row_values(new, config))
            if new.host_key:
                keys = {instance_id: (ssh_host_entry(new), new.host_key)}
                health_store.remember_host_keys(session, keys)
    except IntegrityError:  # the one reference an operator gives is the space
        raise click.UsageError(f"no space {new.space_id}") from None
    return instance_id


@instances.command("list")
def list_() -> None:
    """List live instances: status, last check, error, latency, uptime over 24 h."""
    from agent.cli.reports.instances import render_list
    from models import queries
    from models.session import session_scope

    now = dt.datetime.now(dt.UTC)
    with session_scope() as session:
        rows = queries.instance_overview(session, now - UPTIME_WINDOW)
        click.echo(render_list(rows, now))


@instances.command("show")
@click.argument("ref", metavar="ID")
@click.option("--history", "limit", default=HISTORY_ROWS, show_default=True, help="Checks shown.")
def show(ref: str, limit: int) -> None:
    """Show an instance (by id or name): settings, check document, recent checks."""
    from agent.cli.reports.instances import render_show
    from models import queries
    from models.session import session_scope

    with session_scope() as session:
        instance = _one(queries.instances_named(session, ref, live_only=False), ref)
        host_key = queries.known_host_keys(session, [instance.id]).get(instance.id)
        history = queries.recent_checks(session, instance.id, max(0, limit))
        click.echo(render_show(instance, host_key, history, dt.datetime.now(dt.UTC)))


@instances.command("remove")
@click.argument("ref", metavar="ID")
def remove(ref: str) -> None:
    """Remove an instance (by id or name): no more checks; its history is kept."""
    from models import queries
    from models.session import session_scope
    from models.store import instances as instance_store

    with session_scope() as session:
        instance = _one(queries.instances_named(session, ref), ref)
        instance_store.remove_instance(session, instance.id)
        click.echo(f"removed {printable(instance.name)} ({instance.id})")


def _one(found: Sequence[Any], ref: str) -> Any:
    matches = list(found)
    if not matches:
        raise click.ClickException(f"no instance {printable(ref)}")
    if len(matches) > 1:
        ids = ", ".join(str(match.id) for match in matches)
        raise click.ClickException(f"{len(matches)} instances are named {printable(ref)}: {ids}")
    return matches[0]


def first_steps(database_url: str, flower_port: int) -> str | None:
    """How to add an instance, when the database at `database_url` has none to check."""
    if _has_instances(database_url):
        return None
    return "\n".join(
        [
            "No instances to check yet. Add one from another terminal, e.g. this agent's Flower:",
            f"  infra-agent instances add flower --type tcp --host 127.0.0.1 --port {flower_port}",
            "then `infra-agent instances list` shows it checked (docs/instances.md: every type).",
        ]
    )


def _has_instances(database_url: str) -> bool:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from agent.core.settings import to_sqlalchemy_url
    from models import queries

    engine = create_engine(to_sqlalchemy_url(database_url))
    try:
        with Session(engine) as session:
            return queries.has_live_instances(session)
    finally:
        engine.dispose()
