"""Reading the package's YAML files (energy tables here, budgets in :mod:`gac_analysis.budget`): one parser,
one style of error. It lives in ``energy`` because that is the lowest, torch-free layer that reads YAML.

PyYAML keeps the last of two equal keys in a mapping without a word; a config file that says
``mac: 4.6`` and later ``mac: 0.9`` is ambiguous, so here a repeated key is an error naming the key and
both lines. Every error is one line: ``<what> ...; fix ...``.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["parse_yaml"]


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, first_line: int, second_line: int):
        super().__init__(key)
        self.key, self.first_line, self.second_line = key, first_line, second_line


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: SafeLoader's own error follows
                continue
            if first != key_node.start_mark.line + 1:
                raise _DuplicateKey(key, first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _UniqueKeyLoader.construct_mapping)


def parse_yaml(text: str, what: str, error: type[Exception]) -> Any:
    """Parse ``text`` (safe YAML, no repeated keys); ``error(one line)`` naming ``what`` (e.g. ``budget file
    PATH``) and the line on a syntax error or a repeated key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # safe: _UniqueKeyLoader is a SafeLoader subclass
    except _DuplicateKey as e:
        raise error(
            f"{what}: key {e.key!r} appears twice in one mapping (lines {e.first_line} and {e.second_line}); keep one"
        ) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = " ".join(str(getattr(e, "problem", None) or type(e).__name__).split())
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        raise error(f"{what} is not valid YAML ({where}{problem}); fix the syntax") from None
