"""Job types the server will create: each a name, a bounded JSON Schema of its parameters and
the roles that may create one.

A type not listed here cannot be created, and parameters are checked against the type's schema
before a job exists. Every schema is *bounded*: each string has a `maxLength` (or an `enum` or a
`pattern` with fixed length), each number a `minimum` and `maximum`, each array `maxItems`, each
object `additionalProperties: false`; `require_bounded` checks it, so no type can be added whose
parameters could be of any size. The agent keeps its own copy of each schema and checks again
(`labgate.agent.jobs`): the device's list is the last word.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from labgate.control.errors import InvalidInput

# A job's parameters, serialised, are at most this long: a job is a small signed document that
# every poll may carry, not a way to ship data (a release is fetched from /tuf, not sent here).
MAX_PARAMS_BYTES = 4096
TYPE_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerJobType:
    name: str
    schema: Mapping[str, Any]
    roles: tuple[str, ...]
    validator: Draft202012Validator = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        require_bounded(self.schema, where=self.name)
        object.__setattr__(self, "validator", Draft202012Validator(dict(self.schema)))


def require_bounded(schema: Mapping[str, Any], *, where: str) -> None:
    """Refuse a schema that lets any value grow without bound (ValueError names the place)."""
    try:
        Draft202012Validator.check_schema(dict(schema))
    except SchemaError as error:
        raise ValueError(f"job type {where}: not a valid JSON Schema: {error.message}") from None
    _bounded(schema, where)


def _bounded(schema: Mapping[str, Any], where: str) -> None:
    if "enum" in schema or "const" in schema:
        return
    kind = schema.get("type")
    if kind == "object":
        if schema.get("additionalProperties") is not False:
            raise ValueError(f"{where}: an object needs additionalProperties: false")
        for name, inner in schema.get("properties", {}).items():
            _bounded(inner, f"{where}.{name}")
    elif kind == "string":
        if "maxLength" not in schema:
            raise ValueError(f"{where}: a string needs maxLength (or enum)")
    elif kind in ("integer", "number"):
        if "minimum" not in schema or "maximum" not in schema:
            raise ValueError(f"{where}: a number needs minimum and maximum")
    elif kind == "array":
        if "maxItems" not in schema or "items" not in schema:
            raise ValueError(f"{where}: an array needs maxItems and items")
        _bounded(schema["items"], f"{where}[]")
    elif kind != "boolean":
        raise ValueError(f"{where}: type {kind!r} is not one a job parameter may have")


def check_params(job_type: ServerJobType, params: Any) -> dict[str, Any]:
    """`params` if they fit the type's schema and size; InvalidInput naming the first problem."""
    if not isinstance(params, dict):
        raise InvalidInput(f"job {job_type.name}: params must be a JSON object")
    size = len(json.dumps(params, separators=(",", ":")))
    if size > MAX_PARAMS_BYTES:
        raise InvalidInput(
            f"job {job_type.name}: params are {size} bytes serialised, at most {MAX_PARAMS_BYTES}"
        )
    errors = sorted(job_type.validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        place = "/".join(str(p) for p in first.absolute_path) or "params"
        raise InvalidInput(f"job {job_type.name}: {place}: {first.message[:200]}")
    return params


def job_type(name: str) -> ServerJobType:
    found = JOB_TYPES.get(name)
    if found is None:
        raise InvalidInput(f"unknown job type {name[:40]!r}; known: {', '.join(sorted(JOB_TYPES))}")
    return found


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(required),
        "properties": properties,
    }


# The same documents the agent holds (labgate.agent.jobs): a test checks the two agree.
REPORT_STATUS_SCHEMA = _object({})
COLLECT_LOGS_SCHEMA = _object(
    {
        "max_bytes": {"type": "integer", "minimum": 1, "maximum": 65536},
        "lines": {"type": "integer", "minimum": 1, "maximum": 1000},
    }
)
ROTATE_CREDENTIALS_SCHEMA = _object({})
INSTALL_RELEASE_SCHEMA = _object(
    {
        "target_path": {
            "type": "string",
            "minLength": 1,
            "maxLength": 255,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$",
        },
        "length": {"type": "integer", "minimum": 1, "maximum": 4 * 1024**3},
        "sha256": {"type": "string", "maxLength": 64, "pattern": "^[0-9a-f]{64}$"},
    },
    required=("target_path", "length", "sha256"),
)
INSTRUMENT_ACTION_SCHEMA = _object(
    {
        "instrument": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        },
        "action": {"enum": ["run_state", "drawer", "lamp", "power"]},
    },
    required=("instrument", "action"),
)

OPERATORS = ("admin", "operator")
JOB_TYPES: dict[str, ServerJobType] = {
    t.name: t
    for t in (
        ServerJobType(name="report_status", schema=REPORT_STATUS_SCHEMA, roles=OPERATORS),
        ServerJobType(name="collect_logs", schema=COLLECT_LOGS_SCHEMA, roles=OPERATORS),
        ServerJobType(name="rotate_credentials", schema=ROTATE_CREDENTIALS_SCHEMA, roles=OPERATORS),
        # A release changes what runs on the device: administrators only.
        ServerJobType(name="install_release", schema=INSTALL_RELEASE_SCHEMA, roles=("admin",)),
        ServerJobType(name="instrument_action", schema=INSTRUMENT_ACTION_SCHEMA, roles=OPERATORS),
    )
}
