"""Property-based tests of the benchmark readers and validation, without a database.

The documented failures are `FormatError` (a payload that cannot be read: stores nothing) and
`Invalid` (a row that cannot be stored: quarantined with its reason). Whatever bytes arrive,
nothing else may escape; rows that can be generated in a format come back out unchanged.
"""

import csv
import datetime as dt
import io
import json
import math
from collections import Counter

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from agent.benchmarks.batches import Tally, batches
from agent.benchmarks.formats import FORMATS, MAX_DEPTH, FormatError, read
from agent.benchmarks.formats.google_benchmark import NonFinite
from agent.benchmarks.formats.pytest_benchmark import METRICS
from agent.benchmarks.units import UNITS
from agent.benchmarks.validation import Validator
from models.store.benchmarks import raw_text

LATEST = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
FIELDS = ["package", "benchmark", "metric", "value", "unit", "timestamp", "parameters", "run_id"]
KEYS = [*FIELDS, "rows", "run", "benchmarks", "stats", "context", "commit_info", "name", "mean"]
DEEP = 100_000


def store_offline(data: bytes, format: str | None) -> tuple[list[tuple], Tally]:
    """What the ingest task does with a payload short of the database: the points, the tally.

    Refused rows are turned into the text quarantine keeps, as the store would.
    """
    parsed = read(io.BytesIO(data), format)
    validator = Validator(parsed.run_context({"run_id": "run-1"}), parsed.format, LATEST)
    tally, points = Tally(), []
    for batch in batches(parsed.rows, validator, tally, 50):
        points += batch.points
        for rejection in batch.rejected:
            assert isinstance(raw_text(rejection.original), str)
    return points, tally


def survives(data: bytes, format: str | None) -> None:
    """Storing `data` ends with a tally or a FormatError, nothing else."""
    try:
        store_offline(data, format)
    except FormatError as exc:
        message = str(exc)
        assert message


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=25,
)
formats = st.sampled_from([None, *FORMATS])


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


@given(st.binary(max_size=400), formats)
@example(b"\x00\xff\xfe" * 10, None)
@example(b"value\n\xff\xfe\n", "csv")
@example(b'{"rows": [' + nested(DEEP).encode() + b"]}", None)
@example(b'{"x": ' + nested(DEEP).encode() + b"}", "json")
@example(nested(DEEP).encode(), "google-benchmark")
def test_arbitrary_bytes_are_read_or_refused_with_a_format_error(data, format):
    """No byte string makes a reader or the validation raise anything undocumented."""
    survives(data, format)


@given(json_values, formats, st.sampled_from(["document", "lines", "google", "pytest"]))
def test_arbitrary_json_is_read_or_refused_with_a_format_error(value, format, shape):
    """JSON of any shape, in any envelope a reader knows, gives rows, reasons or a FormatError."""
    envelopes = {
        "document": lambda v: {"run": v, "rows": v if isinstance(v, list) else [v]},
        "lines": lambda v: "\n".join(
            json.dumps(item) for item in (v if isinstance(v, list) else [v])
        ),
        "google": lambda v: {"context": v, "benchmarks": [v]},
        "pytest": lambda v: {"machine_info": {}, "commit_info": v, "benchmarks": [v]},
    }
    wrapped = envelopes[shape](value)
    text = wrapped if isinstance(wrapped, str) else json.dumps(wrapped)
    survives(text.encode(), format)


@given(st.sampled_from(FIELDS), st.sampled_from([None, "json", "pytest-benchmark"]))
def test_json_nested_beyond_the_limit_is_refused_before_it_is_parsed(field, format):
    """100,000 levels of brackets (200 KB) are refused unparsed: parsing would take gigabytes."""
    data = f'{{"rows": [{{"{field}": {nested(DEEP, "{}")}}}]}}'.encode()
    with pytest.raises(FormatError, match=f"nested deeper than {MAX_DEPTH} levels"):
        store_offline(data, format)


@given(st.integers(0, MAX_DEPTH - 3), st.text('[]{}\\"', max_size=20))
def test_brackets_inside_strings_neither_count_nor_hide_depth(depth, decoy):
    """Only structure counts: a row nested within the limit is read whatever its strings hold."""
    parameters = json.dumps({"decoy": decoy, "deep": json.loads(nested(depth, "{}"))})
    row = {"package": "p", "benchmark": "b", "metric": "m", "value": 1, "unit": "s"}
    data = json.dumps([{**row, "timestamp": "2024-01-01T00:00:00Z", "parameters": parameters}])
    points, _ = store_offline(data.encode(), None)
    assert json.loads(points[0][11])["decoy"] == decoy


def test_a_csv_cell_of_deeply_nested_parameters_is_a_quarantined_row():
    """CSV is not depth-checked; a `parameters` cell deeper than Python's recursion is refused."""
    header = "package,benchmark,metric,value,unit,timestamp,parameters"
    data = f'{header}\np,b,m,1,s,2024-01-01,"{nested(5000, "{}")}"\n'.encode()
    points, tally = store_offline(data, "csv")
    assert points == []
    assert "parameters are nested too deeply" in tally.reasons


names = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s
)
stamps = st.datetimes(
    min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(dt.UTC)
)
rows = st.fixed_dictionaries(
    {
        "package": names,
        "benchmark": names,
        "metric": names,
        "value": st.floats(min_value=0, max_value=1e15),
        "unit": st.sampled_from(sorted(UNITS)),
        "timestamp": stamps.map(dt.datetime.isoformat),
    }
)


