"""Request and response bodies of the REST API; the OpenAPI schema is built from these."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from labgate.auth.usernames import CANONICAL_PATTERN, canonical_username
from labgate.scpi.access import AccessLevel

Role = Literal["admin", "operator", "viewer", "auditor"]
LevelName = Literal["Guest", "Observer", "Controller", "Administrator", "Full"]


def _level_label(value: object) -> object:
    """`observer`, `OBSERVER` -> `Observer`, as gateway.toml reads them; anything else as given."""
    if isinstance(value, str):
        try:
            return AccessLevel.parse(value).label
        except ValueError:
            return value
    return value


# Any case in requests, as in gateway.toml; always the instrument's spelling in responses.
Level = Annotated[LevelName, BeforeValidator(_level_label)]


def _canonical_name(value: object) -> object:
    return canonical_username(value) if isinstance(value, str) else value


def _canonical_principal(value: object) -> object:
    """A user principal names the user in canonical form; a device id is left as it is."""
    prefix = "labgate:user:"
    if isinstance(value, str) and value.startswith(prefix):
        return prefix + canonical_username(value[len(prefix) :])
    return value


# User names are stored canonical (labgate.auth.usernames): `Alice` is created as `alice`.
USERNAME_PATTERN = CANONICAL_PATTERN
PRINCIPAL_PATTERN = r"^labgate:(user|device):[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
IDENTITY_PATTERN = r"^labgate:(user|device|gateway):[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
INSTRUMENT_PATTERN = r"^(\*|[A-Za-z0-9][A-Za-z0-9._-]{0,99})$"
# Passwords: the policy judges content; this only bounds what one request may make us hash.
PASSWORD = Field(min_length=1, max_length=1024)


class Strict(BaseModel):
    """A request body: no unknown fields, and no control characters in any text.

    NUL cannot be stored in PostgreSQL text and no field has a use for a control character
    other than the line breaks and tabs of PEM text, so they are refused here, at the edge,
    before any value reaches the database.
    """

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _no_control_characters(cls, data: Any) -> Any:
        for path, text in _strings(data, ()):
            if any(_is_forbidden(char) for char in text):
                where = ".".join(path) or "body"
                raise ValueError(f"{where} contains a control character (NUL or similar)")
        return data


class ErrorBody(BaseModel):
    code: str
    message: str


def _is_forbidden(char: str) -> bool:
    return char not in "\t\n\r" and unicodedata.category(char) == "Cc"


def _strings(data: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], str]]:
    if isinstance(data, str):
        return [(path, data)]
    if isinstance(data, dict):
        found = []
        for key, value in data.items():
            found += _strings(key, path) + _strings(value, (*path, str(key)))
        return found
    if isinstance(data, list | tuple):
        return [item for value in data for item in _strings(value, path)]
    return []


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
    # Seconds the refresh token is taken for, and until the login's absolute end (None for a
    # device, whose chain has none): a client keeping a login alive plans by these.
    refresh_expires_in: int | None = None
    session_expires_in: int | None = None


class Done(BaseModel):
    ok: bool = True


class Me(BaseModel):
    identity: str
    kind: Literal["user", "device"]
    name: str
    role: str


class UserCreate(Strict):
    username: Annotated[str, BeforeValidator(_canonical_name)] = Field(pattern=USERNAME_PATTERN)
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
    principal: Annotated[str, BeforeValidator(_canonical_principal)] = Field(
        pattern=PRINCIPAL_PATTERN
    )
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


class GatewayCertificateRequest(Strict):
    csr_pem: str = Field(min_length=1, max_length=16_384)
    # `server`: what the gateway serves to clients; `client`: what it presents to this server.
    purpose: Literal["server", "client"]


class CertificateOut(BaseModel):
    serial: str
    identity: str
    not_after: datetime
    certificate_pem: str
    chain_pem: str


RevocationReason = Literal[
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "privilegeWithdrawn",
    "aACompromise",
]


class CertificateRevoke(Strict):
    reason: RevocationReason = "unspecified"


CertificateStatus = Literal["valid", "revoked", "expired"]


class CertificateInfo(BaseModel):
    serial: str  # lower-case hex, as `labgate ca list` and openssl show it
    identity: str
    profile: str | None
    status: CertificateStatus
    not_after: datetime
    issued_at: datetime | None
    revoked_at: datetime | None
    revocation_reason: str | None


class PublicLocation(BaseModel):
    latitude: float
    longitude: float


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    database: Literal["ok"] = "ok"


# -- device linking (README: "Linking a device: the wire protocol") ----------------------------

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9_-]{22,64}$"
LINK_SECRET_PATTERN = r"^[A-Za-z0-9_-]{43}$"  # noqa: S105 (a shape)
TOKEN_FIELD = Field(min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
# Hostname, model, serial: what a person reads on the approval screen; printable, bounded.
LABEL = Field(min_length=1, max_length=64, pattern=r"^[^\s].*$")


class Announcement(Strict):
    instance_id: str = Field(pattern=INSTANCE_ID_PATTERN)
    local_address: str = Field(min_length=3, max_length=64)
    hostname: str = LABEL
    model: str = LABEL
    serial: str = LABEL
    announce_token: str | None = Field(
        default=None, min_length=16, max_length=128, pattern=r"^[A-Za-z0-9_-]+$"
    )


class AnnouncementOut(BaseModel):
    instance_id: str
    announce_token: str | None
    public_address: str
    interval: int
    expires_at: datetime
    verification_pending: bool


class DiscoveredDevice(BaseModel):
    instance_id: str
    local_address: str
    hostname: str
    model: str
    serial: str
    first_seen_at: datetime
    last_seen_at: datetime
    link_page: str


class DiscoveryOut(BaseModel):
    public_address: str
    crowded: bool
    devices: list[DiscoveredDevice]


class LinkRequest(Strict):
    instance_id: str = Field(pattern=INSTANCE_ID_PATTERN)
    secret: str = Field(pattern=LINK_SECRET_PATTERN)


LinkState = Literal["queued", "delivered", "linked", "refused", "expired"]


class LinkQueued(BaseModel):
    instance_id: str
    verification_id: str
    expires_at: datetime
    state: LinkState


class LinkStatus(BaseModel):
    instance_id: str
    state: LinkState
    device_id: str | None


class VerificationPoll(Strict):
    announce_token: str = TOKEN_FIELD
    wait_seconds: float = Field(default=0, ge=0, le=25)


class VerificationOut(BaseModel):
    verification_id: str
    device_id: str
    proof: str
    linked_by: str
    expires_at: datetime


class LinkComplete(Strict):
    announce_token: str = TOKEN_FIELD
    verification_id: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    csr_pem: str = Field(min_length=1, max_length=16_384)


class LinkRefuse(Strict):
    announce_token: str = TOKEN_FIELD
    verification_id: str = Field(min_length=16, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    reason: Literal["secret_mismatch"] = "secret_mismatch"


class LinkEnded(BaseModel):
    state: Literal["ended"] = "ended"
    reason: str


class Enrolment(BaseModel):
    """What a device holds at the end of either linking flow."""

    device_id: str
    identity: str
    serial: str
    not_after: datetime
    certificate_pem: str
    chain_pem: str
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 (RFC 6750 scheme name)
    expires_in: int


class DeviceCodeRequest(Strict):
    model: str = LABEL
    serial: str = LABEL
    hostname: str = LABEL
    local_address: str | None = Field(default=None, min_length=3, max_length=64)
    instance_id: str | None = Field(default=None, pattern=INSTANCE_ID_PATTERN)


class DeviceCodeOut(BaseModel):
    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int
    device_id: str


class DeviceCodeInfo(BaseModel):
    user_code: str
    device_id: str
    model: str
    serial: str
    hostname: str
    local_address: str | None
    public_address: str
    requested_at: datetime
    expires_at: datetime


class DeviceCodeApproval(Strict):
    user_code: str = Field(min_length=1, max_length=32)
    approve: bool = True


class DeviceCodeDecision(BaseModel):
    status: Literal["approved", "denied"]
    device_id: str


DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


class DeviceTokenRequest(Strict):
    grant_type: str = Field(min_length=1, max_length=128)
    device_code: str = Field(min_length=1, max_length=128)
    csr_pem: str = Field(min_length=1, max_length=16_384)


class Unlinked(BaseModel):
    device_id: str
    state: Literal["unlinked"] = "unlinked"


class ExternalKeyCreate(Strict):
    """A new ACME external account binding and the names its account may order."""

    label: str = Field(min_length=1, max_length=100)
    dns_suffixes: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list, max_length=64
    )
    ip_ranges: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list, max_length=64
    )


class ExternalKeyOut(BaseModel):
    kid: str
    label: str
    dns_suffixes: list[str]
    ip_ranges: list[str]
    created_at: datetime
    created_by: str
    revoked_at: datetime | None
    account_id: str | None


class ExternalKeyCreated(BaseModel):
    """The credential and its HMAC key (base64url), shown here once and never again."""

    external_key: ExternalKeyOut
    hmac_key: str


# --- jobs (labgate.control.jobs) ------------------------------------------------------------
JOB_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$"
GROUP_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
JobStateName = Literal[
    "QUEUED", "IN_PROGRESS", "CANCELING", "SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED"
]
ReportStatus = Literal["IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "CANCELED"]


class JobCreate(Strict):
    """A job for one device (`device_id`) or for every device of a group (`group`)."""

    type: str = Field(pattern=JOB_TYPE_PATTERN)
    params: dict[str, Any] = Field(default_factory=dict)
    device_id: str | None = Field(default=None, pattern=DEVICE_ID_PATTERN)
    group: str | None = Field(default=None, pattern=GROUP_PATTERN)
    not_after_seconds: int | None = Field(default=None, ge=60, le=365 * 24 * 3600)
    in_progress_seconds: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    max_attempts: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _one_target(self) -> JobCreate:
        if (self.device_id is None) == (self.group is None):
            raise ValueError("name exactly one of device_id and group")
        return self


class JobOut(BaseModel):
    id: str
    device_id: str
    type: str
    params: dict[str, Any]
    state: JobStateName
    version: int
    attempt: int
    max_attempts: int
    status_details: dict[str, Any]
    output: str | None
    forced: bool
    rollout_id: int | None
    wave: int | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    not_after: datetime


class JobCancel(Strict):
    force: bool = False


class JobDocumentOut(BaseModel):
    job_id: str
    state: JobStateName
    version: int
    attempt: int
    # The signed job (labgate.auth.jobdocument): what the device verifies and runs.
    document: str


class JobNext(BaseModel):
    job: JobDocumentOut | None
    # Ask again after about this long (the agent adds jitter).
    poll_seconds: int


class JobReport(Strict):
    status: ReportStatus
    expected_version: int = Field(ge=1, le=2**31 - 1)
    status_details: dict[str, Any] = Field(default_factory=dict)
    # With the final report only: what the job collected (logs), at most 64 KiB of text.
    output: str | None = Field(default=None, max_length=65536)


class JobStateOut(BaseModel):
    job_id: str
    state: JobStateName
    version: int
    # The server asks the device to stop between steps and report CANCELED.
    cancel_requested: bool


class GroupPut(Strict):
    devices: list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]] = Field(max_length=10_000)


class GroupOut(BaseModel):
    name: str
    owner: str | None
    devices: list[str]


class RolloutWindow(Strict):
    timezone: str = Field(min_length=1, max_length=64)
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")


class RolloutCreate(Strict):
    """A job over a group (or a device list) in waves, e.g. `["1", "10%", "rest"]`."""

    type: str = Field(pattern=JOB_TYPE_PATTERN)
    params: dict[str, Any] = Field(default_factory=dict)
    group: str | None = Field(default=None, pattern=GROUP_PATTERN)
    devices: list[Annotated[str, Field(pattern=DEVICE_ID_PATTERN)]] | None = Field(
        default=None, max_length=10_000
    )
    waves: list[Annotated[str, Field(max_length=8)]] = Field(
        default_factory=lambda: ["1", "10%", "rest"], min_length=1, max_length=10
    )
    failure_threshold: float = Field(default=0.1, ge=0, le=1)
    window: RolloutWindow | None = None
    not_after_seconds: int | None = Field(default=None, ge=60, le=365 * 24 * 3600)
    in_progress_seconds: int | None = Field(default=None, ge=10, le=7 * 24 * 3600)
    max_attempts: int = Field(default=1, ge=1, le=10)

    @model_validator(mode="after")
    def _one_target(self) -> RolloutCreate:
        if (self.devices is None) == (self.group is None):
            raise ValueError("name exactly one of group and devices")
        return self


class RolloutOut(BaseModel):
    id: int
    type: str
    state: Literal["RUNNING", "HALTED", "COMPLETED"]
    current_wave: int
    waves: list[int]
    failure_threshold: float
    window: dict[str, str] | None
    halted_reason: str | None
    jobs: dict[str, int]
    created_by: str
    created_at: datetime
    updated_at: datetime
