"""The discovery job: reconciliation in the shared schema, plugin matches, the tasks."""

import time
import uuid

import pytest
from sqlalchemy import delete, event, select, update

from agent.core.settings import get_settings
from agent.discovery.base import DiscoveredService
from models import (
    AgentLease,
    InfrastructureInstance,
    InstanceService,
    ServiceManagementAssignment,
    ServiceRegistry,
    User,
    store,
)
from models.session import get_engine, session_scope
from models.store import discovery as discovery_store
from tasks import discovery
from tasks.common import database_now
from tests.support.rows import services_of

pytestmark = pytest.mark.timeout(120)

CONTAINER = "docker_container"


def svc(name, status="running", type_=CONTAINER, **config):
    return DiscoveredService(name, type_, status, config, [{"host": "h", "port": 80}])


def reconcile(instance_id, services, plugins=None):
    with session_scope() as session:
        return discovery_store.reconcile(
            session, instance_id, services, {CONTAINER}, plugins or {}
        ).as_dict()


@pytest.fixture
def instance_id(add_instance):
    return add_instance("docker_api", config={"docker_host": "unix:///nonexistent.sock"})


@pytest.fixture
def make_plugin():
    made = []

    def make(slug, manages, status="approved", **columns):
        plugin = ServiceRegistry(
            name=slug,
            slug=f"{slug}-{uuid.uuid4().hex[:6]}",
            version="1.0",
            provider="test",
            status=status,
            capabilities={"manages": manages},
            **columns,
        )
        with session_scope() as session:
            session.add(plugin)
            session.flush()
            made.append(plugin.id)
        return plugin.id

    yield make
    with session_scope() as session:
        session.execute(
            update(InstanceService)
            .where(InstanceService.management_plugin_id.in_(made))
            .values(management_plugin_id=None)
        )
        session.execute(delete(ServiceRegistry).where(ServiceRegistry.id.in_(made)))


@pytest.fixture
def person():
    user = User(email=f"ops-{uuid.uuid4().hex[:8]}@example.com")
    with session_scope() as session:
        session.add(user)
        session.flush()
    yield user.id
    with session_scope() as session:
        session.execute(
            delete(ServiceManagementAssignment).where(
                ServiceManagementAssignment.assigned_by == user.id
            )
        )
        session.execute(delete(User).where(User.id == user.id))


def test_services_appear_change_disappear_and_reappear(instance_id):
    first = reconcile(instance_id, [svc("a"), svc("b")])
    assert (first["new"], first["updated"], first["missing"]) == (2, 0, 0)
    seen_first = services_of(instance_id)
    assert reconcile(instance_id, [svc("a", "stopped"), svc("b")])["updated"] == 1
    after_change = services_of(instance_id)
    assert after_change["a"].status == "stopped"
    assert after_change["b"].updated_at == seen_first["b"].updated_at
    assert after_change["b"].last_seen > seen_first["b"].last_seen

    gone = reconcile(instance_id, [svc("a", "stopped")])
    assert gone["missing"] == 1
    assert services_of(instance_id)["b"].status == "missing"  # kept, never deleted

    back = reconcile(instance_id, [svc("a", "stopped"), svc("b")])
    assert (back["new"], back["updated"], back["missing"]) == (0, 1, 0)
    final = services_of(instance_id)
    assert final["b"].status == "running"
    assert final["b"].discovered_at == seen_first["b"].discovered_at
    assert final["b"].id == seen_first["b"].id


def test_only_the_types_a_discovery_owns_go_missing(instance_id):
    with session_scope() as session:
        session.add(InstanceService(instance_id=instance_id, name="billing", type="application"))
    reconcile(instance_id, [svc("a")])
    assert services_of(instance_id)["billing"].status == "unknown"


def test_statements_per_reconciliation_do_not_grow_with_services(instance_id):
    counts = []
    for n in (3, 300):
        statements = []

        def count(*_args, statements=statements):
            statements.append(1)

        event.listen(get_engine(), "before_cursor_execute", count)
        try:
            reconcile(instance_id, [svc(f"s{i}") for i in range(n)])
        finally:
            event.remove(get_engine(), "before_cursor_execute", count)
        counts.append(len(statements))
    assert counts[0] == counts[1] <= 5


def test_a_matching_plugin_is_assigned_by_the_agent(instance_id, make_plugin):
    plugin = make_plugin("pg", {"docker_images": ["postgres*"]})
    services = [svc("db", image="postgres:16"), svc("web", image="nginx")]
    done = reconcile(instance_id, services, {("db", CONTAINER): str(plugin)})
    assert (done["matched"], done["assigned"]) == (1, 1)
    db = services_of(instance_id)["db"]
    assert db.management_plugin_id == plugin
    with session_scope() as session:
        assignment = session.scalars(
            select(ServiceManagementAssignment).where(
                ServiceManagementAssignment.instance_service_id == db.id
            )
        ).one()
    assert assignment.plugin_id == plugin
    assert assignment.assigned_by is None
    assert assignment.is_active


