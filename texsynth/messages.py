"""Problem messages: pydantic validation errors -> ``file: field: what is wrong (line N)``.

pydantic's own messages name Python types and internal locations; a recipe's
author wants the field as written in YAML, the value they wrote, what would be
accepted, and the line to look at. Recipe-specific knowledge (which fields a
nested model allows) is read off the model classes, so new fields need no
changes here.
"""

from __future__ import annotations

import difflib
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import yaml
from pydantic import BaseModel

from .errors import located, shown

_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def problem_message(
    error: Mapping[str, Any], source: str, node: yaml.Node | None, overrides: Mapping[str, Any], model: type[BaseModel]
) -> str:
    """One pydantic error as ``source: field: message (line N)``."""
    loc = tuple(error["loc"])
    message = _message(error, model)
    # A model-level check names its own field inside the message ("size: ...").
    if not loc and ": " in message:
        field, message = message.split(": ", 1)
        loc = _location(field)
    return locate(loc, message, source, node, overrides)


def _location(field: str) -> tuple:
    """``"styles[1].mask"`` -> ``("styles", 1, "mask")``, as pydantic locates fields."""
    parts: list = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", field):
        parts.append(int(index) if index else name)
    return tuple(parts)


def locate(loc: tuple, message: str, source: str, node: yaml.Node | None, overrides: Mapping[str, Any]) -> str:
    """``source: field: message``, with the YAML line, or marked as coming from the command line."""
    field = field_path(loc) or None
    if field and from_command_line(loc, overrides):
        return located(source, f"{field} (from the command line)", message)
    line = line_of(node, loc)
    return located(source, field, message) + (f" (line {line})" if line else "")


def from_command_line(loc: tuple, overrides: Mapping[str, Any]) -> bool:
    """Whether the value at ``loc`` was set by an override (``styles.scale`` covers ``styles[1].scale``)."""
    dotted = ".".join(str(part) for part in loc if not isinstance(part, int))
    return any(dotted == key or dotted.startswith(key + ".") for key in overrides)


def drop_redundant(errors: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """A list whose items failed is also reported "too short" by pydantic: keep only the real cause."""
    return [e for e in errors if not (e["type"] == "too_short" and _has_child_error(e["loc"], errors))]


def _has_child_error(loc: tuple, errors: Sequence[Mapping[str, Any]]) -> bool:
    return any(len(other["loc"]) > len(loc) and tuple(other["loc"][: len(loc)]) == tuple(loc) for other in errors)


def kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "true/false"}.get(
        type(value), type(value).__name__
    )


def field_path(loc: tuple) -> str:
    """``("styles", 1, "weight")`` -> ``styles[1].weight``; odd names are quoted: ``style_layers['a b']``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not _PLAIN_NAME.match(str(part)):
            text += f"[{shown(str(part))}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _allowed_fields(loc: tuple, model: type[BaseModel]) -> list[str]:
    """The fields allowed beside the unknown one at ``loc``, found by walking the model's annotations."""
    for part in loc[:-1]:
        if isinstance(part, str) and part in model.model_fields:
            nested = _model_in(model.model_fields[part].annotation)
            if nested is None:
                break
            model = nested
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside ``Style``, ``Content | None``, ``tuple[Style, ...]`` and the like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, tuple, list, typing.Annotated):
        for argument in typing.get_args(annotation):
            found = _model_in(argument)
            if found is not None:
                return found
    return None


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    kind_, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind_ == "missing":
        return "required field is missing"
    if kind_ == "extra_forbidden":
        name = str(error["loc"][-1])
        # difflib is quadratic in the name's length; a real typo is short.
        hint = difflib.get_close_matches(name, _allowed_fields(error["loc"], model), n=1) if len(name) < 100 else []
        return "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
    if kind_ == "greater_than":
        return f"must be > {ctx['gt']:g}, got {shown(value)}"
    if kind_ == "greater_than_equal":
        return f"must be >= {ctx['ge']:g}, got {shown(value)}"
    if kind_ in ("less_than", "less_than_equal"):
        bound = ctx.get("lt", ctx.get("le"))
        return f"must be {'<' if kind_ == 'less_than' else '<='} {bound:g}, got {shown(value)}"
    if kind_ == "finite_number":
        return f"must be a finite number, got {shown(value)}"
    if kind_.startswith("int_"):
        return f"must be a whole number, got {_shown(value)}"
    if kind_.startswith("float_"):
        return f"must be a number, got {_shown(value)}"
    if kind_ == "enum":
        return f"must be one of {ctx['expected']}, got {_shown(value)}"
    if kind_ in ("path_type", "string_type"):
        return f"must be a path (text), got {_shown(value)}"
    if kind_ in ("dict_type", "model_type", "model_attributes_type"):
        return f"must be a mapping, got {_shown(value)}"
    if kind_ in ("tuple_type", "list_type"):
        return f"must be a list, got {_shown(value)}"
    if kind_ == "too_short":
        return "must have at least one entry"
    if kind_ == "value_error":
        return str(ctx.get("error", error["msg"]))
    return error["msg"][:1].lower() + error["msg"][1:]


def _shown(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return kind(value) if isinstance(value, (dict, list)) else shown(value)


def line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """1-based YAML line of the value at ``loc`` (or of its key, for an unknown field)."""
    if node is None:
        return None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    node = key if part == loc[-1] and not isinstance(value, yaml.CollectionNode) else value
                    break
            else:
                return node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            break
    return node.start_mark.line + 1
