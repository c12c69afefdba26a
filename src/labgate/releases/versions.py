"""Release versions and model names, as a release's custom target info carries them.

A version is one to four dot-separated integers (`2`, `1.4`, `1.4.2`): ordered by number, so the
device's floor can refuse anything older. Anything fancier would need a rule for what sorts
before what, and a wrong rule is a rollback.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import total_ordering
from typing import Any

from labgate.releases.errors import InvalidRelease

_VERSION = re.compile(r"(0|[1-9][0-9]{0,8})(\.(0|[1-9][0-9]{0,8})){0,3}")
MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A release lists the models it runs on; more than this is a typo or an attack on the checker.
MAX_MODELS = 64


@total_ordering
@dataclass(frozen=True, slots=True)
class Version:
    parts: tuple[int, ...]

    @classmethod
    def parse(cls, text: str) -> Version:
        if not isinstance(text, str) or not _VERSION.fullmatch(text):
            raise InvalidRelease(
                f"release version {text!r} is not 1-4 dot-separated numbers (for example 1.4.2)"
            )
        return cls(tuple(int(part) for part in text.split(".")))

    def _padded(self) -> tuple[int, ...]:
        return self.parts + (0,) * (4 - len(self.parts))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._padded() == other._padded()

    def __hash__(self) -> int:
        return hash(self._padded())

    def __lt__(self, other: Version) -> bool:
        return self._padded() < other._padded()

    def __str__(self) -> str:
        return ".".join(str(part) for part in self.parts)


def check_models(models: tuple[str, ...]) -> tuple[str, ...]:
    if not models:
        raise InvalidRelease("a release names at least one compatible model (--compatible MODEL)")
    if len(models) > MAX_MODELS:
        raise InvalidRelease(f"a release names at most {MAX_MODELS} models, not {len(models)}")
    for model in models:
        if not MODEL.fullmatch(model):
            raise InvalidRelease(f"model {model!r} is not 1-64 letters, digits, '.', '_' or '-'")
    return tuple(dict.fromkeys(models))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseInfo:
    """What the targets role says of one artifact beyond its length and hash."""

    version: Version
    compatible: tuple[str, ...]

    def custom(self) -> dict[str, Any]:
        return {"version": str(self.version), "compatible": list(self.compatible)}

    @classmethod
    def from_custom(cls, custom: object, *, path: str) -> ReleaseInfo:
        """Read back what `custom()` wrote; a target signed without it is not a labgate release."""
        if not isinstance(custom, dict):
            raise InvalidRelease(f"target {path!r} carries no release info (version, compatible)")
        version = custom.get("version")
        models = custom.get("compatible")
        if not isinstance(version, str) or not isinstance(models, list):
            raise InvalidRelease(f"target {path!r} carries no release info (version, compatible)")
        if not all(isinstance(model, str) for model in models):
            raise InvalidRelease(f"target {path!r} lists a model that is not a name")
        return cls(version=Version.parse(version), compatible=check_models(tuple(models)))
