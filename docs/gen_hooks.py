"""Render docs/hooks.md, the hook reference, from the specs and docstrings in jobkit.hookspecs.

``python docs/gen_hooks.py`` rewrites docs/hooks.md; ``python docs/gen_hooks.py --check`` exits 1
when it is stale. tests/unit/test_docs.py imports this file by path and runs the same comparison.

The hook specs are the only copy of the contract: everything here is read from them through
pluggy's public API and ``inspect``, including the groups, which are the banner comments
(``# Store ----``) of the module source.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

import jobkit.hookspecs

ROOT = Path(__file__).resolve().parent.parent
HOOKS_MD = ROOT / "docs" / "hooks.md"
SPEC_SOURCE = "src/jobkit/hookspecs.py"
REGENERATE = "python docs/gen_hooks.py"

# The labelled lines at the end of a hook docstring, in the order they are rendered. A label may
# also start mid-line ("Kind: event (all). Called: in the producer ...").
FIELD_LABELS = ("Kind", "Built-in", "Called", "Added", "Changed", "Deprecated")
KINDS = ("provider", "action", "contribution", "event")

_BANNER = re.compile(r"^#\s+(?P<title>[A-Za-z][^-]*?)\s+-{4,}\s*$")
_PARAM = re.compile(r"^:param\s+(?P<name>\w+)\s*:\s*(?P<text>.*)$")
_RETURNS = re.compile(r"^:returns?:\s*(?P<text>.*)$")
_OTHER_FIELD = re.compile(r"^:\w[^:]*:")  # :type x:, :rtype:, a misspelt :parm x: ...
_FIELD_START = re.compile(rf"^(?:{'|'.join(map(re.escape, FIELD_LABELS))}):(?=\s|$)")
_FIELD_ANYWHERE = re.compile(
    rf"(?<![\w-])(?P<label>{'|'.join(map(re.escape, FIELD_LABELS))}):(?=\s|$)"
)
_CODE = re.compile(r"(?::\w+:)?``(?P<double>.+?)``|(?::\w+:)?`(?P<single>[^`]+)`")
_MD_SPECIAL = re.compile(r"([\\*_<>\[\]])")
_WIDTH = 88


@dataclass
class Docstring:
    """A hook docstring split into its parts; ``problems`` lists what does not follow the format."""

    paragraphs: list[str] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    returns: str | None = None
    fields: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return self.paragraphs[0] if self.paragraphs else ""


@dataclass
class HookDoc:
    """Everything the reference says about one hook."""

    name: str
    group: str
    lineno: int
    function: Callable[..., Any]
    argnames: tuple[str, ...]
    firstresult: bool
    historic: bool
    docstring: Docstring

    @property
    def kind(self) -> str:
        """The first word of the ``Kind:`` field: provider, action, contribution or event."""
        words = self.docstring.fields.get("Kind", "").split()
        return words[0].strip(".,;:()").lower() if words else ""

    @property
    def wrappable(self) -> bool:
        return "wrappable" in self.docstring.fields.get("Kind", "").lower()


def parse_docstring(doc: str) -> Docstring:
    """Split a hook docstring into paragraphs, ``:param:`` lines, ``:returns:`` and fields.

    Continuation lines (indented or not) belong to the item above them; a blank line ends an
    item. Field lines may hold several labels (``Kind: ... Called: ...``).
    """
    result = Docstring()
    field_text: list[str] = []
    current: list[str] | None = None  # the lines of the item being read
    kind = ""  # "paragraph", "param", "returns" or "fields"
    name = ""

    def finish() -> None:
        if current is None:
            return
        text = " ".join(current)
        if kind == "ignored":
            return
        if kind == "paragraph":
            result.paragraphs.append(text)
        elif kind == "param":
            if name in result.params:
                result.problems.append(f":param {name}: appears twice")
            result.params[name] = text
        elif kind == "returns":
            if result.returns is not None:
                result.problems.append(":returns: appears twice")
            result.returns = text
        else:
            field_text.append(text)

    for raw in doc.splitlines():
        line = raw.strip()
        if not line:
            finish()
            current = None
            continue
        param = _PARAM.match(line)
        returns = _RETURNS.match(line)
        if param or returns or _FIELD_START.match(line) or _OTHER_FIELD.match(line):
            finish()
            if param:
                kind, name, current = "param", param["name"], [param["text"]]
            elif returns:
                kind, current = "returns", [returns["text"]]
            elif _FIELD_START.match(line):
                kind, current = "fields", [line]
            else:
                result.problems.append(f"unrecognised field line {line!r}")
                kind, current = "ignored", [line]
        elif current is not None:
            current.append(line)
        else:
            kind, current = "paragraph", [line]
    finish()

    text = " ".join(field_text)
    matches = list(_FIELD_ANYWHERE.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        label = match["label"]
        if label in result.fields:
            result.problems.append(f"field {label}: appears twice")
        result.fields[label] = text[match.end() : end].strip()
    return result


def banner_groups(source: str) -> list[tuple[int, str]]:
    """Return ``(line number, title)`` for each ``# Title ----`` banner comment in ``source``."""
    return [
        (lineno, match["title"])
        for lineno, line in enumerate(source.splitlines(), start=1)
        if (match := _BANNER.match(line))
    ]


