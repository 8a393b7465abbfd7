"""The README's two commands are the ones CI runs and the ones a new user types; its links are
absolute, so they work on the package index's page too, and each one names a file, directory or
heading that exists in this repository."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SOURCE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Source"]
"""The repository's address: the links into it start with it, followed by /blob/main/ (a file)
or /tree/main/ (a directory)."""


def commands() -> list[str]:
    return re.findall(r"```bash\n(python3 -m venv .*?)\n```", README)


def links() -> list[str]:
    return re.findall(r"\]\(([^)\s]+)\)", README)


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    return {slug(heading) for heading in re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)}


def test_the_readme_gives_two_commands_one_to_try_jobkit_and_one_to_test_it():
    first, second = commands()
    assert first.endswith("examples/quickstart.py")
    assert second.endswith(".venv/bin/pytest")


def test_ci_runs_the_readmes_test_command_word_for_word():
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands()[1] in ci.splitlines()


def test_every_link_is_absolute_or_to_a_heading_of_the_readme():
    relative = [link for link in links() if not link.startswith(("https://", "http://", "#"))]

    assert relative == [], "the package index shows the README without the repository's files"


def test_every_link_into_the_repository_names_what_is_there():
    into_repository = [link for link in links() if link.startswith(SOURCE)]
    assert len(into_repository) > 20  # the docs, the example, the plugin, the changelog

    for link in into_repository:
        kind, path, _, anchor = re.fullmatch(
            rf"{re.escape(SOURCE)}/(blob|tree)/main/([^#]+)(#(.+))?", link
        ).groups()
        target = ROOT / path
        assert target.is_file() if kind == "blob" else target.is_dir(), link
        if anchor:
            assert anchor in anchors(target.read_text()), link


def test_every_link_to_a_heading_of_the_readme_finds_it():
    for link in links():
        if link.startswith("#"):
            assert link[1:] in anchors(README), link
