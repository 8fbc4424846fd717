import threading

import pytest

import beat_schedule
from agent.celery import celery_config, check_task_limits, create_app
from agent.core.settings import JOB_QUEUES, ConfigError, Settings
from agent.runtime.schedule import beat_entries


@pytest.fixture
def config():
    return celery_config(Settings(broker_url="redis://127.0.0.1:6379/15"))


def test_only_json_is_accepted_for_messages_and_results(config):
    assert config["accept_content"] == ["json"]
    assert config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == config["result_serializer"] == "json"


def test_delivery_is_at_least_once_with_one_message_prefetched(config):
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True
    assert config["worker_prefetch_multiplier"] == 1


def test_the_broker_reconnects_forever_with_socket_timeouts(config):
    options = config["broker_transport_options"]
    assert config["broker_connection_max_retries"] is None
    assert options["socket_timeout"] > 0
    assert options["socket_keepalive"] is True
    assert config["task_time_limit"] < options["visibility_timeout"]


def test_each_job_family_routes_to_its_own_queue(config):
    for family in JOB_QUEUES:
        assert config["task_routes"][f"agent.{family}.*"] == {"queue": family}


def test_a_message_reaches_exactly_one_queue(config):
    bindings = [(queue.exchange.name, queue.routing_key) for queue in config["task_queues"]]
    assert len(set(bindings)) == len(bindings)


def test_beat_entries_expire_within_their_interval(monkeypatch):
    monkeypatch.setattr(
        beat_schedule,
        "SCHEDULE",
        {"health-sweep": {"task": "agent.health.sweep", "every": "health_interval_s"}},
    )
    entries = beat_entries(Settings(health_interval_s=30))
    entry = entries["health-sweep"]
    assert entry["schedule"] == 30
    assert entry["options"]["expires"] <= entry["schedule"]


def test_every_schedule_entry_names_a_registered_task_and_an_interval_setting():
    app = create_app(Settings())
    app.loader.import_default_modules()
    for entry in beat_schedule.SCHEDULE.values():
        assert entry["task"] in app.tasks
        assert entry["every"].endswith("_interval_s")
        assert hasattr(Settings(), entry["every"])


def test_a_task_whose_time_limit_outlives_the_visibility_timeout_stops_the_worker():
    app = create_app(Settings(visibility_timeout_s=600, task_time_limit_s=500))

    @app.task(name="agent.test.too_long", time_limit=900, shared=False)  # this app only
    def too_long() -> None:
        return None

    with pytest.raises(ConfigError, match="visibility timeout"):
        check_task_limits(app)


UNIX_BROKER = "redis+socket:///var/lib/infra-agent/redis/redis.sock"


def test_a_unix_socket_broker_and_backend_get_no_tcp_keepalive():
    # redis-py's UnixDomainSocketConnection refuses socket_keepalive: a TypeError on every send.
    config = celery_config(Settings(broker_url=UNIX_BROKER))
    assert config["result_backend"] == UNIX_BROKER
    assert config["broker_transport_options"]["socket_keepalive"] is False
    assert config["result_backend_transport_options"]["socket_keepalive"] is False
    assert config["redis_socket_keepalive"] is False


def test_a_tcp_backend_keeps_keepalive_beside_a_unix_socket_broker():
    config = celery_config(
        Settings(broker_url=UNIX_BROKER, result_backend="redis://127.0.0.1:6379/15")
    )
    assert config["result_backend_transport_options"]["socket_keepalive"] is True
    assert config["redis_socket_keepalive"] is True
    assert config["broker_transport_options"]["socket_keepalive"] is False


def test_without_a_broker_nothing_can_reach_celerys_default_amqp():
    config = celery_config(Settings())
    assert not config["broker_url"].startswith("amqp")
    assert config["result_backend"] is None


def test_a_non_redis_broker_gets_no_result_backend_unless_one_is_named():
    config = celery_config(Settings(broker_url="amqp://guest@127.0.0.1:5672//"))
    assert config["result_backend"] is None


def test_workers_consume_celerys_default_queue_for_plain_send_task(config):
    queues = {queue.name: queue for queue in config["task_queues"]}
    assert queues["celery"].routing_key == "celery"
    assert queues["celery"].exchange.name == "celery"


def test_workers_send_the_task_events_flower_shows_and_senders_send_none(config):
    assert config["worker_send_task_events"] is True
    assert config["task_send_sent_event"] is False


def test_every_task_but_the_ping_records_its_started_state():
    app = create_app(Settings())
    app.loader.import_default_modules()
    started = {
        name: task.track_started for name, task in app.tasks.items() if name.startswith("agent.")
    }
    assert started.pop("agent.system.ping") is False
    assert started
    assert all(started.values())


def test_an_app_made_for_another_purpose_does_not_take_the_tasks_away():
    # The tasks are shared_tasks and send through the current app: a second app (a test's,
    # a tool's) must not become it, in this thread or in one that never set an app.
    from agent.celery import app
    from tasks.system import ping

    create_app(Settings(broker_url="redis://127.0.0.1:1/0"))
    seen = []
    thread = threading.Thread(target=lambda: seen.append(ping.app))
    thread.start()
    thread.join()
    assert ping.app is app
    assert seen == [app]
