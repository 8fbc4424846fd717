"""The task contract against the code: names, queues, arguments, checked-in schemas, imports."""

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from agent.api import contract, schemas
from agent.benchmarks.formats import FORMATS
from agent.celery import app
from agent.cli import watch
from agent.core.settings import DEFAULT_QUEUE, JOB_QUEUES

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "docs" / "schemas"
HEAVY = ("sqlalchemy", "psycopg", "paramiko", "docker", "kubernetes", "pydantic", "models", "tasks")


def agent_tasks():
    app.loader.import_default_modules()  # the task modules, as a worker imports them
    return {name: task for name, task in app.tasks.items() if name.startswith("agent.")}


def test_every_task_of_the_worker_has_a_contract_and_every_contract_a_task():
    assert set(agent_tasks()) == set(contract.TASKS)


def test_the_contract_routes_each_task_to_the_queue_the_worker_routes_it_to():
    for name, task in contract.TASKS.items():
        assert app.amqp.router.route({}, name)["queue"].name == task.queue, name


def test_the_contract_knows_the_same_queues_and_formats_as_the_worker():
    assert (contract.JOB_FAMILIES, contract.DEFAULT_QUEUE) == (JOB_QUEUES, DEFAULT_QUEUE)
    assert contract.FORMATS == FORMATS == typing.get_args(contract.Format)


@pytest.mark.parametrize("name", sorted(contract.TASKS))
def test_the_arguments_of_a_contract_are_the_parameters_of_its_task(name):
    task, declared = agent_tasks()[name], contract.TASKS[name].arguments
    params = inspect.signature(task.run).parameters
    assert set(declared.__annotations__) == set(params)
    required = {p for p, v in params.items() if v.default is inspect.Parameter.empty}
    assert declared.__required_keys__ == required


def test_the_checked_in_schemas_are_what_the_code_generates_now(tmp_path):
    schemas.write(tmp_path)
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    checked_in = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert checked_in == generated, "run `infra-agent schemas docs/schemas` and commit the result"


@pytest.mark.parametrize("name", sorted(contract.TASKS))
def test_every_part_of_every_schema_is_a_valid_schema(name):
    doc = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    for part in schemas.PARTS:
        if part in doc:
            Draft202012Validator.check_schema(schemas.part_schema(doc, part))
    assert doc["queue"] == contract.TASKS[name].queue


def test_a_result_with_a_field_the_contract_does_not_know_is_refused():
    doc = schemas.task_schema(contract.TASKS["agent.system.ping"])
    validator = Draft202012Validator(schemas.part_schema(doc, "result"))
    good = {"pong": True, "hostname": "w1", "database_ms": 0.4}
    assert validator.is_valid(good)
    assert not validator.is_valid({**good, "password": "x"})
    assert not validator.is_valid({"pong": True, "hostname": "w1"})


def test_importing_the_client_loads_none_of_the_workers_dependencies():
    code = f"import sys, agent.api.client; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_a_progress_bar_shows_done_of_total_and_a_count_when_the_total_is_unknown():
    assert watch.bar({"done": 5, "total": 10, "unit": "instances"}) == (
        "[" + "#" * 15 + "-" * 15 + "] 5/10 instances"
    )
    assert watch.bar({"done": 12, "total": 10, "unit": "rows"}).startswith("[" + "#" * 30 + "]")
    assert watch.bar({"done": 1200, "total": None, "unit": "rows"}) == "1200 rows"


def test_command_line_arguments_are_json_when_they_parse_and_text_otherwise():
    parsed = watch.arguments(["limit=5", "package=yapkg", 'defaults={"branch": "main"}'])
    assert parsed == {"limit": 5, "package": "yapkg", "defaults": {"branch": "main"}}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        watch.arguments(["limit"])