def collect_hooks(module: ModuleType = jobkit.hookspecs) -> list[HookDoc]:
    """Every hook spec in ``module``, in source order, with the banner group it sits under."""
    pm = pluggy.PluginManager("jobkit")
    pm.add_hookspecs(module)
    banners = banner_groups(inspect.getsource(module))
    hooks = []
    for attr in dir(pm.hook):
        caller = getattr(pm.hook, attr)
        if not isinstance(caller, pluggy.HookCaller) or caller.spec is None:
            continue
        spec = caller.spec
        lineno = inspect.getsourcelines(spec.function)[1]
        group = next((title for line, title in reversed(banners) if line < lineno), "General")
        hooks.append(
            HookDoc(
                name=caller.name,
                group=group,
                lineno=lineno,
                function=spec.function,
                argnames=tuple(spec.argnames),
                firstresult=bool(spec.opts.get("firstresult")),
                historic=bool(spec.opts.get("historic")),
                docstring=parse_docstring(inspect.getdoc(spec.function) or ""),
            )
        )
    return sorted(hooks, key=lambda hook: hook.lineno)


def _annotation(annotation: Any) -> str:
    # With ``from __future__ import annotations`` every annotation is the string as written.
    return annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)


def format_signature(function: Callable[..., Any]) -> str:
    """``def name(a: T, b: U) -> R``, annotations as written, wrapped one parameter a line when
    it is longer than the code block width."""
    signature = inspect.signature(function)
    parts = []
    previous = None
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and previous not in (
            parameter.KEYWORD_ONLY,
            parameter.VAR_POSITIONAL,
        ):
            parts.append("*")
        if previous is parameter.POSITIONAL_ONLY and parameter.kind is not previous:
            parts.append("/")
        text = {parameter.VAR_POSITIONAL: "*", parameter.VAR_KEYWORD: "**"}.get(
            parameter.kind, ""
        ) + parameter.name
        if parameter.annotation is not parameter.empty:
            text += f": {_annotation(parameter.annotation)}"
        if parameter.default is not parameter.empty:
            equals = " = " if parameter.annotation is not parameter.empty else "="
            text += f"{equals}{parameter.default!r}"
        parts.append(text)
        previous = parameter.kind
    if previous is inspect.Parameter.POSITIONAL_ONLY:
        parts.append("/")
    returns = ""
    if signature.return_annotation is not signature.empty:
        returns = f" -> {_annotation(signature.return_annotation)}"
    one_line = f"def {function.__name__}({', '.join(parts)}){returns}"
    if len(one_line) <= _WIDTH or not parts:
        return one_line
    lines = "".join(f"    {part},\n" for part in parts)
    return f"def {function.__name__}(\n{lines}){returns}"


