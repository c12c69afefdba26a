"""What the ACME code needs of a running server, and the URLs of its resources.

`AcmeContext` is built once per server (by the runtime) from the settings, the database engine,
the CA and the sealer of EAB keys; `Urls` is built per request from the base URL in force (the
configured `acme_base_url`, or the scheme and Host the request came with).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from labgate.control.acme.external import Sealer
from labgate.control.settings import ControlSettings
from labgate.pki.authority import CertificateAuthority

PREFIX = "/acme"


@dataclass(frozen=True, slots=True, kw_only=True)
class AcmeContext:
    settings: ControlSettings
    engine: Engine
    sessions: sessionmaker[Session]
    ca: CertificateAuthority
    sealer: Sealer
    clock: Callable[[], datetime]

    @property
    def eab_required(self) -> bool:
        return not self.settings.acme_unsafe_eab_optional


@dataclass(frozen=True, slots=True, kw_only=True)
class Urls:
    """Absolute URLs of the ACME resources under `base` (`https://host:port`)."""

    base: str

    def resource(self, kind: str, ident: str = "") -> str:
        return f"{self.base}{PREFIX}/{kind}" + (f"/{ident}" if ident else "")

    @property
    def directory(self) -> str:
        return self.resource("directory")

    def account(self, ident: str) -> str:
        return self.resource("account", ident)

    def order(self, ident: str) -> str:
        return self.resource("order", ident)

    def authorization(self, ident: str) -> str:
        return self.resource("authz", ident)

    def challenge(self, ident: str) -> str:
        return self.resource("challenge", ident)

    def finalize(self, ident: str) -> str:
        return self.resource("finalize", ident)

    def certificate(self, ident: str) -> str:
        return self.resource("certificate", ident)

    def ident_of(self, kind: str, url: str) -> str | None:
        """The id in `url` if it is one of our `kind` URLs, else None."""
        prefix = self.resource(kind) + "/"
        if not url.startswith(prefix):
            return None
        ident = url[len(prefix) :]
        return ident if ident and "/" not in ident and len(ident) <= 64 else None

    def directory_object(self, *, eab_required: bool) -> dict[str, object]:
        return {
            "newNonce": self.resource("new-nonce"),
            "newAccount": self.resource("new-account"),
            "newOrder": self.resource("new-order"),
            "revokeCert": self.resource("revoke-cert"),
            "keyChange": self.resource("key-change"),
            "meta": {"externalAccountRequired": eab_required},
        }