def test_the_agent_retires_its_own_assignment_when_the_match_goes(instance_id, make_plugin):
    plugin = make_plugin("pg", {"docker_images": ["postgres*"]})
    reconcile(instance_id, [svc("db")], {("db", CONTAINER): str(plugin)})
    reconcile(instance_id, [svc("db")], {("db", CONTAINER): None})
    db = services_of(instance_id)["db"]
    assert db.management_plugin_id is None
    with session_scope() as session:
        assignment = session.scalars(
            select(ServiceManagementAssignment).where(
                ServiceManagementAssignment.instance_service_id == db.id
            )
        ).one()
    assert assignment.is_active is False  # kept for history, not deleted


def test_an_assignment_a_person_made_is_never_overridden(instance_id, make_plugin, person):
    chosen = make_plugin("chosen-by-ops", {})
    matching = make_plugin("pg", {"docker_images": ["postgres*"]})
    reconcile(instance_id, [svc("db")])
    db = services_of(instance_id)["db"]
    with session_scope() as session:
        session.get(InstanceService, db.id).management_plugin_id = chosen
        session.add(
            ServiceManagementAssignment(
                instance_service_id=db.id, plugin_id=chosen, assigned_by=person
            )
        )
    done = reconcile(instance_id, [svc("db")], {("db", CONTAINER): str(matching)})
    assert (done["assigned"], done["kept_by_people"]) == (0, 1)
    assert services_of(instance_id)["db"].management_plugin_id == chosen
    with session_scope() as session:
        plugins = session.scalars(
            select(ServiceManagementAssignment.plugin_id).where(
                ServiceManagementAssignment.instance_service_id == db.id
            )
        ).all()
    assert plugins == [chosen]


# --- the job, end to end against Podman ---------------------------------------------------


@pytest.fixture
def podman_instance(add_instance, podman_socket, podman_containers):
    return add_instance("docker_api", config={"docker_host": f"unix://{podman_socket}"})


def discover(instance_id):
    return discovery.discover_now(get_settings(), instance_id, holder=str(uuid.uuid4()))


def test_discovering_a_podman_host_records_every_container_and_its_plugin(
    podman_instance, make_plugin
):
    plugin = make_plugin("busybox-keeper", {"docker_images": ["agent-test-busybox"]})
    make_plugin("unapproved", {"docker_images": ["*"]}, status="pending")
    make_plugin("deleted", {"docker_images": ["*"]}, deleted_at=database_now())
    summary = discover(podman_instance)
    assert summary["status"] == "discovered"
    assert summary["new"] == summary["seen"] >= 7
    assert summary["matched"] == summary["seen"]
    recorded = services_of(podman_instance)
    assert recorded["agent-test-exited-3"].status == "error"
    assert recorded["agent-test-web"].endpoints[0]["container_port"] == 80
    assert {r.management_plugin_id for r in recorded.values()} == {plugin}
    again = discover(podman_instance)
    assert (again["new"], again["missing"], again["assigned"]) == (0, 0, 0)


def test_a_failed_discovery_changes_nothing(add_instance, podman_socket, podman_containers):
    instance_id = add_instance("docker_api", config={"docker_host": f"unix://{podman_socket}"})
    discover(instance_id)
    before = {name: (r.status, r.last_seen) for name, r in services_of(instance_id).items()}
    with session_scope() as session:
        row = session.get(InfrastructureInstance, instance_id)
        row.connection_config = {"docker_host": "unix:///nonexistent/podman.sock"}
    summary = discover(instance_id)
    assert summary["status"] == "failed"
    assert summary["discovery"]["error_class"] == "unreachable"
    assert {name: (r.status, r.last_seen) for name, r in services_of(instance_id).items()} == before


def test_an_instance_being_discovered_is_not_discovered_twice(instance_id):
    with session_scope() as session:
        store.claim_leases(session, [discovery.instance_lease(instance_id)], "someone-else", 60)
    assert discover(instance_id)["status"] == "not_discovered"


def test_the_tasks_run_on_a_real_worker(celery_worker, celery_app, podman_instance):
    result = celery_app.send_task("agent.discovery.discover_instance", args=[str(podman_instance)])
    summary = result.get(timeout=60)
    assert summary["status"] == "discovered"
    assert {"new", "updated", "missing", "matched"} <= summary.keys()
    bad = celery_app.send_task("agent.discovery.discover_instance", args=["not-a-uuid"])
    with pytest.raises(Exception, match="instance_id must be a UUID string"):
        bad.get(timeout=30)


def leased(name):
    with session_scope() as session:
        return session.get(AgentLease, name) is not None


def test_the_sweep_sends_each_instance_once_and_never_overlaps(celery_worker, podman_instance):
    with session_scope() as session:
        session.execute(delete(AgentLease).where(AgentLease.name == discovery.SWEEP_LEASE))
    first = discovery.run_sweep(get_settings(), holder=str(uuid.uuid4()))
    assert first["dispatched"] >= 1
    assert set(first["queues"]) == {"discovery"}
    second = discovery.run_sweep(get_settings(), holder=str(uuid.uuid4()))
    assert second == {"dispatched": 0, "skipped": "another sweep ran within this interval"}
    deadline = time.monotonic() + 60
    while leased(discovery.instance_lease(podman_instance)) and time.monotonic() < deadline:
        time.sleep(0.2)  # the batch runs on the worker and gives the lease back
    assert not leased(discovery.instance_lease(podman_instance))
    assert services_of(podman_instance)["agent-test-running"].status == "running"
