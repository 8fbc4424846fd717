"""The `infra-agent` command."""

from __future__ import annotations

import sys
import uuid
from functools import partial
from typing import Any

import click

from agent.cli.instance_commands import instances
from agent.core.settings import ConfigError, get_settings, require
from tasks.common import TaskInputError

# Commands that must not take their servers from a running agent's profile.
OWN_SERVERS = {"up"}


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """Keep the shared database true about the infrastructure it describes.

    With AGENT_DATABASE_URL / AGENT_BROKER_URL unset, commands use the agent that
    `infra-agent up` runs from the data directory (its profile, see `infra-agent env`).
    """
    if ctx.invoked_subcommand not in OWN_SERVERS:
        use_running_agent()


def use_running_agent() -> None:
    """Fill unset AGENT_* variables from the running agent's profile, and say so."""
    import os

    from agent.cli import profile
    from agent.core.settings import load_settings

    said = profile.fill(os.environ, load_settings().data_dir)
    if said:
        get_settings.cache_clear()
        click.echo(f"infra-agent: {said}", err=True)


@main.command()
def up() -> None:
    """Run worker, beat and Flower (embedded PostgreSQL and Redis unless configured)."""
    from agent.cli import up as stack

    sys.exit(stack.up(get_settings()))


@main.command()
@click.option("--revision", default="heads", show_default=True, help="Target revision.")
@click.option("--check", is_flag=True, help="Only report each table's state; exit 1 on any drift.")
@click.option(
    "--create-indexes",
    is_flag=True,
    help="Create indexes the agent needs on adopted tables (CONCURRENTLY); else print them.",
)
def migrate(revision: str, check: bool, create_indexes: bool) -> None:
    """Apply the shared-schema migrations to AGENT_DATABASE_URL, adopting existing tables."""
    from agent.cli import migrate as migrations
    from models.adoption import AdoptionError

    url = require(get_settings().database_url, "AGENT_DATABASE_URL")
    if check:
        status = migrations.status(url)
        click.echo(migrations.render(status))
        sys.exit(1 if status.drifted else 0)
    try:
        lines = migrations.upgrade(url, revision, create_indexes=create_indexes)
    except AdoptionError as error:
        click.echo(str(error), err=True)
        sys.exit(1)
    for line in lines:
        click.echo(line)


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


@main.command()
@click.option("--dry-run", is_flag=True, help="Only show what would go, per table.")
def prune(dry_run: bool) -> None:
    """Prune expired sessions, deactivate expired API keys, apply retention (as the tasks do)."""
    import json

    from agent.housekeeping import render_plan
    from tasks import housekeeping
    from tasks.common import database_now

    settings, now = get_settings(), database_now()
    if dry_run:
        click.echo(render_plan(housekeeping.plan(settings, now)))
        return
    done = {
        "sessions": housekeeping.run_prune(settings),
        "api_keys": housekeeping.run_expire_keys(settings),
        "retention": housekeeping.run_retention(settings, now),
    }
    click.echo(json.dumps(done, indent=2, default=str))


@main.command()
@click.argument("instance_id")
def discover(instance_id: str) -> None:
    """Discover what runs on one instance now, reconcile it, and print it as a table."""
    from agent.cli.reports.discovery import render
    from models import queries
    from models.session import session_scope
    from tasks.common import as_uuid
    from tasks.discovery import discover_now

    target = as_uuid(instance_id)
    summary = discover_now(get_settings(), target, holder=f"cli-{uuid.uuid4()}")
    with session_scope() as session:
        rows = queries.instance_services(session, target)
    click.echo(render(summary, rows))
    sys.exit(0 if summary["status"] == "discovered" else 1)


@main.command()
@click.option("--space", "space_id", help="Only this space's installed services.")
@click.option("--tenant", "tenant_id", help="Only this tenant's MCP servers.")
def plugins(space_id: str | None, tenant_id: str | None) -> None:
    """Print the health of installed services and MCP servers as a table."""
    from agent.cli.reports.plugins import render
    from models import queries
    from models.session import session_scope
    from tasks.common import as_uuid

    space = as_uuid(space_id, "--space") if space_id else None
    tenant = as_uuid(tenant_id, "--tenant") if tenant_id else None
    with session_scope() as session:
        rows = queries.plugin_health(session, space, tenant)
    click.echo(render(rows))


@main.group()
def bench() -> None:
    """Ingest benchmark results and list regression alerts."""


@bench.command("ingest")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--format", "format_", help="pytest-benchmark, google-benchmark, json or csv.")
@click.option("--package", help="Package for rows that name none.")
@click.option("--branch", help="Branch for rows that name none.")
@click.option("--testbed", help="Testbed for rows that name none.")
def bench_ingest(files, format_, package, branch, testbed) -> None:
    """Ingest result FILES (one run each) with a progress bar; print counts and reasons."""
    from pathlib import Path

    from agent.cli.reports.benchmarks import render_result
    from tasks import benchmarks

    given = {"package": package, "branch": branch, "testbed": testbed}
    defaults = {name: value for name, value in given.items() if value}
    failed = False
    for name in files:
        path = Path(name)
        with (
            path.open("rb") as stream,
            click.progressbar(length=path.stat().st_size, label=path.name) as bar,
        ):
            result = benchmarks.ingest_stream(
                get_settings(),
                stream,
                benchmarks.as_format(format_),
                defaults,
                name,
                progress=partial(_advance, bar),
            )
        click.echo(render_result(name, result))
        failed = failed or result["status"] != "done"
    sys.exit(1 if failed else 0)


