"""The one exception walker: every way a client library wraps the failure that explains it."""

import pytest

from agent.core.causes import causes

pytestmark = pytest.mark.timeout(10)


class Wrapper(Exception):
    def __init__(self, message, reason=None, errors=None):
        super().__init__(message)
        self.reason = reason
        self.errors = errors


def raised_from(outer, inner):
    try:
        raise outer from inner
    except Exception as exc:
        return exc


def test_the_walker_reads_causes_reasons_args_and_per_address_errors_outermost_first():
    refused, timed_out, dns = ConnectionRefusedError(), TimeoutError(), OSError("dns")
    inner = raised_from(ValueError("inner", dns), refused)
    outer = Wrapper("outer", reason=inner, errors={("::1", 22): timed_out})
    assert list(causes(outer)) == [outer, inner, timed_out, refused, dns]


def test_a_context_hidden_by_raise_from_none_is_read_only_when_asked():
    try:
        try:
            raise ConnectionRefusedError
        except ConnectionRefusedError:
            raise ValueError("shown") from None
    except ValueError as exc:
        shown = exc
    assert [type(e) for e in causes(shown)] == [ValueError, ConnectionRefusedError]
    assert [type(e) for e in causes(shown, suppressed=False)] == [ValueError]


def test_a_chain_that_loops_is_walked_once():
    first, second = ValueError("first"), ValueError("second")
    first.__cause__, second.__cause__ = second, first
    assert list(causes(first)) == [first, second]
