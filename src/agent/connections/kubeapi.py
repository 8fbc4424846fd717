"""Bounded reading from a Kubernetes API server: one deadline, capped bodies, paged lists.

Every GET of a check runs against one absolute `Deadline`. urllib3's timeouts bound each
socket operation, not a request: a server dripping headers or a body a byte at a time
would never trip them. So every socket a client opens is registered with the deadline,
which shuts it down when the budget is spent (a timer), and a body is read in chunks,
abandoned past its byte cap or the deadline. Lists are paged with `limit` and `continue`,
within a cap on pages and items; a `continue` token that expired (410 Gone, after an etcd
compaction) restarts the list once, from the first page.

Errors: 401 is `auth`; 403 is `Forbidden` (also `auth`, but the caller may keep what it
could read); other HTTP errors, invalid JSON and oversized bodies are `protocol`.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

import urllib3
from kubernetes.client import ApiClient

from agent.core.results import ErrorClass, ProbeError

CHUNK_BYTES = 64 * 1024
SMALL_BODY_BYTES = 256 * 1024  # /readyz and /version answer in a few hundred bytes
_T = TypeVar("_T")


class Forbidden(ProbeError):
    """HTTP 403: the credentials are valid but may not read this resource."""

    def __init__(self, message: str, resource: str) -> None:
        super().__init__(ErrorClass.AUTH, message)
        self.resource = resource


class Gone(ProbeError):
    """HTTP 410 on a `continue` token: the list's snapshot was compacted away."""


class Deadline:
    """One check's absolute budget, enforced on every socket its clients open."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self._ends = time.monotonic() + budget_s
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._timer: threading.Timer | None = None
        self._fired = False

    @property
    def passed(self) -> bool:
        """Whether the budget is spent."""
        return time.monotonic() >= self._ends

    def remaining(self) -> float:
        """Seconds left; a `ProbeError(TIMEOUT)` once there are none."""
        left = self._ends - time.monotonic()
        if left <= 0:
            raise self.error()
        return left

    def error(self) -> ProbeError:
        """The error of a spent budget."""
        return ProbeError(ErrorClass.TIMEOUT, f"the check took more than {self.budget_s:g}s")

    def watch(self, sock: socket.socket) -> None:
        """Shut `sock` down when the budget is spent (at once if it already is)."""
        with self._lock:
            self._sockets.append(sock)
            if self._timer is None and not self._fired:
                left = max(0.0, self._ends - time.monotonic())
                self._timer = threading.Timer(left, self._fire)
                self._timer.daemon = True
                self._timer.start()
            fired = self._fired
        if fired:
            _shut(sock)

    def _fire(self) -> None:
        with self._lock:
            self._fired, sockets = True, list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def cancel(self) -> None:
        """Stop the timer: the check is over."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._sockets.clear()


