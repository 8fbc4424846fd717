"""Discovery of a Docker engine with many containers: wall time and SQL statements per instance.

Run from the repository root (as root, for Podman), for example:

    .venv/bin/python bench/discovery.py --containers 200 --repeat 5

It starts a private Podman API service (the test fixtures' storage and flags), creates
`--containers` containers (a third running, a third exited with code 0 or 3, the rest
created; a tenth publish a port, all carry labels), and discovers them with the real
orchestration (`tasks.discovery.discover_now`: lease, list calls, reconcile, release) against
a scratch database created, migrated and dropped on `--database-url`.

Side by side in the same run, the baseline reconciles the same services the naive way: one
ORM `SELECT` per service, then an `INSERT` or `UPDATE` for it, then one `UPDATE` per unseen
service. SQL statements are counted with a SQLAlchemy `before_cursor_execute` listener, for
the whole discovery of one instance; the agent's count must not grow with the number of
services (it is printed for a tenth of the containers too).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


@contextmanager
def podman_engine(count: int):
    """A Podman API service with `count` containers in several states; its socket URL."""
    import docker

    from tests.support.podman import CONTAINERS_CONF, PodmanService, PodmanStorage, busybox_rootfs

    base = Path(tempfile.mkdtemp(prefix="agent-bench-podman-"))
    storage = PodmanStorage(base)
    (base / "containers.conf").write_text(CONTAINERS_CONF)
    service = PodmanService(storage, base / "podman.sock").start()
    client = docker.DockerClient(base_url=service.url, version="auto", timeout=120)
    try:
        (base / "image").mkdir()
        client.api.import_image_from_data(
            busybox_rootfs(base / "image"), repository="localhost/bench-busybox", tag="latest"
        )
        make_containers(client, "localhost/bench-busybox:latest", count)
        yield service.url
    finally:
        client.close()
        storage.run("rm", "--all", "--force", "--time", "0", timeout_s=600)
        service.stop()


def make_containers(client, image: str, count: int) -> None:
    """A third running, a third exited (0 or 3), the rest created; some publish a port."""
    from tests.support.network import free_port

    for i in range(count):
        labels = {"bench.index": str(i), "com.docker.compose.project": f"p{i % 7}"}
        options = {"name": f"bench-{i}", "labels": labels, "network_mode": "none"}
        if i % 3 == 0:
            if i % 10 == 0:
                options |= {"network_mode": None, "ports": {"80/tcp": ("127.0.0.1", free_port())}}
            client.containers.run(image, ["sleep", "3600"], detach=True, **options)
        elif i % 3 == 1:
            command = ["true"] if i % 2 else ["sh", "-c", "exit 3"]
            client.containers.run(image, command, detach=True, **options).wait(timeout=60)
        else:
            client.containers.create(image, ["true"], **options)


@contextmanager
def counting():
    """A list that collects one entry per SQL statement the process sends."""
    from sqlalchemy import event

    from models.session import get_engine

    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args) -> None:
        statements.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        yield statements
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


def add_instance(url: str) -> uuid.UUID:
    """An instance row for the engine."""
    from models import InfrastructureInstance
    from models.session import session_scope

    row = InfrastructureInstance(
        name=f"bench-{uuid.uuid4().hex[:6]}",
        type="docker_host",
        host="127.0.0.1",
        connection_type="docker_api",
        connection_config={"docker_host": url},
    )
    with session_scope() as session:
        session.add(row)
        session.flush()
    return row.id


def agent_once(instance_id: uuid.UUID) -> tuple[float, int, int]:
    """(seconds, statements, services) of one discovery through the agent."""
    from agent.core.settings import get_settings
    from tasks.discovery import discover_now

    with counting() as statements:
        started = time.perf_counter()
        summary = discover_now(get_settings(), instance_id, holder=str(uuid.uuid4()))
        elapsed = time.perf_counter() - started
    assert summary["status"] == "discovered", summary
    return elapsed, len(statements), summary["seen"]


def baseline_once(instance_id: uuid.UUID, url: str) -> tuple[float, int]:
    """(seconds, statements) of the same discovery reconciled row by row with the ORM."""
    from sqlalchemy import select

    from agent.core.credentials import SecretResolver
    from agent.discovery import discoverer_for
    from models import InstanceService
    from models.session import session_scope

    with counting() as statements:
        started = time.perf_counter()
        config = {"docker_host": url}
        found = discoverer_for("docker_api", "127.0.0.1", None, config, SecretResolver(None), 30)
        found = found.run()
        with session_scope() as session:
            seen = set()
            for service in found.services:
                row = session.scalars(
                    select(InstanceService).where(
                        InstanceService.instance_id == instance_id,
                        InstanceService.name == service.name,
                        InstanceService.type == service.type,
                    )
                ).one_or_none()
                values = service.row()
                if row is None:
                    row = InstanceService(instance_id=instance_id, **values)
                    session.add(row)
                else:
                    for key, value in values.items():
                        setattr(row, key, value)
                session.flush()
                seen.add(row.id)
            for row in session.scalars(
                select(InstanceService).where(InstanceService.instance_id == instance_id)
            ):
                if row.id not in seen and row.status != "missing":
                    row.status = "missing"
                    session.flush()
        elapsed = time.perf_counter() - started
    return elapsed, len(statements)


def run(database_url: str, containers: int, repeat: int) -> None:
    """Create the engines, migrate, measure, print."""
    os.environ["AGENT_DATABASE_URL"] = database_url
    from agent.cli import migrate
    from agent.core.settings import get_settings
    from models.session import dispose_engine

    get_settings.cache_clear()
    migrate.upgrade(database_url)
    with podman_engine(containers) as big, podman_engine(max(containers // 10, 1)) as small:
        agent_id, baseline_id, small_id = add_instance(big), add_instance(big), add_instance(small)
        agent_once(agent_id), baseline_once(baseline_id, big)  # first runs: inserts
        _, small_statements, small_services = agent_once(small_id)
        agent_runs = [agent_once(agent_id) for _ in range(repeat)]
        baseline_runs = [baseline_once(baseline_id, big) for _ in range(repeat)]
    dispose_engine()
    report(agent_runs, baseline_runs, small_statements, small_services)


def report(agent_runs, baseline_runs, small_statements: int, small_services: int) -> None:
    """Medians and ratios."""
    agent_s = statistics.median(r[0] for r in agent_runs)
    agent_sql = statistics.median(r[1] for r in agent_runs)
    services = agent_runs[0][2]
    base_s = statistics.median(r[0] for r in baseline_runs)
    base_sql = statistics.median(r[1] for r in baseline_runs)
    print(f"one instance, {services} containers (repeat discoveries: updates, no inserts)")
    print(f"agent     median {agent_s * 1000:8.1f} ms   {agent_sql:5.0f} SQL statements")
    print(f"baseline  median {base_s * 1000:8.1f} ms   {base_sql:5.0f} SQL statements")
    ratio_s, ratio_sql = base_s / agent_s, base_sql / agent_sql
    print(f"ratio baseline/agent: time {ratio_s:.2f}x, statements {ratio_sql:.1f}x")
    print(f"agent with {small_services} containers: {small_statements} SQL statements")


def main() -> None:
    """Parse arguments, make a scratch database, run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--database-url", default=os.environ.get("AGENT_TEST_DATABASE_URL"))
    args = parser.parse_args()
    if not args.database_url:
        sys.exit("set AGENT_TEST_DATABASE_URL (or --database-url) to a PostgreSQL server")
    from tests.support.databases import new_database

    with new_database(args.database_url, "agent_bench") as url:
        run(url, args.containers, args.repeat)


if __name__ == "__main__":
    main()
