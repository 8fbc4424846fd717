"""The generated reference pages against the code they are generated from."""

from importlib import import_module
from pathlib import Path

import pytest

from agent.cli import reference
from agent.core.settings import Settings
from agent.probes import MODULES

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "docs" / "reference"


def test_the_checked_in_reference_pages_are_what_the_code_generates_now(tmp_path):
    reference.write(tmp_path)
    generated = {p.name: p.read_text() for p in tmp_path.iterdir()}
    checked_in = {p.name: p.read_text() for p in REFERENCE_DIR.glob("*.md")}
    assert checked_in == generated, "run `infra-agent docs` and commit the result"


def test_every_setting_has_a_description():
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []


@pytest.mark.parametrize("connection_type", sorted(MODULES))
def test_every_connection_field_has_a_description(connection_type):
    config = import_module(MODULES[connection_type]).Config
    assert [name for name, field in config.model_fields.items() if not field.description] == []


def test_every_setting_has_a_row_in_the_settings_page():
    page = reference.settings_page()
    missing = [name for name in Settings.model_fields if f"| `AGENT_{name.upper()}` |" not in page]
    assert missing == []


def test_the_connections_page_marks_secret_fields_and_required_ones():
    page = reference.connections_page()
    assert "| `private_key` | string or null | unset |  | yes |" in page
    assert "| `username` | string | required | at least 1 long | no |" in page


def test_a_union_result_names_each_of_its_types_with_a_link():
    from agent.api.contract import CheckSummary, NotChecked

    text = reference.type_text(CheckSummary | NotChecked)
    assert text == "[`CheckSummary`](#checksummary) or [`NotChecked`](#notchecked)"