def _shut(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by its owner
        sock.shutdown(socket.SHUT_RDWR)


def watch_sockets(api: ApiClient, deadline: Deadline) -> None:
    """Make every HTTPS connection `api` opens register its socket with `deadline`."""

    class Connection(urllib3.connection.HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            deadline.watch(sock)  # bounds the TLS handshake
            return sock

        def connect(self) -> None:
            super().connect()
            deadline.watch(self.sock)  # the TLS socket took over the plain one's descriptor

    class Pool(urllib3.HTTPSConnectionPool):
        ConnectionCls = Connection

    manager = api.rest_client.pool_manager
    manager.pool_classes_by_scheme = {**manager.pool_classes_by_scheme, "https": Pool}


# --- reading -----------------------------------------------------------------------------


def read_capped(response: Any, cap: int, deadline: Deadline, what: str) -> bytearray:
    """The whole body of a urllib3 `response`, or a PROTOCOL error past `cap` bytes."""
    body = bytearray()
    while chunk := response.read1(CHUNK_BYTES):
        body += chunk
        if len(body) > cap:
            raise ProbeError(ErrorClass.PROTOCOL, f"{what}: response larger than {cap} bytes")
        if deadline.passed:
            raise deadline.error()
    return body  # not copied to bytes: a page may be megabytes


def parse_json(body: bytes | bytearray, what: str) -> Any:
    """A JSON document, or a PROTOCOL error that quotes none of it."""
    try:
        return json.loads(body)
    except ValueError:
        raise ProbeError(ErrorClass.PROTOCOL, f"{what}: the answer is not valid JSON") from None


@dataclass(frozen=True)
class Answer:
    """The status and (capped) body of one GET."""

    status: int
    body: bytes | bytearray


def get(api: ApiClient, path: str, deadline: Deadline, cap: int, query=()) -> Answer:
    """GET `path` within `deadline`, its body read up to `cap` bytes."""
    request = api.param_serialize(
        "GET", path, query_params=list(query), auth_settings=["BearerToken"]
    )
    response = api.call_api(*request, _request_timeout=deadline.remaining())
    raw = response.response
    try:
        return Answer(response.status, read_capped(raw, cap, deadline, f"GET {path}"))
    finally:
        raw.release_conn() if raw.isclosed() else raw.close()


def status_error(
    answer: Answer, what: str, resource: str = "", continued: bool = False
) -> ProbeError:
    """The error of a non-2xx answer, with the Status message the server gave."""
    message = f"{what}: HTTP {answer.status}" + status_message(answer.body)
    if answer.status == 403:
        return Forbidden(message, resource or what)
    if answer.status == 410 and continued:
        return Gone(ErrorClass.PROTOCOL, message)
    error_class = ErrorClass.AUTH if answer.status == 401 else ErrorClass.PROTOCOL
    return ProbeError(error_class, message)


def status_message(body: Any) -> str:
    """`: <message>` of a Kubernetes Status body, or nothing."""
    try:
        message = json.loads(body).get("message")
    except (TypeError, ValueError, AttributeError):
        return ""
    return f": {message[:200]}" if isinstance(message, str) and message else ""


# --- lists -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How a List is read: items per page, and caps on bytes per page, pages and items."""

    page_size: int = 500
    max_page_bytes: int = 16 * 1024 * 1024
    max_items: int = 100_000

    @property
    def max_pages(self) -> int:
        """Enough pages for `max_items` at `page_size`, and one more."""
        return self.max_items // self.page_size + 1


@dataclass(frozen=True)
class Listing:
    """One List to read: the API path, the resource it names, and how errors call it."""

    path: str
    resource: str
    what: str


class Page:
    """One List page, decoded item by item so that a huge page can be given up in between.

    `json.loads` of a 20 MB page holds the interpreter for seconds and builds every item at
    once; here the top-level object is walked key by key and each item decoded on its own
    (still by the C decoder). `kind` and `continue_token` are known once `items()` is done.
    """

    _DECODER = json.JSONDecoder()
    _SPACE = re.compile(r"[ \t\n\r]*")

    def __init__(self, body: bytes | bytearray, what: str) -> None:
        self.what = what
        self.kind: Any = None
        self.continue_token: str | None = None
        try:
            self._text = body.decode()
        except UnicodeDecodeError:
            raise self._invalid() from None

    def _invalid(self) -> ProbeError:
        return ProbeError(ErrorClass.PROTOCOL, f"{self.what}: the answer is not valid JSON")

    def items(self) -> Iterator[Mapping[str, Any]]:
        """Every item, decoded one at a time; then `kind` and `continue_token` are set."""
        try:
            yield from self._object()
        except (ValueError, IndexError):  # JSONDecodeError is a ValueError
            raise self._invalid() from None
        if not isinstance(self.kind, str) or not self.kind.endswith("List"):
            raise ProbeError(ErrorClass.PROTOCOL, f"{self.what}: the answer is not a List")

    def _skip(self, pos: int) -> int:
        space = self._SPACE.match(self._text, pos)
        return space.end() if space else pos

    def _expect(self, pos: int, char: str) -> int:
        if self._text[pos] != char:
            raise ValueError(f"expected {char!r}")
        return self._skip(pos + 1)

    def _after_member(self, pos: int, close: str) -> int:
        """Past the `,` after a member or item, or at the `close` that ends them."""
        pos = self._skip(pos)
        if self._text[pos] == ",":
            pos = self._skip(pos + 1)
            if self._text[pos] == close:
                raise ValueError("a trailing comma")
        elif self._text[pos] != close:
            raise ValueError(f"expected ',' or {close!r}")
        return pos

    def _object(self) -> Generator[Mapping[str, Any], None, None]:
        pos = self._expect(self._skip(0), "{")
        while self._text[pos] != "}":
            key, pos = self._DECODER.raw_decode(self._text, pos)
            pos = self._expect(self._skip(pos), ":")
            if key == "items" and self._text[pos] == "[":
                pos = yield from self._items(pos)
            else:
                value, pos = self._DECODER.raw_decode(self._text, pos)
                self._keep(key, value)
            pos = self._after_member(pos, "}")
        if self._skip(pos + 1) != len(self._text):
            raise ValueError("data after the List")

    def _items(self, pos: int) -> Generator[Mapping[str, Any], None, int]:
        pos = self._expect(pos, "[")
        while self._text[pos] != "]":
            item, pos = self._DECODER.raw_decode(self._text, pos)
            if not isinstance(item, dict):
                raise ValueError("an item is not an object")
            yield item
            pos = self._after_member(pos, "]")
        return pos + 1

    def _keep(self, key: str, value: Any) -> None:
        if key == "kind":
            self.kind = value
        elif key == "metadata" and isinstance(value, dict):
            token = value.get("continue")
            self.continue_token = token if isinstance(token, str) and token else None


def _page(api, listing: Listing, deadline: Deadline, limits: Limits, token: str | None) -> Page:
    query = [("limit", limits.page_size), *([("continue", token)] if token else [])]
    answer = get(api, listing.path, deadline, limits.max_page_bytes, query)
    if answer.status != 200:
        raise status_error(answer, listing.what, listing.resource, continued=bool(token))
    return Page(answer.body, listing.what)


def _fold_once(api, listing: Listing, deadline: Deadline, limits: Limits, start, step):
    acc, count, token = start(), 0, None
    for _ in range(limits.max_pages):
        page = _page(api, listing, deadline, limits, token)
        for item in page.items():
            count += 1
            if count > limits.max_items:
                raise ProbeError(
                    ErrorClass.PROTOCOL, f"{listing.what}: more than {limits.max_items} items"
                )
            if deadline.passed:  # a huge page takes time to decode and judge
                raise deadline.error()
            acc = step(acc, item)
        token = page.continue_token
        if token is None:
            return acc
    raise ProbeError(ErrorClass.PROTOCOL, f"{listing.what}: more than {limits.max_pages} pages")


def fold_list(
    api: ApiClient,
    listing: Listing,
    deadline: Deadline,
    limits: Limits,
    start: Callable[[], _T],
    step: Callable[[_T, Mapping[str, Any]], _T],
) -> _T:
    """`step` over every item of a List from `start()`; restarted once on 410 Gone."""
    try:
        return _fold_once(api, listing, deadline, limits, start, step)
    except Gone:
        pass  # the snapshot was compacted: every page again, from a new one
    try:
        return _fold_once(api, listing, deadline, limits, start, step)
    except Gone as exc:
        message = f"{exc} (again after restarting the list once)"
        raise ProbeError(ErrorClass.PROTOCOL, message) from None


@contextmanager
def bounded(deadline: Deadline) -> Iterator[None]:
    """Whatever fails inside the block after the deadline passed is a TIMEOUT."""
    try:
        yield
    except Exception as exc:
        if deadline.passed and not _is_config(exc):  # a socket the deadline shut, or late
            raise deadline.error() from exc
        raise


def _is_config(exc: BaseException) -> bool:
    return isinstance(exc, ProbeError) and exc.error_class is ErrorClass.CONFIG
