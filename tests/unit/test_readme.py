"""The README's two commands are the ones CI runs and the ones a new user types."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)


def test_the_readme_gives_two_commands_one_to_try_jobkit_and_one_to_test_it():
    first, second = commands()
    assert first.endswith("examples/quickstart.py")
    assert second.endswith(".venv/bin/pytest")


def test_ci_runs_the_readmes_test_command_word_for_word():
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands()[1] in ci.splitlines()