def to_markdown(text: str) -> str:
    """reStructuredText inline markup to GitHub Markdown: ``code`` and :role:`code` become
    `code`; characters Markdown would interpret elsewhere are escaped."""
    out = []
    position = 0
    for match in _CODE.finditer(text):
        out.append(_MD_SPECIAL.sub(r"\\\1", text[position : match.start()]))
        code = match["double"] or match["single"]
        fence = "``" if "`" in code else "`"
        pad = " " if fence == "``" else ""
        out.append(f"{fence}{pad}{code}{pad}{fence}")
        position = match.end()
    out.append(_MD_SPECIAL.sub(r"\\\1", text[position:]))
    return "".join(out)


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _flags(hook: HookDoc) -> str:
    flags = [f"**{hook.kind or 'unknown kind'}**"]
    flags.append("firstresult" if hook.firstresult else "all plugins called")
    if hook.historic:
        flags.append("historic")
    if hook.wrappable:
        flags.append("wrapper-friendly")
    return " · ".join(flags)


def render_hook(hook: HookDoc) -> list[str]:
    doc = hook.docstring
    lines = [f"### {hook.name}", "", "```python", format_signature(hook.function), "```", ""]
    lines += [_flags(hook), ""]
    for paragraph in doc.paragraphs:
        lines += [to_markdown(paragraph), ""]
    if doc.params:
        lines += ["**Parameters**", ""]
        lines += [f"- `{name}`: {to_markdown(text)}" for name, text in doc.params.items()]
        lines.append("")
    else:
        lines += ["**Parameters**: none.", ""]
    if doc.returns:
        lines += [f"**Returns**: {to_markdown(doc.returns)}", ""]
    labels = [label for label in FIELD_LABELS if label in doc.fields]
    if labels:
        # "*" rather than "-": a different bullet starts a new list, so Markdown does not merge
        # the fields into the parameter list above.
        lines += [f"* **{label}:** {to_markdown(doc.fields[label])}" for label in labels]
        lines.append("")
    return lines


def render(module: ModuleType = jobkit.hookspecs) -> str:
    """The whole of docs/hooks.md."""
    hooks = collect_hooks(module)
    groups: dict[str, list[HookDoc]] = {}
    for hook in hooks:
        groups.setdefault(hook.group, []).append(hook)

    # The module docstring explains the hook shapes; its paragraph about regenerating this file
    # is replaced by the notice below.
    intro = [
        paragraph
        for paragraph in parse_docstring(inspect.getdoc(module) or "").paragraphs
        if "gen_hooks.py" not in paragraph
    ]
    lines = [
        "# Hook reference",
        "",
        f"<!-- Generated from {SPEC_SOURCE} by docs/gen_hooks.py; do not edit. -->",
        "",
        f"> Generated from `{SPEC_SOURCE}` by `docs/gen_hooks.py`; do not edit. After changing a "
        f"hook spec, run `{REGENERATE}`.",
        "",
    ]
    for paragraph in intro:
        lines += [to_markdown(paragraph), ""]
    lines += ["## Contents", ""]
    for group, members in groups.items():
        lines.append(f"- [{group}](#{github_anchor(group)})")
        lines += [
            f"  - [`{hook.name}`](#{github_anchor(hook.name)}): {hook.kind}" for hook in members
        ]
    lines.append("")
    for group, members in groups.items():
        lines += [f"## {group}", ""]
        for hook in members:
            lines += render_hook(hook)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if docs/hooks.md is stale, write nothing"
    )
    args = parser.parse_args(argv)
    text = render()
    relative = HOOKS_MD.relative_to(ROOT)
    current = HOOKS_MD.read_text(encoding="utf-8") if HOOKS_MD.exists() else None
    if args.check:
        if current != text:
            state = "missing" if current is None else "stale"
            print(
                f"{relative} is {state}: run `{REGENERATE}` and commit the result.",
                file=sys.stderr,
            )
            return 1
        print(f"{relative} is up to date.")
        return 0
    if current == text:
        print(f"{relative} is already up to date.")
    else:
        HOOKS_MD.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
