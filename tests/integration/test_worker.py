import logging
import time
import uuid

from kombu import Connection

PING = "agent.system.ping"


def publish_ping(app, redis_url: str, serializer: str) -> str:
    """Send agent.system.ping by hand, serialized as asked; return its task id."""
    task_id = str(uuid.uuid4())
    message = app.amqp.as_task_v2(task_id, PING, args=(), kwargs={})
    with Connection(redis_url, transport_options=app.conf.broker_transport_options) as conn:
        conn.Producer().publish(
            message.body,
            exchange="agent",
            routing_key="agent",
            headers=message.headers,
            serializer=serializer,
            **message.properties,
        )
    return task_id


def test_a_real_worker_runs_a_task_sent_by_name_and_reaches_the_database(celery_app, celery_worker):
    answer = celery_app.send_task(PING).get(timeout=30)
    assert answer["pong"] is True
    assert answer["database_ms"] >= 0


def test_the_worker_runs_a_hand_made_json_message(celery_app, celery_worker, redis_url):
    task_id = publish_ping(celery_app, redis_url, "json")
    assert celery_app.AsyncResult(task_id).get(timeout=30)["pong"] is True


def refusals(caplog) -> list[str]:
    """What the worker logged about messages it would not deserialize."""
    return [
        record.getMessage()
        for record in caplog.records
        if "Refusing to deserialize untrusted content of type pickle" in record.getMessage()
    ]


def queued(app, redis_url: str, queue: str = "agent") -> int:
    """Messages waiting in a queue of the test broker."""
    with Connection(redis_url, transport_options=app.conf.broker_transport_options) as conn:
        return conn.default_channel.queue_declare(queue=queue).message_count


def test_the_worker_refuses_a_pickled_message_and_keeps_working(
    celery_app, celery_worker, redis_url, caplog
):
    caplog.set_level(logging.ERROR, logger="celery.worker.consumer")
    task_id = publish_ping(celery_app, redis_url, "pickle")
    deadline = time.monotonic() + 30
    while not refusals(caplog) and time.monotonic() < deadline:
        time.sleep(0.1)
    # The worker received the message (a task it never saw would also be PENDING) and
    # refused it: it is off the queue, the task never ran, and no result was stored.
    assert refusals(caplog), "the worker never said it refused the pickled message"
    assert queued(celery_app, redis_url) == 0
    assert celery_app.send_task(PING).get(timeout=30)["pong"] is True
    assert not celery_app.backend.client.exists(celery_app.backend.get_key_for_task(task_id))
