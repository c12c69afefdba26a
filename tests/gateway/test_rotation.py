"""The gateway across an issuing-CA rotation: clients with certificates from the retired issuing
CA and from the new one are both let in; one revoked after the rotation is refused, the retired
issuer's CRL saying so from the same PEM file as the new one's."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

from labgate.gateway.config import load_config
from labgate.pki import CertificateAuthority, Profile

from .conftest import INSTRUMENTS, GatewayThread, Pki, RawClient, _client, write_config


def test_clients_of_the_old_and_new_issuing_ca_are_admitted_and_a_revoked_old_one_is_not(
    tmp_path: Path, simulator: Any
) -> None:
    directory = tmp_path / "pki"
    directory.mkdir()
    with CertificateAuthority.init(directory / "ca", passphrase=None, unencrypted=True) as ca:
        server = ca.issue(Profile.GATEWAY, "gw", dns=[*INSTRUMENTS, "localhost"], ips=["127.0.0.1"])
        ca.handed_out(server)
        server.write(directory / "gateway")
        clients = {name: _client(ca, directory, name) for name in ("alice", "mallory")}
        ca.rotate_issuing(passphrase=None)
        clients["bob"] = _client(ca, directory, "bob")
        ca.revoke(clients["mallory"].serial, "keyCompromise")
        (directory / "ca.crl").write_bytes(ca.crl_pem_bundle())
        (directory / "root.crt").write_bytes(ca.root_pem)
        pki = Pki(
            directory=directory,
            ca=ca,
            root=directory / "root.crt",
            gateway_crt=directory / "gateway.crt",
            gateway_key=directory / "gateway.key",
            crl=directory / "ca.crl",
            clients=clients,
            other_root=directory / "root.crt",
        )
        config = write_config(
            tmp_path,
            pki,
            simulator,
            grants={"alice": "Observer", "bob": "Observer", "mallory": "Observer"},
        )
        gateway = GatewayThread(load_config(config))
        opened: list[RawClient] = []
        try:
            for who in ("alice", "bob"):
                client = RawClient(gateway, pki, who)
                opened.append(client)
                assert client.line().startswith(b"READy"), who
                assert client.ask("0 ACC Observer") == b"OK 0", who
            try:
                mallory = RawClient(gateway, pki, "mallory")
                opened.append(mallory)
                first = mallory.line()
            except (ssl.SSLError, ConnectionResetError):
                first = b""
            assert not first.startswith(b"READy"), "a revoked old certificate got in"
            gateway.call(gateway.gateway.audit.flush())
            events = [json.loads(x) for x in gateway.gateway.audit.path.read_text().splitlines()]
            refusals = [e for e in events if e.get("event") == "handshake_failure"]
            assert refusals and "certificate revoked" in str(refusals[-1]["reason"]), refusals
        finally:
            for client in opened:
                client.close()
            gateway.stop()
