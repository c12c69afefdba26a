"""The two profiles a TLS endpoint's protocols and suites are graded against.

`intermediate` is Mozilla's server-side TLS "intermediate" configuration (guidelines 5.7), the one
labgate's own servers offer (`labgate.pki.tlsconfig`). `legacy-instrument` is labgate's named
floor for an instrument that cannot be upgraded and sits behind the gateway: TLS 1.0 or newer (no
SSLv3: POODLE), AES or ChaCha20 only (no RC4, DES, 3DES, IDEA, NULL, export or anonymous suites,
no MD5). An instrument that fails even that one has a finding that says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from labgate.scan.hello import Version


class Profile(StrEnum):
    INTERMEDIATE = "intermediate"
    LEGACY_INSTRUMENT = "legacy-instrument"


INTERMEDIATE_VERSIONS = frozenset({Version.TLS12, Version.TLS13})
INTERMEDIATE_SUITES = frozenset(
    {
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        # TLS 1.3
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
)
LEGACY_VERSIONS = frozenset({Version.TLS10, Version.TLS11, Version.TLS12, Version.TLS13})
_LEGACY_CIPHERS = ("_AES_", "_CHACHA20_")
_NEVER = (
    "_NULL",
    "_anon_",
    "_EXPORT",
    "_RC4_",
    "_DES",
    "_3DES_",
    "_IDEA_",
    "_MD5",
    "_SRP_",
    "_PSK_",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Grade:
    """Whether one (version, suite) pair meets each profile, and why not."""

    intermediate: bool
    legacy_instrument: bool
    why: str  # empty when both pass

    def passes(self, profile: Profile) -> bool:
        return self.intermediate if profile is Profile.INTERMEDIATE else self.legacy_instrument


def grade(version: Version, suite_name: str) -> Grade:
    reasons: list[str] = []
    intermediate = version in INTERMEDIATE_VERSIONS and suite_name in INTERMEDIATE_SUITES
    if version not in INTERMEDIATE_VERSIONS:
        reasons.append(f"{version} is below TLS 1.2")
    elif suite_name not in INTERMEDIATE_SUITES:
        reasons.append("not an intermediate suite (needs ECDHE/DHE with AES-GCM or ChaCha20)")
    weak = [part.strip("_") for part in _NEVER if part in suite_name]
    legacy = (
        version in LEGACY_VERSIONS
        and not weak
        and any(part in suite_name for part in _LEGACY_CIPHERS)
    )
    if version not in LEGACY_VERSIONS:
        reasons.append(f"{version} is broken (POODLE)")
    if weak:
        reasons.append("weak: " + ", ".join(weak))
    elif not any(part in suite_name for part in _LEGACY_CIPHERS):
        reasons.append("neither AES nor ChaCha20")
    return Grade(intermediate=intermediate, legacy_instrument=legacy, why="; ".join(reasons))
