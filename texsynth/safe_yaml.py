"""Reading recipe YAML safely, keeping the node tree for line numbers.

Only YAML's safe types are built (``yaml.SafeLoader``: a ``!!python/...`` tag is
an error, never code), duplicate keys are refused instead of silently
overwritten, and a document whose aliases expand to more than MAX_YAML_NODES
values ("billion laughs") is refused before anything walks it.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import TexsynthError, located


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that also refuses duplicate keys, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:  # "? [a, b]: 1" makes a list a key
                raise yaml.constructor.ConstructorError(
                    None, None, "a field name must be plain text", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate field {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


#: Recipes are small text files; anything bigger is a mistake or an attack.
MAX_RECIPE_BYTES = 1_000_000
#: YAML nodes a recipe may expand to, counting each alias use: stops "billion laughs"
#: documents whose aliases expand to more data than fits in memory or time.
MAX_YAML_NODES = 20_000


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text safely; returns the data and the node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        if node is not None and _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
            raise TexsynthError(
                located(source, None, f"invalid YAML: expands to more than {MAX_YAML_NODES} values (aliases?)")
            )
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark else None
        problem = error.problem or error.context or "unreadable"
        raise TexsynthError(located(source, where, f"invalid YAML: {problem}")) from None
    except (yaml.YAMLError, RecursionError) as error:
        raise TexsynthError(located(source, None, f"invalid YAML: {type(error).__name__}")) from None
    return data, node


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes in the document with every alias expanded, counting up to just past ``limit``."""
    count, stack = 0, [root]
    while stack and count <= limit:
        node = stack.pop()
        count += 1
        if isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return count
