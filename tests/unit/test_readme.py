import re
from pathlib import Path

from agent.core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def documented_variables() -> set[str]:
    return set(re.findall(r"^\| `(AGENT_[A-Z0-9_]+)` \|", README.read_text(), re.MULTILINE))


def test_every_setting_is_in_the_readme_configuration_table():
    settings = {f"AGENT_{name.upper()}" for name in Settings.model_fields}
    assert documented_variables() == settings


def test_the_readme_opens_with_the_run_and_test_commands():
    opening = README.read_text().split("```")[1]
    assert "infra-agent up" in opening
    assert "pytest" in opening
