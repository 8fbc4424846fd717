"""Pure logic of bounded Kubernetes reading: the item-by-item List decoder and the deadline."""

from __future__ import annotations

import json
import socket
import time

import pytest

from agent.connections.kubeapi import Deadline, Page
from agent.core.results import ErrorClass, ProbeError

pytestmark = pytest.mark.timeout(10)


def decoded(body: bytes) -> tuple[list, str | None]:
    page = Page(body, "list pods")
    return list(page.items()), page.continue_token


def test_a_list_gives_its_items_and_continue_token_wherever_metadata_is():
    items = [{"metadata": {"name": "a"}}, {"metadata": {"name": "b"}}]
    before = {"kind": "PodList", "metadata": {"continue": "tok"}, "items": items}
    after = {"items": items, "apiVersion": "v1", "kind": "PodList", "metadata": {"continue": "t2"}}

    assert decoded(json.dumps(before).encode()) == (items, "tok")
    assert decoded(json.dumps(after, indent=2).encode()) == (items, "t2")
    assert decoded(b'{"kind":"PodList","metadata":{},"items":[]}') == ([], None)
    assert decoded(b'{"kind":"PodList","items":null}') == ([], None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"not json",
        b'{"kind":"PodList","items":[{}],}',
        b'{"kind":"PodList","items":[{},]}',
        b'{"kind":"PodList","items":[1]}',
        b'{"kind":"PodList","items":[{}]} trailing',
        b'{"kind":"PodList","items":[{"a":',
        b'{"kind":"PodList" "items":[]}',
        b'{"kind":"PodList","items":[]}\xff',
    ],
)
def test_what_is_not_json_is_a_protocol_error_that_quotes_nothing(body):
    with pytest.raises(ProbeError) as caught:
        decoded(body)
    assert caught.value.error_class is ErrorClass.PROTOCOL
    assert str(caught.value) == "list pods: the answer is not valid JSON"


@pytest.mark.parametrize("kind", [None, 7, "Pod", "Status"])
def test_json_that_is_not_a_list_is_a_protocol_error(kind):
    with pytest.raises(ProbeError, match="not a List") as caught:
        decoded(json.dumps({"kind": kind, "items": []}).encode())
    assert caught.value.error_class is ErrorClass.PROTOCOL


def test_a_non_string_continue_token_ends_the_list():
    body = json.dumps({"kind": "PodList", "metadata": {"continue": ["x"]}, "items": []})
    assert decoded(body.encode()) == ([], None)


def test_the_deadline_shuts_a_watched_socket_when_it_passes():
    left, right = socket.socketpair()
    deadline = Deadline(0.2)
    deadline.watch(left)
    started = time.monotonic()
    try:
        assert left.recv(1) == b""  # blocked until the deadline shut the socket down
        assert 0.15 < time.monotonic() - started < 1.0
        assert deadline.passed
        with pytest.raises(ProbeError) as caught:
            deadline.remaining()
        assert caught.value.error_class is ErrorClass.TIMEOUT
    finally:
        deadline.cancel()
        left.close()
        right.close()


def test_a_socket_watched_after_the_deadline_fired_is_shut_at_once():
    first, second = socket.socketpair(), socket.socketpair()
    deadline = Deadline(0.05)
    deadline.watch(first[0])  # starts the timer
    assert first[0].recv(1) == b""  # the timer fired
    second[0].settimeout(0.5)
    deadline.watch(second[0])
    try:
        assert second[0].recv(1) == b""
    finally:
        deadline.cancel()
        for sock in (*first, *second):
            sock.close()
