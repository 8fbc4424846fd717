"""The README's first run, exactly as a new user takes it.

One terminal runs the README's first command on a fresh data directory with nothing
configured; a second one, with no `AGENT_*` variable, runs the README's blocks as written.
What is asserted is what the user would see: rows the periodic sweep wrote, the CLI's
answers, and succeeded periodic tasks in Flower (its API, and its Tasks page in a browser).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.components import missing_component
from tests.support.processes import agent_env, interrupt, kill_group, start, wait_until

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
FLOWER = "http://127.0.0.1:5555"  # the README's default, as the user sees it
# What the operator must never see in a log (the checks of the before-stop hook, and more).
BROKEN = re.compile(r"Traceback|Couldn.t apply scheduled task|Pool callback raised|ERROR/")
INSTANCES = ("flower-port", "flower-web")


def readme_run_command() -> str:
    """The README's first command: the first line of its first block, without the comment."""
    return README.split("```sh\n", 1)[1].splitlines()[0].split("#")[0].strip()


def readme_block(name: str) -> str:
    """The shell block the README marks `<!-- readme-test: name -->`."""
    found = re.search(rf"<!-- readme-test: {name} -->\n```sh\n(.*?)```", README, re.S)
    assert found, f"README has no block marked readme-test: {name}"
    return found[1]


@dataclass
class FirstRun:
    """The running agent and what the second terminal did."""

    proc: subprocess.Popen
    log: Path
    home: Path
    env: dict[str, str]
    added: str

    @property
    def profile(self) -> dict:
        return json.loads((self.home / "infra-agent" / "agent.json").read_text())

    def password(self) -> str:
        return Path(self.profile["flower_password_file"]).read_text().strip()

    def terminal(self, script: str) -> subprocess.CompletedProcess:
        """Run README lines in a second terminal: bash, in the checkout, nothing configured."""
        return subprocess.run(
            ["bash", "-ec", script],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )


def flower_tasks(run: FirstRun, name: str) -> list[dict]:
    response = httpx.get(
        f"{FLOWER}/api/tasks",
        params={"taskname": name, "state": "SUCCESS"},
        auth=("admin", run.password()),
        timeout=10,
    )
    response.raise_for_status()
    return list(response.json().values())


def checked_by_the_sweep(database_url: str) -> dict[str, tuple]:
    """Per instance added: its status and how many history rows the checks wrote."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """SELECT i.name, i.status, i.last_health_check, count(h.*)
                 FROM infrastructure_instances i
                 LEFT JOIN instance_health_history h ON h.instance_id = i.id
                WHERE i.deleted_at IS NULL GROUP BY i.id"""
        ).fetchall()
    return {name: (status, last, count) for name, status, last, count in rows if count}


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> FirstRun:
    home = tmp_path_factory.mktemp("fresh-user")
    log = home / "up.log"
    # A fresh user: the data directory is the default one under an empty XDG_DATA_HOME.
    env = agent_env(XDG_DATA_HOME=str(home))
    proc = start(["bash", "-c", readme_run_command()], env, log)
    try:
        profile = home / "infra-agent" / "agent.json"
        wait_until(lambda: profile.exists() or proc.poll() is not None, 300, "up's profile")
        assert proc.poll() is None, log.read_text()
        run = FirstRun(proc, log, home, env, added="")
        added = run.terminal(readme_block("add"))
        assert added.returncode == 0, added.stderr
        run.added = added.stdout
        yield run
    finally:
        status = interrupt(proc) if proc.poll() is None else proc.returncode
        kill_group(proc)
    assert status == 0, log.read_text()[-3000:]
    assert not (home / "infra-agent" / "agent.json").exists(), "the profile outlived the agent"


def test_the_periodic_sweep_checks_what_the_second_terminal_added(first_run):
    database_url = first_run.profile["database_url"]
    checked = wait_until(
        lambda: (found := checked_by_the_sweep(database_url)).keys() >= set(INSTANCES) and found,
        150,
        "the periodic sweep to check both instances",
    )
    # Flower answers on both: one good check takes an instance from `unknown` to `online`.
    assert {name: checked[name][0] for name in INSTANCES} == dict.fromkeys(INSTANCES, "online")
    sweeps = wait_until(lambda: flower_tasks(first_run, "agent.health.sweep"), 60, "sweeps")
    assert any(task["result"] and "'dispatched': 0" not in task["result"] for task in sweeps)
    assert wait_until(lambda: flower_tasks(first_run, "agent.health.check_batch"), 60, "batches")


def test_the_cli_shows_the_checks_and_runs_a_task_by_name(first_run):
    wait_until(
        lambda: checked_by_the_sweep(first_run.profile["database_url"]).keys() >= set(INSTANCES),
        150,
        "both instances checked",
    )
    watched = first_run.terminal(readme_block("watch"))
    assert watched.returncode == 0, watched.stderr
    lines = watched.stdout.splitlines()
    listed = [line for line in lines if set(line.split()) & set(INSTANCES)]
    assert len(listed) == 2, watched.stdout
    assert all("online" in line for line in listed), watched.stdout
    pongs = [line for line in lines if "pong" in line]
    assert pongs, watched.stdout
    assert "'pong': True" in watched.stdout  # the plain Celery app's answer
    assert '"pong": true' in watched.stdout  # `infra-agent send ... --wait`
    assert "using the running agent's profile" in watched.stderr


def test_nothing_in_the_logs_of_worker_beat_or_flower_is_broken(first_run):
    wait_until(lambda: flower_tasks(first_run, "agent.health.check_batch"), 150, "batches")
    broken = [line for line in first_run.log.read_text().splitlines() if BROKEN.search(line)]
    assert broken == []


def test_flowers_tasks_page_shows_the_succeeded_periodic_tasks_in_a_browser(first_run):
    browser = shutil.which("chromium")
    if browser is None:
        missing_component("a headless browser", "chromium")
    wait_until(lambda: flower_tasks(first_run, "agent.health.check_batch"), 150, "batches")
    page = first_run.home / "flower-tasks.html"
    url = f"http://admin:{first_run.password()}@127.0.0.1:5555/tasks"
    shot = first_run.home / "flower-tasks.png"
    headless = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    wait = ["--virtual-time-budget=15000", "--window-size=1400,1000"]
    subprocess.run([*headless, *wait, f"--screenshot={shot}", url], timeout=120, check=False)
    dom = subprocess.run(
        [*headless, *wait, "--dump-dom", url], capture_output=True, text=True, timeout=120
    )
    page.write_text(dom.stdout)
    assert "agent.health.sweep" in dom.stdout, f"rendered page kept in {page}"
    assert "agent.health.check_batch" in dom.stdout
    assert "SUCCESS" in dom.stdout
