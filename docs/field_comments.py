"""A Griffe extension for the API reference: a class attribute's comment becomes its docstring.

grokscope documents each config field where it is declared, with a comment on its line (or a comment block right
above it): `steps: int = 30_000  # step budget`. mkdocstrings reads docstrings only, so without this the fields
of RunConfig, MonitorConfig and the rest would be shown bare or not at all. `field_comment` is also what
tests/unit/test_api_reference.py checks every config field against.
"""

from __future__ import annotations

import io
import re
import tokenize
from typing import Any

import griffe


def _comment(line: str) -> str | None:
    """The comment ending `line` (a `#` inside a string is not one)."""
    try:
        toks = list(tokenize.generate_tokens(io.StringIO(line.rstrip("\n") + "\n").readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):  # a line that opens a bracket: no whole tokens
        return line.split("#", 1)[1].strip() if "#" in line else None
    return next((t.string[1:].strip() for t in toks if t.type == tokenize.COMMENT), None)


def field_comment(lines: list[str], lineno: int) -> str | None:
    """The description of the field declared on line `lineno` (1-based) of `lines`: the comment on its line,
    else the block of comment-only lines right above it; None when it has neither."""
    own = _comment(lines[lineno - 1])
    if own:
        return own
    above: list[str] = []
    i = lineno - 2
    while i >= 0 and lines[i].strip().startswith("#"):
        above.insert(0, lines[i].strip()[1:].strip())
        i -= 1
    return " ".join(above) or None


def as_markdown(comment: str) -> str:
    """A code comment as Markdown that shows what it says: outside `code` spans, `<step>` is not a tag and
    `*attn*` not emphasis."""
    parts = re.split(r"(`[^`]*`)", comment)
    return "".join(part if part.startswith("`") else
                   part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*", r"\*")
                   for part in parts)


class FieldComments(griffe.Extension):
    """Give each documented class's attributes without a docstring the comment that declares them."""

    def on_attribute_instance(self, *, node: Any, attr: griffe.Attribute, agent: Any, **kwargs: Any) -> None:
        if attr.docstring is not None or not attr.parent or not attr.parent.is_class or attr.lineno is None:
            return
        try:
            lines = attr.parent.module.lines
        except (AttributeError, OSError):
            return
        text = field_comment(lines, attr.lineno) if lines else None
        if text:
            attr.docstring = griffe.Docstring(as_markdown(text), lineno=attr.lineno, parent=attr)
