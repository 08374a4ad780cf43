"""`mlft <command> --help`: every key of a command's typed arguments with its type, default and help text.

The help text is the attribute docstring under each dataclass field (the string literal that follows
it in the class body), so the schema and its documentation cannot drift apart.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
from functools import cache
from typing import Any, get_type_hints

from mlft.schema import type_name


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Field name -> its attribute docstring, read from the class's source."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, after in zip(body, body[1:]):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value: Any = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
        if dataclasses.is_dataclass(value):
            return ""
    else:
        return "required"
    return "default " + json.dumps(value, ensure_ascii=False)


def describe(schema: type, prefix: str = "", width: int = 100) -> list[str]:
    """Lines describing every key of `schema` (nested sections flattened to dotted keys)."""
    lines = []
    hints = get_type_hints(schema)
    docs = field_docs(schema)
    for field in dataclasses.fields(schema):
        key, hint = f"{prefix}{field.name}", hints[field.name]
        if dataclasses.is_dataclass(hint):
            lines += describe(hint, f"{key}.", width)  # type: ignore[arg-type]
            continue
        default = _default(field)
        lines.append(f"  {key}: {type_name(hint)}" + (f" ({default})" if default else ""))
        if field.name in docs:
            lines += textwrap.wrap(docs[field.name], width, initial_indent="      ", subsequent_indent="      ")
    return lines


def command_help(command: str, usage: str, schema: type) -> str:
    """The full help of a `key=value` command."""
    return "\n".join(
        [f"usage: {usage}", "", f"keys of mlft {command} (key=value; lists as [a,b]):", *describe(schema)]
    )