def points_of(data: bytes, format: str | None) -> list[tuple]:
    """The points `data` gives, in order; every row must be accepted."""
    points, tally = store_offline(data, format)
    assert tally.quarantined == 0, tally.reasons
    return points


def expected(row: dict, source: str) -> tuple:
    stamp = dt.datetime.fromisoformat(row["timestamp"])
    return (stamp, row["package"], None, row["benchmark"], row["metric"], row["value"],
            row["unit"], "run-1", None, None, "", None, source)  # fmt: skip


def as_csv(generated: list[dict]) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(generated[0]) if generated else ["value"])
    writer.writeheader()
    writer.writerows({**r, "value": repr(r["value"])} for r in generated)
    return out.getvalue().encode()


def as_document(generated: list[dict]) -> bytes:
    """The generic document, the package said once in `run` instead of in every row."""
    package = generated[0]["package"] if generated else "p"
    same = all(r["package"] == package for r in generated)
    rows_ = [{k: v for k, v in r.items() if k != "package" or not same} for r in generated]
    return json.dumps({"run": {"package": package}, "rows": rows_}).encode()


ENCODINGS = {
    "array": lambda g: json.dumps(g).encode(),
    "lines": lambda g: "".join(json.dumps(r) + "\n" for r in g).encode(),
    "document": as_document,
    "csv": as_csv,
}


@given(st.lists(rows, min_size=1, max_size=8), st.sampled_from(sorted(ENCODINGS)), st.booleans())
def test_generic_rows_come_back_unchanged_in_every_encoding(generated, encoding, detect):
    """Rows written as a JSON array, JSON Lines, a document or CSV are read back as they were."""
    data = ENCODINGS[encoding](generated)
    format = None if detect else ("csv" if encoding == "csv" else "json")
    source = "csv" if encoding == "csv" else "json"
    assert points_of(data, format) == [expected(r, source) for r in generated]


stats = st.dictionaries(
    st.sampled_from(sorted(METRICS)), st.floats(min_value=0, max_value=1e9), min_size=1
)


@given(st.lists(st.tuples(names, stats), min_size=1, max_size=5), stamps, names)
def test_pytest_benchmark_stats_become_one_point_per_metric(entries, stamp, project):
    """Every known stat of every benchmark is one point, in the stat's unit, at the run's time."""
    document = {
        "machine_info": {},
        "commit_info": {"project": project, "branch": "main", "id": "abc"},
        "datetime": stamp.isoformat(),
        "benchmarks": [{"name": n, "fullname": n, "stats": s} for n, s in entries],
    }
    points = points_of(json.dumps(document).encode(), None)
    want = [(n, m, s[m], METRICS[m]) for n, s in entries for m in METRICS if m in s]
    assert [(p[3], p[4], p[5], p[6]) for p in points] == want
    assert {(p[0], p[1], p[8], p[9]) for p in points} <= {(stamp, project, "main", "abc")}


times = st.floats(min_value=0, max_value=1e9) | st.sampled_from(["NaN", "Infinity", "-Infinity"])


@given(st.lists(st.tuples(names, times, times), min_size=1, max_size=5), stamps)
def test_google_benchmark_times_are_kept_and_bare_non_finite_numbers_refused(entries, stamp):
    """Finite real and CPU times become points; a bare NaN or Infinity is a refused row only."""
    body = ",".join(
        f'{{"name": {json.dumps(n)}, "run_type": "iteration", "iterations": 1, '
        f'"time_unit": "ns", "real_time": {real}, "cpu_time": {cpu}}}'
        for n, real, cpu in entries
    )
    context = json.dumps({"date": stamp.isoformat(), "package": "p"})
    data = f'{{"context": {context}, "benchmarks": [{body}]}}'.encode()
    points, tally = store_offline(data, None)
    values = [v for _, real, cpu in entries for v in (real, cpu)]
    assert [p[5] for p in points] == [v for v in values if not isinstance(v, str)]
    assert (
        tally.reasons
        == Counter({"value is not a finite number": sum(isinstance(v, str) for v in values)})
        - Counter()
    )


bare_tokens = st.lists(
    st.sampled_from(['"NaN"', "NaN", "-Infinity", '"a\\"NaN"', "1.5", ",", "[", "]", " "])
    | st.text(max_size=4),
    max_size=40,
).map("".join)


@given(bare_tokens, st.integers(1, 64))
def test_non_finite_rewriting_does_not_depend_on_where_reads_are_cut(text, chunk):
    """Reading NaN-bearing JSON in chunks of any size rewrites it exactly as reading it whole."""
    data = text.encode()
    assert drain(data, chunk) == drain(data, 1 << 20)


@given(json_values, st.integers(1, 64))
def test_non_finite_numbers_become_strings_and_everything_else_stays(value, chunk):
    """JSON with bare NaN/Infinity, read through NonFinite, is strict JSON: those as strings."""
    data = json.dumps(value, allow_nan=True).encode()
    assert json.loads(drain(data, chunk), parse_constant=_refuse) == _non_finite_as_text(value)


def drain(data: bytes, chunk: int) -> bytes:
    """Everything NonFinite makes of `data`, read `chunk` bytes at a time."""
    stream, parts = NonFinite(io.BytesIO(data), chunk=chunk), []
    while part := stream.read(chunk):
        parts.append(part)
    return b"".join(parts)


def _refuse(token: str) -> None:
    raise AssertionError(f"bare {token} left in the stream")


def _non_finite_as_text(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list):
        return [_non_finite_as_text(v) for v in value]
    if isinstance(value, dict):
        return {k: _non_finite_as_text(v) for k, v in value.items()}
    return value
