"""The JSON Schema (draft 2020-12) of `labgate scan --json`'s report, `labgate-scan/1`.

Printed by `labgate scan --json-schema`; a `--since` report is checked against it before it is
compared. Every object is closed (`additionalProperties: false`), so a field added to the report
without its place here fails the test that validates real scan output.
"""

from __future__ import annotations

from typing import Any

from labgate.scan.findings import Severity, Status
from labgate.scan.hello import Version
from labgate.scan.report import SCHEMA


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_TEXT = {"type": "string"}
_COUNT = {"type": "integer", "minimum": 0}
_LEVEL = _nullable(_TEXT)
_VERSION = {"enum": [v.value for v in Version]}

FINDING: dict[str, Any] = _object(
    {
        "id": {"type": "string", "pattern": "^LG-[A-Z]+-[0-9]{3}$"},
        "title": _TEXT,
        "severity": {"enum": [s.label for s in Severity]},
        "status": {"enum": [s.value for s in Status]},
        "endpoint": _TEXT,
        "evidence": _TEXT,
        "fix": _TEXT,
    }
)
# A finding in the `since` section: the same, with the instrument it is about.
_LOCATED = {**FINDING, "properties": {"host": _TEXT, **FINDING["properties"]}}
_LOCATED["required"] = ["host", *FINDING["required"]]

_ANSWER = {
    "oneOf": [
        _object({"result": {"const": "accepted"}, "suite": _TEXT}),
        _object({"result": {"enum": ["refused", "inconclusive"]}, "reason": _TEXT}),
    ]
}

PORT: dict[str, Any] = _object(
    {
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "state": {"enum": ["unknown", "open", "closed", "silent", "inconclusive"]},
        "service": _TEXT,
        "banner": _nullable(
            _object(
                {
                    "raw": _TEXT,
                    "product": _nullable(_TEXT),
                    "version": _nullable(_TEXT),
                    "build": _nullable(_TEXT),
                    "session": _nullable(_TEXT),
                }
            )
        ),
        "scpi": _nullable(
            _object(
                {
                    "transport": _nullable(_TEXT),
                    "level_at_connect": _LEVEL,
                    "password_free_limit": _LEVEL,
                    "passwords_checked": {"type": "boolean"},
                    "passwords_tried": _COUNT,
                    "weak_passwords": {
                        "type": "array",
                        "items": _object({"password": _TEXT, "level": _LEVEL}),
                    },
                }
            )
        ),
        "scpi_error": _nullable(_TEXT),
        "other_banner": _nullable(_TEXT),
        "protocols": {
            "type": "object",
            "propertyNames": _VERSION,
            "additionalProperties": _ANSWER,
        },
        "suites": {
            "type": "object",
            "propertyNames": _VERSION,
            "additionalProperties": _object(
                {"accepted": {"type": "array", "items": _TEXT}, "complete": {"type": "boolean"}}
            ),
        },
        "certificate": _nullable(
            _object(
                {
                    "subject": _TEXT,
                    "issuer": _TEXT,
                    "self_signed": {"type": "boolean"},
                    "not_after": {"type": "string", "format": "date-time"},
                    "days_left": {"type": "integer"},
                    "key": _TEXT,
                    "pin": _TEXT,
                }
            )
        ),
    }
)

INSTRUMENT: dict[str, Any] = _object(
    {
        "host": _TEXT,
        "seconds": {"type": "number", "minimum": 0},
        "budget": _object(
            {
                "concurrent": _COUNT,
                "per_second": {"type": "number", "exclusiveMinimum": 0},
                "total": _COUNT,
                "connections": _COUNT,
                "refused": _COUNT,
                "peak_open": _COUNT,
            }
        ),
        "stopped": _nullable(_TEXT),
        "ports": {"type": "array", "items": PORT},
        "findings": {"type": "array", "items": FINDING},
    }
)

REPORT: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "labgate scan report",
    "description": "What `labgate scan --json` prints; `since` only with `--since FILE`.",
    **_object(
        {
            "schema": {"const": SCHEMA},
            "exit_status": {"enum": [0, 1, 2]},
            "instruments": {"type": "array", "items": INSTRUMENT},
            "since": _object(
                {
                    "report": _TEXT,
                    "new": {"type": "array", "items": _LOCATED},
                    "changed": {
                        "type": "array",
                        "items": _object({"before": _LOCATED, "after": _LOCATED}),
                    },
                    "resolved": {"type": "array", "items": _LOCATED},
                }
            ),
        },
        optional=("since",),
    ),
}
