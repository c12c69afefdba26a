"""Request and response bodies of the REST API; the OpenAPI schema is built from these."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["admin", "operator", "viewer"]
Level = Literal["Guest", "Observer", "Controller", "Administrator", "Full"]

# Same alphabet as a certificate identity name, so every user name makes a valid identity URI.
USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
PRINCIPAL_PATTERN = r"^labgate:(user|device):[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
INSTRUMENT_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,99})$"
# Passwords: the policy judges content; this only bounds what one request may make us hash.
PASSWORD = Field(min_length=1, max_length=1024)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str
    message: str


class LoginRequest(Strict):
    username: str = Field(min_length=1, max_length=64)
    password: str = PASSWORD


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=256)


class PasswordChangeRequest(Strict):
    old_password: str = PASSWORD
    new_password: str = PASSWORD


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (RFC 6750 scheme name)
    expires_in: int
    password_change_required: bool = False


class Done(BaseModel):
    ok: bool = True


class Me(BaseModel):
    identity: str
    kind: Literal["user", "device"]
    name: str
    role: str


class UserCreate(Strict):
    username: str = Field(pattern=USERNAME_PATTERN)
    role: Role = "viewer"
    password: str | None = Field(default=None, min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: str
    disabled: bool
    password_change_required: bool
    created_at: datetime


class UserCreated(BaseModel):
    user: UserOut
    one_time_password: str | None = None


class PasswordReset(BaseModel):
    one_time_password: str


class Location(Strict):
    latitude: float = Field(ge=-90, le=90)
    longitude: float = Field(ge=-180, le=180)


class DeviceCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    location: Location | None = None


class DeviceOut(BaseModel):
    id: str
    identity: str
    name: str
    owner: str | None
    latitude: float | None
    longitude: float | None
    revoked: bool
    online: bool
    created_at: datetime


class DeviceCreated(BaseModel):
    device: DeviceOut
    credentials: TokenPair


class GrantCreate(Strict):
    principal: str = Field(pattern=PRINCIPAL_PATTERN)
    instrument: str = Field(pattern=INSTRUMENT_PATTERN)
    level: Level


class GrantOut(BaseModel):
    id: int
    principal: str
    instrument: str
    level: str
    created_at: datetime


class CertificateRequest(Strict):
    csr_pem: str = Field(min_length=1, max_length=16_384)


class CertificateOut(BaseModel):
    serial: str
    identity: str
    not_after: datetime
    certificate_pem: str
    chain_pem: str


class PublicLocation(BaseModel):
    latitude: float
    longitude: float


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"
