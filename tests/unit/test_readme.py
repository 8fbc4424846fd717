from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_the_readme_opens_with_the_run_and_test_commands():
    opening = README.read_text().split("```")[1]
    assert "infra-agent up" in opening
    assert "pytest" in opening


def test_the_readme_links_every_generated_reference_page():
    text = README.read_text()
    for page in ("tasks", "settings", "metrics", "connections"):
        assert f"(docs/reference/{page}.md)" in text
