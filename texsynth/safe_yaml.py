"""Reading recipe YAML safely, keeping the node tree for line numbers.

Only YAML's safe types are built (``yaml.SafeLoader``: a ``!!python/...`` tag is
an error, never code), duplicate keys are refused instead of silently
overwritten, and a document whose aliases expand to more than MAX_YAML_NODES
values or characters ("billion laughs") is refused before anything walks it.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import TexsynthError, located, shown

_MERGE_TAG = "tag:yaml.org,2002:merge"


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that also refuses duplicate keys, which PyYAML would silently overwrite, and keys that
    are not text (``null:``, ``1:``), at their own line.

    Merge keys (``<<: *defaults``) work as YAML defines them: the mapping's own
    keys win over merged ones, so only its own keys must be unique.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, f"a field name must be text, got {_yaml_kind(key)}", key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate field {shown(key)}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_kind(value: Any) -> str:
    """A non-text key as YAML writes it: ``null``, ``true``, ``1``, ``a list``."""
    if value is None:
        return "null (quote it to use it as a name)"
    if isinstance(value, bool):
        return f"{str(value).lower()} (quote it to use it as a name)"
    if isinstance(value, (int, float)):
        return f"the number {value!r} (quote it to use it as a name)"
    return "a list" if isinstance(value, list) else type(value).__name__


#: Recipes are small text files; anything bigger is a mistake or an attack.
MAX_RECIPE_BYTES = 1_000_000
#: YAML nodes a recipe may expand to, counting each alias use: stops "billion laughs"
#: documents whose aliases expand to more data than fits in memory or time.
MAX_YAML_NODES = 20_000
#: Characters of text a recipe may expand to, counting each alias use: a few aliases of
#: one long value stay under the node cap but make messages and memory explode.
MAX_YAML_CHARACTERS = MAX_RECIPE_BYTES


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text safely; returns the data and the node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        if node is not None:
            _check_expanded_size(node, source)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark else None
        problem = error.problem or error.context or "unreadable"
        raise TexsynthError(located(source, where, f"invalid YAML: {problem}")) from None
    except (yaml.YAMLError, RecursionError) as error:
        raise TexsynthError(located(source, None, f"invalid YAML: {type(error).__name__}")) from None
    return data, node


def _check_expanded_size(root: yaml.Node, source: str) -> None:
    """Refuse a document that, with every alias expanded, holds more than MAX_YAML_NODES values
    or MAX_YAML_CHARACTERS characters of text; stops counting as soon as it is over."""
    nodes, characters, stack = 0, 0, [root]
    while stack:
        node = stack.pop()
        nodes += 1
        if isinstance(node, yaml.ScalarNode):
            characters += len(node.value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
        if nodes > MAX_YAML_NODES:
            raise TexsynthError(
                located(source, None, f"invalid YAML: expands to more than {MAX_YAML_NODES} values (aliases?)")
            )
        if characters > MAX_YAML_CHARACTERS:
            raise TexsynthError(
                located(source, None, f"invalid YAML: expands to more than {MAX_YAML_CHARACTERS} characters (aliases?)")
            )
