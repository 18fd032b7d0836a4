"""mkdocs hook: fills `<!-- config-reference -->` in configuration.md with tables generated from
the run-config dataclasses (robot_rl/run_config.py) at build time, so the reference cannot go
stale. A field's description is its `metadata["help"]`, else the comment on its source line."""
from __future__ import annotations

import dataclasses
import inspect
import typing

from robot_rl.config import config_key

MARKER = "<!-- config-reference -->"


def _comments(cls) -> dict[str, str]:
    """Field name -> trailing `# comment` on its line in the class source."""
    out = {}
    for line in inspect.getsource(cls).splitlines():
        code, _, comment = line.partition("  # ")
        name = code.strip().split(":")[0]
        if comment and name.isidentifier():
            out[name] = comment.strip()
    return out


def _dataclass_of(tp):
    """The dataclass inside `tp` (itself, or the X of Optional[X]), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def _type_name(tp) -> str:
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        return "(section)" if dataclasses.is_dataclass(value) else f"`{value!r}`"
    return "required"


def reference_tables(root, prefix: str = "") -> list[tuple[str, str, list[list[str]]]]:
    """[(section key, section doc, rows of [key, type, default, description])], depth first."""
    hints = typing.get_type_hints(root)
    comments = _comments(root)
    rows, nested = [], []
    for f in dataclasses.fields(root):
        key = f"{prefix}{config_key(f.name)}"
        sub = _dataclass_of(hints[f.name])
        help_text = f.metadata.get("help") or comments.get(f.name, "")
        if "range" in f.metadata:
            help_text += f" (in `{f.metadata['range']}`)"
        if sub is not None:
            help_text += f" (section `{key}` below)"
            nested += reference_tables(sub, key + ".")
        rows.append([f"`{key}`", _type_name(hints[f.name]), _default(f), help_text])
    doc = inspect.cleandoc(root.__doc__ or "") if root.__doc__ and not root.__doc__.startswith(
        root.__name__ + "(") else ""  # dataclasses invent a signature docstring when there is none
    return [(prefix.rstrip(".") or root.__name__, doc, rows)] + nested


def reference_markdown() -> str:
    from robot_rl.run_config import BCRunConfig, OfflineRunConfig, RunConfig
    parts = []
    for title, root in (("`robot-rl train`", RunConfig), ("`robot-rl offline`", OfflineRunConfig),
                        ("`robot-rl bc`", BCRunConfig)):
        parts.append(f"## {title} ({root.__name__})")
        for section, doc, rows in reference_tables(root):
            parts.append(f"### `{section}`" if section != root.__name__ else "### top level")
            if doc:
                parts.append(doc.replace("\n", " "))
            parts.append("| key | type | default | description |\n|---|---|---|---|\n" + "\n".join(
                "| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows))
    return "\n\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, reference_markdown())
    return markdown
