import datetime as dt
import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.benchmarks.batches import Tally, batches, prefetch
from agent.benchmarks.formats import FormatError, detect, read
from agent.benchmarks.formats.google_benchmark import NonFinite
from agent.benchmarks.validation import Validator

DATA = Path(__file__).resolve().parents[1] / "data" / "benchmarks"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ingest(content: bytes, format=None, defaults=None):
    parsed = read(io.BytesIO(content), format)
    validator = Validator({"run_id": "r", **parsed.run_context(defaults or {})}, "t", NOW)
    tally = Tally()
    points = [p for batch in batches(parsed.rows, validator, tally, 7) for p in batch.points]
    return parsed, points, tally


@pytest.mark.parametrize(
    ("file", "format", "counts"),
    [
        ("pytest_benchmark.json", "pytest-benchmark", (32, 2, 0)),
        ("google_benchmark.json", "google-benchmark", (18, 4, 5)),
        ("generic.json", "json", (8, 8, 0)),
        ("generic.csv", "csv", (5, 5, 0)),
    ],
)
def test_each_format_is_detected_and_read_into_points_and_reasons(file, format, counts):
    parsed, points, tally = ingest((DATA / file).read_bytes())
    assert parsed.format == format
    assert (len(points), tally.quarantined, tally.skipped) == counts


def test_google_cv_rows_are_fractions_and_the_mean_stands_for_the_metric():
    _, points, _ = ingest((DATA / "google_benchmark.json").read_bytes())
    by_metric = {(p[3], p[4]): (p[5], p[6]) for p in points}
    assert by_metric[("BM_Decode/4096", "real_time")] == (303.1, "us")
    assert by_metric[("BM_Decode/4096", "real_time_cv")] == (0.0033817, "ratio")
    assert ("BM_Sort", "cpu_coefficient") not in by_metric


def test_pytest_benchmark_rows_take_the_run_context():
    _, points, _ = ingest((DATA / "pytest_benchmark.json").read_bytes())
    stamp, package, _, benchmark, metric, _, unit, _, branch, commit, *_ = points[0]
    assert stamp == dt.datetime(2025, 6, 2, 9, 20, 11, 482193, tzinfo=dt.UTC)
    assert (package, branch, commit[:7]) == ("layer4", "main", "9f1c2ab")
    assert (benchmark.endswith("[small]"), metric, unit) == (True, "min", "s")


def test_json_lines_with_a_broken_line_quarantines_only_that_line():
    lines = [
        json.dumps({"package": "p", "benchmark": "b", "metric": "m", "value": 1, "unit": "ms"}),
        "{broken",
        json.dumps({"package": "p", "benchmark": "b", "metric": "n", "value": 2, "unit": "ms"}),
    ]
    _, points, tally = ingest("\n".join(lines).encode(), defaults={"timestamp": "2025-01-01"})
    assert len(points) == 2
    assert tally.reasons == {"row is not JSON": 1}


@pytest.mark.parametrize(
    "content", [b"", b"   \n", b'{"rows": [1, 2', b"[{]", b'{"run": 3, "rows": []}']
)
def test_a_payload_that_cannot_be_read_raises_format_error(content):
    with pytest.raises(FormatError):
        ingest(content, format="json" if content.strip() else None)


def test_csv_without_a_header_naming_value_is_refused():
    with pytest.raises(FormatError, match="name the columns"):
        ingest(b"1,2,3\n4,5,6\n")


def test_detect_tells_the_formats_apart_by_their_opening():
    assert detect(b'{\n  "context": {') == "google-benchmark"
    assert detect(b'{"machine_info": {}') == "pytest-benchmark"
    assert detect(b'\xef\xbb\xbf[{"value": 1}]') == "json"
    assert detect(b"package,value\n") == "csv"


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def bare_non_finite(value) -> str:
    """JSON as Google Benchmark writes it: NaN and Infinity bare."""
    return json.dumps(value, allow_nan=True)


def as_strings(value):
    if isinstance(value, float) and value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, list):
        return [as_strings(v) for v in value]
    if isinstance(value, dict):
        return {k: as_strings(v) for k, v in value.items()}
    return value


@given(json_values, st.integers(min_value=1, max_value=64))
def test_non_finite_numbers_become_strings_and_nothing_else_changes(value, chunk):
    stream = NonFinite(io.BytesIO(bare_non_finite(value).encode()), chunk=chunk)
    out = b""
    while piece := stream.read(chunk):
        out += piece
    assert json.loads(out) == as_strings(value)


@given(st.lists(st.integers(), max_size=50), st.integers(min_value=1, max_value=4))
def test_prefetch_yields_everything_in_order(items, depth):
    assert list(prefetch(iter(items), depth)) == items


def test_prefetch_raises_the_producers_error_in_order():
    def produce():
        yield 1
        raise FormatError("bad")

    items = prefetch(produce())
    assert next(items) == 1
    with pytest.raises(FormatError, match="bad"):
        next(items)


def test_defaults_beat_what_a_pytest_benchmark_file_only_guesses():
    document = json.loads((DATA / "pytest_benchmark.json").read_text())
    document["commit_info"].update(project="pybench", branch="(unknown)")
    defaults = {"package": "graph/layer4", "branch": "release"}
    _, points, _ = ingest(json.dumps(document).encode(), defaults=defaults)
    _, package, _, _, _, _, _, _, branch, *_ = points[0]
    assert (package, branch) == ("graph/layer4", "release")


def test_a_file_without_git_has_no_branch_rather_than_unknown():
    document = json.loads((DATA / "pytest_benchmark.json").read_text())
    document["commit_info"]["branch"] = "(unknown)"
    _, points, _ = ingest(json.dumps(document).encode())
    assert points[0][8] is None
