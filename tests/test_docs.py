"""The docs stay true: every setting and command is documented."""

from __future__ import annotations

from pathlib import Path

from server.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_env_example():
    text = (ROOT / ".env.example").read_text()
    documented = {line.split("=")[0] for line in text.splitlines() if "=" in line and not line.startswith("#")}
    assert documented == set(SETTINGS)


def test_every_cli_command_is_documented(app):
    text = (ROOT / "docs" / "deployment.md").read_text()
    ours = {
        name for name, cmd in app.cli.commands.items() if getattr(cmd.callback, "__module__", "").startswith("server")
    }
    assert ours
    for name in ours:
        assert f"flask --app wsgi {name}" in text, name


def test_readme_gives_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert "make run" in text and "make test" in text
