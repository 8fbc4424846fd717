"""The type checker's verdict on src/, as CI runs it (`[tool.mypy]` in pyproject.toml)."""

from __future__ import annotations

from pathlib import Path

import pytest
from mypy import api

ROOT = Path(__file__).resolve().parents[2]


# Without .mypy_cache a run costs about 20 s of CPU; on a busy machine that is minutes of wall time.
@pytest.mark.timeout(600)
def test_mypy_finds_no_type_error_in_src(monkeypatch):
    monkeypatch.chdir(ROOT)
    report, errors, exit_code = api.run(["--config-file", str(ROOT / "pyproject.toml")])
    assert exit_code == 0, report + errors
    assert "Success: no issues found" in report
