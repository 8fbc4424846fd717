"""The one exception walker: an exception and everything it wraps.

Client libraries wrap the failure that explains a check several layers deep: as a cause or
a context, as urllib3's `reason`, inside `args` (httpcore), or per address (paramiko's
`NoValidConnectionsError.errors`). Every classifier reads the chain through this walker.
"""

from __future__ import annotations

from collections.abc import Iterator


def causes(exc: BaseException, *, suppressed: bool = True) -> Iterator[BaseException]:
    """`exc` and everything it wraps, outermost first, each once.

    `suppressed=False` leaves out a context hidden by `raise ... from`: a classifier that
    reads the innermost link first then sees only what the raiser chose to show.
    """
    pending, seen = [exc], set()
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending += [x for x in _wrapped(current, suppressed) if isinstance(x, BaseException)]


def _wrapped(exc: BaseException, suppressed: bool) -> tuple[object, ...]:
    context = exc.__context__ if suppressed or not exc.__suppress_context__ else None
    per_address = getattr(exc, "errors", None)  # paramiko's NoValidConnectionsError
    nested = tuple(per_address.values()) if isinstance(per_address, dict) else ()
    return (exc.__cause__, context, getattr(exc, "reason", None), *exc.args, *nested)
