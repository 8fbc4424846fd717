import uuid

from sqlalchemy import func, select

from agent.core.settings import get_settings
from models import AgentKnownHost, AuditLog, InfrastructureInstance, InstanceHealthHistory, store
from models.agent import instance_lease
from models.session import session_scope
from tasks import health


def instance(instance_id):
    with session_scope() as session:
        return session.get(InfrastructureInstance, instance_id)


def count(model, instance_id, column="instance_id"):
    with session_scope() as session:
        query = select(func.count()).select_from(model).where(getattr(model, column) == instance_id)
        return session.scalar(query)


def check(instance_id):
    return health.check_now(get_settings(), instance_id, holder=str(uuid.uuid4()))


def test_a_healthy_ssh_instance_is_online_with_its_facts_and_history(
    add_instance, sshd, ssh_config
):
    instance_id = add_instance(
        "ssh", sshd.host, sshd.port, {**ssh_config, "host_key": sshd.host_key}
    )
    summary = check(instance_id)
    row = instance(instance_id)
    assert summary["status"] == row.status == "online"
    assert row.os_type == "linux"
    assert row.resources["cpu"] >= 1
    assert row.resources["memory"]["total_bytes"] > 0
    assert row.health_status["check"]["status"] == "ok"
    assert row.last_health_check is not None
    assert count(InstanceHealthHistory, instance_id) == 1


def test_trust_on_first_use_records_the_host_key_for_the_next_check(add_instance, sshd, ssh_config):
    instance_id = add_instance(
        "ssh", sshd.host, sshd.port, {**ssh_config, "trust_on_first_use": True}
    )
    assert check(instance_id)["status"] == "online"
    with session_scope() as session:
        recorded = session.get(AgentKnownHost, instance_id)
        assert recorded.keyline.split()[:2] == sshd.host_key.split()[:2]
    assert check(instance_id)["status"] == "online"


def test_an_unknown_host_key_without_trust_on_first_use_is_an_error_at_once(
    add_instance, sshd, ssh_config
):
    instance_id = add_instance("ssh", sshd.host, sshd.port, ssh_config)
    summary = check(instance_id)
    assert summary["status"] == "error"
    assert summary["check"]["error_class"] == "host_key"
    assert count(AgentKnownHost, instance_id) == 0


def test_a_closed_port_goes_offline_after_three_failures_and_the_change_is_audited(
    add_instance, closed_port, ssh_config
):
    instance_id = add_instance("ssh", "127.0.0.1", closed_port, ssh_config, status="online")
    statuses = [check(instance_id)["status"] for _ in range(3)]
    assert statuses == ["online", "online", "offline"]
    assert instance(instance_id).health_status["consecutive_failures"] == 3
    assert count(InstanceHealthHistory, instance_id) == 3
    with session_scope() as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.entity_id == instance_id)).one()
    assert audit.changes["before"] == {"status": "online"}
    assert audit.changes["after"] == {"status": "offline"}


def test_an_unknown_connection_type_is_an_error_that_says_so(add_instance):
    instance_id = add_instance("telnet")
    summary = check(instance_id)
    assert summary["status"] == "error"
    assert "unknown connection_type 'telnet'" in summary["check"]["message"]


def test_a_deleted_instance_is_not_checked(add_instance):
    instance_id = add_instance("tcp", deleted_at=store_now())
    assert check(instance_id)["status"] == "not_checked"
    assert count(InstanceHealthHistory, instance_id) == 0


def test_an_instance_being_checked_is_not_checked_twice_at_once(add_instance, closed_port):
    instance_id = add_instance("tcp", port=closed_port)
    with session_scope() as session:
        store.claim_leases(session, [instance_lease(instance_id)], "someone-else", 60)
    assert check(instance_id)["status"] == "not_checked"


def test_a_secret_never_appears_in_the_summary_or_the_database(add_instance, sshd, secret_key):
    canary = "canary-pw-31f9"
    config = {
        "username": sshd.username,
        "password": secret_key.encrypt(canary),
        "host_key": sshd.host_key,
    }
    instance_id = add_instance("ssh", sshd.host, sshd.port, config)
    summary = check(instance_id)
    assert canary not in str(summary)
    with session_scope() as session:
        row = session.get(InfrastructureInstance, instance_id)
        history = session.scalars(
            select(InstanceHealthHistory).where(InstanceHealthHistory.instance_id == instance_id)
        ).all()
    assert canary not in str(row.connection_config) + str(row.health_status)
    assert canary not in str([(h.message, h.details) for h in history])


def store_now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)
