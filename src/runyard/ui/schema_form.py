"""A form built from a workflow's input JSON Schema (as its workers published it), and
the input read back from what the browser sends.

An object schema with ``properties`` gives a field per property: text for strings (a
select for an ``enum``), a number input for numbers and integers, a checkbox for
booleans, and a JSON text area for anything else (arrays, objects, unions). Any other
schema (a number, a free-form object, a union) gives one JSON text area for the whole
input. The server validates the input against the schema in the end (the service does,
as for every door); what this module catches first is only what it must to build the
value: a required field left empty, a number that is not one, JSON that does not parse.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

#: The name of the one field when the whole input is one JSON text area.
WHOLE = "input"
#: Form fields are named with this prefix (``in.domain``), apart from the page's own.
PREFIX = "in."


@dataclass(frozen=True, slots=True)
class FormField:
    """One field of the form: ``kind`` is text, number, integer, boolean, choice or json."""

    name: str
    label: str
    kind: str
    required: bool
    description: str | None = None
    choices: tuple[str, ...] = ()
    default: Any = None
    #: Shown as a hint: the schema's constraints (pattern, minimum, ...).
    hints: tuple[str, ...] = ()

    @property
    def form_name(self) -> str:
        return PREFIX + self.name


@dataclass(slots=True)
class SchemaForm:
    """The fields of a workflow's form; ``whole``: the input is one JSON text area."""

    fields: list[FormField]
    whole: bool
    #: What the browser sent, by field name (to show it again next to an error).
    values: dict[str, str] = field(default_factory=dict)
    #: Errors by field name ("" for the form as a whole).
    errors: dict[str, list[str]] = field(default_factory=dict)

    def add_error(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


_HINTS = (
    ("minLength", "at least {} characters"),
    ("maxLength", "at most {} characters"),
    ("pattern", "matches {}"),
    ("minimum", "≥ {}"),
    ("exclusiveMinimum", "> {}"),
    ("maximum", "≤ {}"),
    ("exclusiveMaximum", "< {}"),
    ("format", "format: {}"),
)


def _resolve(schema: Any, root: dict[str, Any]) -> Any:
    """``schema`` with a local ``$ref`` (``#/$defs/X``) replaced by what it names."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str) and seen < 20:
        ref = schema["$ref"]
        if not ref.startswith("#/"):
            return schema
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            return schema
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        seen += 1
    return schema


def _kind(prop: Any) -> tuple[str, tuple[str, ...]]:
    """The field kind of a property's schema, and its choices."""
    if not isinstance(prop, dict):
        return "json", ()
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(e, str) for e in enum):
        return "choice", tuple(enum)
    kind = prop.get("type")
    if kind in ("string", "number", "integer", "boolean"):
        return ("text" if kind == "string" else str(kind)), ()
    return "json", ()


def build_form(schema: Any) -> SchemaForm:
    """The form for an input schema (parsed JSON, or None for none published)."""
    root = schema if isinstance(schema, dict) else {}
    top = _resolve(root, root)
    props = top.get("properties") if isinstance(top, dict) else None
    if not (isinstance(top, dict) and top.get("type") == "object" and isinstance(props, dict)):
        return SchemaForm([FormField(WHOLE, "Input (JSON)", "json", False)], whole=True)
    required = set(top.get("required") or ())
    fields = []
    for name, raw in props.items():
        prop = _resolve(raw, root)
        kind, choices = _kind(prop)
        hints = tuple(
            text.format(prop[key]) for key, text in _HINTS if isinstance(prop, dict) and key in prop
        )
        fields.append(
            FormField(
                name=str(name),
                label=str(prop.get("title") or name) if isinstance(prop, dict) else str(name),
                kind=kind,
                required=name in required,
                description=prop.get("description") if isinstance(prop, dict) else None,
                choices=choices,
                default=prop.get("default") if isinstance(prop, dict) else None,
                hints=hints,
            )
        )
    return SchemaForm(fields, whole=False)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (use a number or null)")


def parse_json(text: str) -> Any:
    """JSON as the API takes it: ``NaN`` and ``Infinity`` refused (ValueError)."""
    return json.loads(text, parse_constant=_no_constant)


def _number(text: str, integer: bool) -> int | float:
    if integer:
        return int(text)
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def read_input(form: SchemaForm, sent: dict[str, str]) -> tuple[bool, Any]:
    """Whether the browser's values (``sent``: form field name to value) make an input,
    and the input (what could be read of it when not); errors are added to ``form`` by
    field name."""
    values: dict[str, Any] = {}
    for f in form.fields:
        text = sent.get(f.form_name, "")
        form.values[f.name] = text
        if f.kind == "boolean":
            values[f.name] = text in ("on", "true", "1")
            continue
        if text.strip() == "":
            if f.required:
                form.add_error(f.name, "required")
            continue
        if f.kind in ("number", "integer"):
            try:
                values[f.name] = _number(text.strip(), f.kind == "integer")
            except ValueError:
                form.add_error(
                    f.name, "must be a whole number" if f.kind == "integer" else "must be a number"
                )
        elif f.kind == "json":
            try:
                values[f.name] = parse_json(text)
            except ValueError as exc:
                form.add_error(f.name, f"not JSON: {exc}")
        else:
            values[f.name] = text
    value = values.get(WHOLE) if form.whole else values
    return not form.errors, value


def place_errors(
    form: SchemaForm, details: list[dict[str, Any]], message: str, *, quiet: bool = False
) -> None:
    """Put the service's errors (``details``: ``{"field": "input.x", "error": ...}``) next
    to the fields they name; the others, or ``message`` when none names a field (unless
    ``quiet``), go to the form as a whole."""
    names = {f.name for f in form.fields}
    placed = False
    for detail in details:
        where = str(detail.get("field", ""))
        error = str(detail.get("error", "invalid"))
        path = where.split(".")
        if form.whole and path[0] == "input":
            form.add_error(WHOLE, f"{where}: {error}" if len(path) > 1 else error)
        elif len(path) > 1 and path[0] == "input" and path[1] in names:
            rest = ".".join(path[2:])
            form.add_error(path[1], f"{rest}: {error}" if rest else error)
        else:
            form.add_error("", f"{where}: {error}" if where else error)
        placed = True
    if not placed and not quiet:
        form.add_error("", message)
