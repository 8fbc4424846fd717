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


def test_the_worker_refuses_a_pickled_message_and_keeps_working(
    celery_app, celery_worker, redis_url
):
    task_id = publish_ping(celery_app, redis_url, "pickle")
    time.sleep(2)
    assert celery_app.AsyncResult(task_id).state == "PENDING"
    assert celery_app.send_task(PING).get(timeout=30)["pong"] is True
