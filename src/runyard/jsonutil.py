"""JSON in and out of the store: strict (no NaN, no NUL characters), with clear errors."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pydantic import BaseModel

from .errors import InvalidInput

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


def dumps(value: Any, *, what: str = "value") -> str:
    """Encode ``value`` for storage, or raise :class:`InvalidInput` naming ``what``."""
    value = to_jsonable(value)
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(
            f"{what} is not JSON: {exc}", details=[{"field": what, "error": str(exc)}]
        ) from None
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