def _advance(bar: Any, at: int) -> None:
    """Move a file's progress `bar` to byte `at`."""
    bar.update(at - bar.pos)


@bench.command("alerts")
@click.option("--package", help="Only this package's alerts.")
@click.option("--limit", default=100, show_default=True, help="Newest alerts to show.")
def bench_alerts(package: str | None, limit: int) -> None:
    """List open regression alerts, newest first."""
    from agent.cli.reports.benchmarks import render_alerts
    from tasks import benchmarks

    click.echo(render_alerts(benchmarks.alerts.run(package, limit)))


@main.command()
@click.argument("task")
@click.option("-a", "--arg", "pairs", multiple=True, metavar="NAME=VALUE", help="An argument.")
@click.option("--wait", is_flag=True, help="Wait for the result, with a progress bar.")
@click.option("--timeout", "timeout_s", default=600.0, show_default=True, help="Seconds.")
def send(task: str, pairs: tuple[str, ...], wait: bool, timeout_s: float) -> None:
    """Send TASK through the broker (VALUEs are JSON or text); print its id, or its result."""
    import json

    from agent.cli import watch

    client = watch.broker_client(results=wait)
    try:
        result = client.send(task, **watch.arguments(pairs))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if not wait:
        click.echo(result.id)
        return
    terminal = sys.stderr.isatty()
    show = watch.printer(lambda line, nl: click.echo(line, nl=nl, err=True), terminal)
    try:
        value = watch.follow(client, result, timeout_s, show)
    except TimeoutError as exc:
        click.echo(f"\ninfra-agent: {exc}", err=True)
        sys.exit(1)
    finally:
        click.echo("\r" if terminal else "", nl=terminal, err=True)
    click.echo(json.dumps(value, indent=2))


@main.command()
def env() -> None:
    """Print `export` lines for the running agent's servers (for celery, Flower and other apps)."""
    from agent.cli import profile
    from agent.core.settings import load_settings

    data_dir = load_settings().data_dir
    found = profile.live(profile.path_in(data_dir))
    if found is None:
        raise ConfigError(f"no agent is running from {data_dir} (start one with `infra-agent up`)")
    click.echo(profile.exports(found))


@main.command()
@click.argument("directory", default="docs/schemas", type=click.Path(file_okay=False))
def schemas(directory: str) -> None:
    """Write the JSON Schemas of every task's arguments, result and progress to DIRECTORY."""
    from pathlib import Path

    from agent.api.schemas import write

    for path in write(Path(directory)):
        click.echo(path)


@main.command("docs")
@click.argument("directory", default="docs", type=click.Path(file_okay=False))
def docs_(directory: str) -> None:
    """Write every generated page: DIRECTORY/schemas (as `schemas`) and DIRECTORY/reference."""
    from pathlib import Path

    from agent.api import schemas
    from agent.cli import reference

    written = schemas.write(Path(directory, "schemas")) + reference.write(
        Path(directory, "reference")
    )
    for path in written:
        click.echo(path)


@main.command("worker-alive")
@click.option("--max-age", "max_age_s", type=float, help="Seconds (AGENT_LIVENESS_MAX_AGE_S).")
def worker_alive(max_age_s: float | None) -> None:
    """Exit 0 while the worker on this host consumes, 1 once it stopped (a liveness probe)."""
    from agent.runtime.liveness import verdict

    settings = get_settings()
    alive, reason = verdict(settings.liveness_path, max_age_s or settings.liveness_max_age_s)
    click.echo(reason, err=not alive)
    sys.exit(0 if alive else 1)


@main.group()
def secret() -> None:
    """Make secrets for connection_config and credentials."""


@secret.command("keygen")
def secret_keygen() -> None:
    """Print a new Fernet key for AGENT_SECRET_KEY."""
    from agent.core.credentials import generate_key

    click.echo(generate_key())


@secret.command("encrypt")
def secret_encrypt() -> None:
    """Read a secret on standard input and print its `enc:` reference."""
    from agent.core.credentials import SecretResolver

    settings = get_settings()
    key = require(
        settings.secret_key.get_secret_value() if settings.secret_key else None, "AGENT_SECRET_KEY"
    )
    value = sys.stdin.read().rstrip("\n")
    click.echo(SecretResolver(key).encrypt(value))


@secret.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every enc: reference with AGENT_SECRET_KEY; only it is accepted afterwards.

    Run it once every worker has the new key, with the old one in AGENT_SECRET_PREVIOUS_KEYS.
    """
    from agent.runtime.key_check import rotate_references

    for column, count in rotate_references(get_settings()).items():
        click.echo(f"{column}: {count} rows re-encrypted")


main.add_command(instances)


def run() -> None:
    """Entry point with configuration errors shown as one clear line."""
    try:
        main(standalone_mode=True)
    except (ConfigError, TaskInputError) as exc:
        click.echo(f"infra-agent: {exc}", err=True)
        sys.exit(2)
