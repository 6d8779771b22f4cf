"""JSON in and out of the store: strict (no NaN, no NUL characters), with clear errors."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from .errors import InvalidInput

#: The depth :func:`dumps` reports when the encoder itself runs out of stack.
_STACK_DEPTH = 900

_encoder = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def to_jsonable(value: Any) -> Any:
    """Pydantic models and dataclasses become plain data; everything else is left as is."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


def unstorable(text: str) -> str | None:
    """What makes ``text`` impossible to store (PostgreSQL holds no NUL character, and no
    driver encodes a lone surrogate), or None."""
    if "\x00" in text:
        return "a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (not valid Unicode text)"
    return None


def _find_unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first string (or key) in ``value`` that cannot be stored, and why."""
    if isinstance(value, str):
        problem = unstorable(value)
        return (path, problem) if problem else None
    if isinstance(value, dict):
        for k, v in value.items():
            if problem := unstorable(str(k)):
                return f"{path}.{k!r}", problem
            found = _find_unstorable(v, f"{path}.{k}")
            if found:
                return found
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            found = _find_unstorable(v, f"{path}[{i}]")
            if found:
                return found
    return None


def too_deep(value: Any, limit: int) -> bool:
    """``value`` nests more than ``limit`` arrays or objects one inside the other (walked
    without recursion: a value too deep for Python's stack is answered too)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def too_deep_error(what: str, limit: int) -> InvalidInput:
    """The 422 for a payload nested deeper than ``limit``, naming ``what``."""
    return InvalidInput(
        f"{what} is nested deeper than {limit} levels (arrays or objects one inside the "
        "other), the most that can be stored",
        details=[
            {"field": what, "error": f"nested deeper than {limit} levels", "max_depth": limit}
        ],
    )


def dumps(value: Any, *, what: str = "value", max_depth: int | None = None) -> str:
    """Encode ``value`` for storage, or raise :class:`InvalidInput` naming ``what``: it
    is not JSON, holds text that cannot be stored, or nests deeper than ``max_depth``
    (a payload a client gives: :data:`runyard.rules.JSON_DEPTH_MAX`; what could not be
    given back is not stored)."""
    value = to_jsonable(value)
    try:
        text = _encoder.encode(value)
    except RecursionError:
        raise too_deep_error(what, max_depth or _STACK_DEPTH) from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{what} is not JSON: {exc}", details=[{"field": what, "error": str(exc)}]
        ) from None
    # Fewer brackets than the limit in the whole text cannot nest past it (the count is
    # C-speed; the walk only runs for values with many brackets).
    if (
        max_depth is not None
        and text.count("[") + text.count("{") > max_depth
        and too_deep(value, max_depth)
    ):
        raise too_deep_error(what, max_depth)
    # The encoder escapes NUL as \u0000 and keeps lone surrogates; confirm on the value
    # itself (a literal backslash-u0000 in a string is legal and also contains that
    # substring).
    if ("\\u0000" in text or unstorable(text)) and (found := _find_unstorable(value, what)):
        where, problem = found
        raise InvalidInput(
            f"{where} contains {problem}, which cannot be stored",
            details=[{"field": where, "error": f"{problem} in string"}],
        )
    return text


def dumps_opt(value: Any, *, what: str = "value") -> str | None:
    return None if value is None else dumps(value, what=what)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)
