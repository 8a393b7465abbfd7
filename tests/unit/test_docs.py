"""The hook reference is generated and current, and every hook spec follows the docstring and
naming format that generation relies on (STYLE.md, "Hooks"); the plugin guide's snippets define or
import every name they use; the command reference lists every command and every migration."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_gen_hooks() -> ModuleType:
    # docs/ is not a package: import the generator by path. It must be in sys.modules while it
    # executes, or its dataclasses cannot resolve their own module.
    path = ROOT / "docs" / "gen_hooks.py"
    spec = importlib.util.spec_from_file_location("jobkit_docs_gen_hooks", path)
    assert spec is not None and spec.loader is not None, f"cannot import {path}"
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


gen_hooks = load_gen_hooks()
HOOKS = gen_hooks.collect_hooks()

# The four name shapes of STYLE.md, checked against each hook's declared kind. Providers
# (jobkit_<noun>) and actions (jobkit_<verb>) cannot be told apart by spelling, so for them the
# check is only that they do not wear another kind's shape.
CONTRIBUTION_PREFIXES = ("jobkit_register_", "jobkit_add_", "jobkit_configure_")
EVENT_SUFFIX = "ed"  # jobkit_<subject>_<past participle>
DECLARED_NAMES = {"jobkit_settings_defaults": "contribution"}
GENERIC_NAMES = ("jobkit_handle", "jobkit_on_", "jobkit_process")


def name_problem(name: str, kind: str) -> str | None:
    """Why ``name`` does not fit the name shape of ``kind``, or None when it does."""
    if not name.startswith("jobkit_"):
        return "does not start with jobkit_"
    if name.startswith(GENERIC_NAMES):
        return "uses a generic verb (handle, on_..., process)"
    if name in DECLARED_NAMES:
        expected = DECLARED_NAMES[name]
        return None if kind == expected else f"is declared a {expected}, but Kind says {kind!r}"
    contribution = name.startswith(CONTRIBUTION_PREFIXES)
    event = name.endswith(EVENT_SUFFIX) and name.count("_") >= 2
    if kind == "contribution":
        return (
            None if contribution else f"contribution not named {'/'.join(CONTRIBUTION_PREFIXES)}*"
        )
    if kind == "event":
        return None if event else "event not named jobkit_<subject>_<past participle> (…ed)"
    if kind in ("provider", "action"):
        if contribution:
            return f"{kind} named like a contribution"
        if event:
            return f"{kind} named like an event (ends in {EVENT_SUFFIX!r})"
        return None
    return f"unknown Kind {kind!r}; expected one of {', '.join(gen_hooks.KINDS)}"


def test_hooks_md_is_current() -> None:
    hooks_md = ROOT / "docs" / "hooks.md"
    assert hooks_md.exists(), f"docs/hooks.md is missing: run `{gen_hooks.REGENERATE}`"
    assert hooks_md.read_text(encoding="utf-8") == gen_hooks.render(), (
        f"docs/hooks.md is stale: run `{gen_hooks.REGENERATE}` and commit the result"
    )


def test_check_mode_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "hooks.md"
    monkeypatch.setattr(gen_hooks, "HOOKS_MD", stale)
    monkeypatch.setattr(gen_hooks, "ROOT", tmp_path)
    stale.write_text("# old\n", encoding="utf-8")
    assert gen_hooks.main(["--check"]) == 1
    assert gen_hooks.main([]) == 0
    assert gen_hooks.main(["--check"]) == 0


def test_every_hook_is_found() -> None:
    assert HOOKS, "no hook specs found in jobkit.hookspecs"
    assert all(hook.group != "General" for hook in HOOKS), (
        "every hook should sit under a '# Group ----' banner in hookspecs.py"
    )


def test_docstrings_follow_the_format() -> None:
    problems = []
    for hook in HOOKS:
        doc = hook.docstring
        where = f"{hook.name}:"
        problems += [f"{where} {problem}" for problem in doc.problems]
        if not doc.summary:
            problems.append(f"{where} no summary")
        for label in ("Kind", "Called", "Added"):
            if not doc.fields.get(label):
                problems.append(f"{where} no '{label}:' line")
        for name in hook.argnames:
            if name not in doc.params:
                problems.append(f"{where} no ':param {name}:' line")
        for name in doc.params:
            if name not in hook.argnames:
                problems.append(f"{where} ':param {name}:' but the hook has no argument {name!r}")
    assert not problems, "hook docstrings not in the format of STYLE.md:\n" + "\n".join(problems)


def test_kind_agrees_with_the_spec() -> None:
    problems = []
    for hook in HOOKS:
        kind_text = hook.docstring.fields.get("Kind", "")
        if hook.kind not in gen_hooks.KINDS:
            problems.append(f"{hook.name}: Kind {hook.kind!r} is not one of {gen_hooks.KINDS}")
        if ("firstresult" in kind_text) != hook.firstresult:
            problems.append(
                f"{hook.name}: spec firstresult={hook.firstresult}, Kind says {kind_text!r}"
            )
        if ("historic" in kind_text) != hook.historic:
            problems.append(f"{hook.name}: spec historic={hook.historic}, Kind says {kind_text!r}")
    assert not problems, "\n".join(problems)


def test_hook_names_follow_the_naming_shapes() -> None:
    offenders = [
        f"{hook.name} ({hook.kind}): {problem}"
        for hook in HOOKS
        if (problem := name_problem(hook.name, hook.kind))
    ]
    assert not offenders, "hook names that do not say how the hook is called:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    ("name", "kind", "ok"),
    [
        ("jobkit_store", "provider", True),
        ("jobkit_run_job", "action", True),
        ("jobkit_register_jobs", "contribution", True),
        ("jobkit_settings_defaults", "contribution", True),
        ("jobkit_job_finished", "event", True),
        ("jobkit_job_finish", "event", False),
        ("jobkit_jobs", "contribution", False),
        ("jobkit_add_thing", "provider", False),
        ("jobkit_handle_job", "action", False),
        ("store", "provider", False),
        ("jobkit_store", "hook", False),
    ],
)
def test_name_problem(name: str, kind: str, ok: bool) -> None:
    assert (name_problem(name, kind) is None) is ok


# The plugin guide and the command reference -------------------------------------------------------


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


@pytest.mark.parametrize(
    "block", python_blocks((ROOT / "docs" / "plugins.md").read_text(encoding="utf-8"))
)
def test_the_plugin_guides_snippets_use_no_undefined_name(block: str) -> None:
    # Authors copy these: each block imports or defines what it uses (ruff's F821).
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--select", "F821", "--output-format", "concise", "-"],
        input=block,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_the_command_reference_lists_every_command_and_every_migration() -> None:
    from jobkit.cli import cli

    cli_md = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| \[`([\w-]+)`\]\(#jobkit-\1\) \|", cli_md, flags=re.MULTILINE)
    # The core commands, and the built-in scheduler's (it is a plugin's command).
    assert sorted(listed) == sorted({*cli.commands, "schedule"})
    migrations = sorted(
        path.stem
        for path in (ROOT / "src" / "jobkit" / "builtin" / "postgres" / "sql" / "migrations").glob(
            "*.sql"
        )
    )
    plural = "migration" if len(migrations) == 1 else "migrations"
    assert f"applied {len(migrations)} {plural} to schema jobkit: {', '.join(migrations)}" in cli_md
