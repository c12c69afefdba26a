"""Fixtures shared by every part's tests: the outside TLS scanner, a free port for a child process,
and the Hypothesis profile."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import hypothesis
import pytest
from cryptography.utils import CryptographyDeprecationWarning

# Hypothesis's 200 ms deadline per example and its too-slow health check measure the machine, not
# the code: with several tests running at once a 0.2 ms example once took 305 ms, and the test
# failed as "flaky". What a test proves does not depend on either.
hypothesis.settings.register_profile(
    "labgate", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("labgate")


def _free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` now, for a child that binds it itself (certbot's standalone
    listener, a configured gateway port). Taken below the kernel's ephemeral range, which every
    `bind(0)` and outgoing connection of the other test workers draws from: a port probed there
    and released could be handed to one of them before the child binds it."""
    import random
    import socket

    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = random.Random().sample(range(10000, max(low, 10100)), 50)
    for port in candidates:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port below {low} on {host} after 50 tries")


@pytest.fixture(scope="session")
def free_port() -> Callable[..., int]:
    """`free_port(host="127.0.0.1") -> int`: a port no other test worker will be given by the
    kernel meanwhile (see `_free_port`). A server the test itself runs binds port 0 instead."""
    return _free_port


def _mozilla_intermediate_issues(
    address: tuple[str, int],
    *,
    server_name: str,
    ca: Path,
    client_cert: tuple[Path, Path] | None = None,
) -> dict[str, str]:
    """Scan a live TLS server with sslyze and check it against Mozilla's intermediate profile:
    {} when it complies, else sslyze's issues by check ("tls_curves": "... are supported").

    `client_cert` (certificate chain, key) for a server that requires one. sslyze's SSL 2.0 probe
    cannot load an EC key, so give it an RSA one."""
    from sslyze import (
        ClientAuthenticationCredentials,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
        ServerScanStatusEnum,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )
    from sslyze.plugins.certificate_info.implementation import CertificateInfoExtraArgument
    from sslyze.scanner.models import ScanCommandsExtraArguments

    credentials = None
    if client_cert is not None:
        chain, key = client_cert
        credentials = ClientAuthenticationCredentials(certificate_chain_path=chain, key_path=key)
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(hostname=address[0], port=address[1]),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication=server_name,
            tls_client_auth_credentials=credentials,
            network_timeout=5,
        ),
        scan_commands=SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca)
        ),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=8)
    with warnings.catch_warnings():
        # sslyze's own bundled trust stores hold a root with a serial cryptography frowns on.
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        scanner.queue_scans([request])
        (result,) = list(scanner.get_results())
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, "".join(
        result.connectivity_error_trace.format() if result.connectivity_error_trace else ()
    )
    assert result.scan_result is not None
    failed = {
        command.value: str(attempt.error_trace)
        for command in SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER
        if (attempt := getattr(result.scan_result, command.value)).error_trace is not None
    }
    assert not failed, f"sslyze could not run every check: {failed}"
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, profile)
    except ServerNotCompliantWithTlsConfiguration as exc:
        return exc.issues
    return {}


@pytest.fixture(scope="session")
def mozilla_intermediate_issues() -> Callable[..., dict[str, str]]:
    """`issues((host, port), server_name=..., ca=root, client_cert=None) -> {check: problem}`:
    what sslyze finds against Mozilla's intermediate profile on a live server ({} if none)."""
    return _mozilla_intermediate_issues
