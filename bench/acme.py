"""Benchmark of ACME issuance: certificates per second through `/acme` with certbot's own
`acme` library, against labgate's direct issuance, in one run.

step-ca, the usual yardstick for a private ACME CA, is in none of the registries this project
installs from (PyPI has only client wrappers for it, Debian only its Go libraries), so the peers
are labgate's own direct issuance on the same server and CA:
- `POST /api/v1/certificates` with a CSR (one authenticated request per certificate);
- the CA library alone, `CertificateAuthority.sign_csr` in this process (no HTTP, no database):
  the floor every path pays.

ACME here is the whole client run per certificate: a new order, the authorization fetched, the
http-01 challenge answered by a tiny HTTP server in this process and validated by the server
over loopback, finalize with a fresh ECDSA P-256 CSR, the chain downloaded. `--clients` accounts
(each with its own EAB credential) run at once on threads. certbot's `finalize_order` sleeps 1 s
before its first poll; this bench finalizes with `begin_finalization` (labgate answers finalize
with the order already valid) and fetches the certificate at once, so the figure is the
server's, not that sleep's.

    .venv/bin/python bench/acme.py [--certificates 20] [--clients 4] [--postgres URL]

Everything listens on 127.0.0.1; every loop is bounded by its count and a deadline.
"""

from __future__ import annotations

import argparse
import datetime
import http.server
import os
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import josepy
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# This file is named after what it measures, as certbot's library is: run as a script, its own
# folder comes first on the path and `import acme` would find this file. The library first, then
# the folder again for the server benchmark's helpers.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]
from acme import challenges, client, messages  # noqa: E402

sys.path.insert(0, str(_HERE))
# The helpers of the server and fleet benchmarks beside it.
from fleet import admin_token  # noqa: E402
from server import postgres_database, start, stop  # noqa: E402

NAME = "host.bench.test"
DEADLINE_SECONDS = 120


class Responder:
    """http-01 answers by token, served on loopback for the server's validation."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}
        answers = self.answers

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = answers.get(self.path.rsplit("/", 1)[-1], b"")
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def csr_pem(common_name: str, *, dns: tuple[str, ...] = ()) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(d) for d in dns]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def acme_account(directory_url: str, root: Path, eab: dict[str, str]) -> client.ClientV2:
    key = josepy.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    # certbot's library passes verify=True on every request, so requests reads the CA bundle
    # from the environment (as certbot does): this process's own, set to labgate's root.
    os.environ["REQUESTS_CA_BUNDLE"] = str(root)
    net = client.ClientNetwork(key, user_agent="labgate-bench")
    directory = client.ClientV2.get_directory(directory_url, net)
    acme = client.ClientV2(directory, net)
    binding = messages.ExternalAccountBinding.from_data(
        account_public_key=key.public_key(),
        kid=eab["kid"],
        hmac_key=eab["hmac_key"],
        directory=directory,
    )
    registration = messages.NewRegistration.from_data(
        terms_of_service_agreed=True, external_account_binding=binding
    )
    net.account = acme.new_account(registration)
    return acme


def acme_certificate(acme: client.ClientV2, responder: Responder) -> None:
    order = acme.new_order(csr_pem(NAME, dns=(NAME,)))
    for authz in order.authorizations:
        for body in authz.body.challenges:
            if isinstance(body.chall, challenges.HTTP01):
                response, validation = body.response_and_validation(acme.net.key)
                responder.answers[body.chall.encode("token")] = validation.encode()
                acme.answer_challenge(body, response)
    deadline = datetime.datetime.now() + datetime.timedelta(seconds=DEADLINE_SECONDS)
    order = acme.poll_authorizations(order, deadline)
    order = acme.begin_finalization(order)
    certificate_url = order.body.certificate
    assert order.body.status == messages.STATUS_VALID and certificate_url is not None
    chain = acme.net.post(certificate_url, None, new_nonce_url=acme.directory["newNonce"])
    assert chain.text.count("BEGIN CERTIFICATE") == 2


def rate(action: Callable[[], None], count: int, workers: int) -> float:
    """Certificates per second doing `action` `count` times on `workers` threads."""
    deadline = time.monotonic() + DEADLINE_SECONDS

    def bounded() -> None:
        if time.monotonic() < deadline:
            action()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(bounded) for _ in range(count)]:
            future.result()
    return count / (time.perf_counter() - started)


def run(args: argparse.Namespace, database_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as temp:
        data = Path(temp) / "server"
        init = [sys.executable, "-m", "labgate", "server", "init", "--data", str(data)]
        if database_url:
            init += ["--database-url", database_url]
        subprocess.run(init, check=True, capture_output=True)
        responder = Responder()
        env = {
            "LABGATE_ACME_HTTP_PORT": str(responder.port),
            "LABGATE_ACME_STATIC_HOSTS": f'{{"{NAME}": ["127.0.0.1"]}}',
            "LABGATE_ACME_ORDERS_PER_HOUR": "100000",
            "LABGATE_CLIENT_CERTIFICATE_DAYS": "1",
        }
        run_command = [sys.executable, "-m", "labgate", "server", "run", "--data", str(data)]
        server, ready = start([*run_command, "--listen", "127.0.0.1:0"], env, quiet=True)
        root = data / "ca" / "root.crt"
        try:
            figures = measure(ready["url"], data, root, responder, args)
        finally:
            stop(server)
            responder.close()
        floor = ca_floor(data, args.certificates)
    label = "PostgreSQL" if database_url else "SQLite"
    acme_rate, api_rate, acme_one, api_one = figures
    rows = [
        (f"ACME, certbot's acme library, {args.clients} accounts at once", acme_rate),
        ("ACME, one account, one order at a time", acme_one),
        (f"direct: POST /api/v1/certificates, {args.clients} at once", api_rate),
        ("direct: POST /api/v1/certificates, one at a time", api_one),
        ("CA library alone (sign_csr, no HTTP, no database)", floor),
    ]
    load = os.getloadavg()[0]
    print(
        f"[{label}]  certificates per second (ECDSA P-256 keys made by the client; load {load:.1f})"
    )
    for what, value in rows:
        print(f"  {what:<56} {value:7.1f} /s")
    print(
        f"  ACME reaches {acme_rate / api_rate:.0%} of the direct API's rate "
        f"({args.clients} at once)"
    )


def measure(
    url: str, data: Path, root: Path, responder: Responder, args: argparse.Namespace
) -> tuple[float, float, float, float]:
    context = ssl.create_default_context(cafile=root)
    admin = {"Authorization": f"Bearer {admin_token(url, context, data)}"}
    with httpx.Client(base_url=url, verify=context, timeout=60) as http:
        eabs = []
        for index in range(args.clients):
            made = http.post(
                "/api/v1/acme/eab",
                headers=admin,
                json={"label": f"bench-{index}", "dns_suffixes": ["bench.test"]},
            ).json()
            eabs.append({"kid": made["external_key"]["kid"], "hmac_key": made["hmac_key"]})
        directory = f"{url}/acme/directory"
        accounts = [acme_account(directory, root, eab) for eab in eabs]
        turn = iter(range(10**9))
        lock = threading.Lock()

        def by_acme() -> None:
            with lock:
                acme = accounts[next(turn) % len(accounts)]
            acme_certificate(acme, responder)

        acme_certificate(accounts[0], responder)  # warm-up
        acme_one = rate(lambda: acme_certificate(accounts[0], responder), args.certificates, 1)
        acme_rate = rate(by_acme, args.certificates, args.clients)

        def by_api() -> None:
            response = http.post(
                "/api/v1/certificates", headers=admin, json={"csr_pem": csr_pem("admin").decode()}
            )
            assert response.status_code == 201, response.text

        by_api()
        api_one = rate(by_api, args.certificates, 1)
        api_rate = rate(by_api, args.certificates, args.clients)
    return acme_rate, api_rate, acme_one, api_one


def ca_floor(data: Path, count: int) -> float:
    from labgate.pki import CertificateAuthority, Profile

    passphrase = (data / "secrets" / "key-passphrase").read_bytes().strip()
    with CertificateAuthority.open(data / "ca", passphrase=passphrase) as ca:
        started = time.perf_counter()
        for _ in range(count):
            ca.handed_out(ca.sign_csr(csr_pem(NAME, dns=(NAME,)), Profile.SERVER))
        return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--certificates", type=int, default=20, help="per figure (default 20)")
    parser.add_argument("--clients", type=int, default=4, help="accounts at once (default 4)")
    parser.add_argument("--postgres", help="also run on this PostgreSQL server (admin URL)")
    args = parser.parse_args()
    run(args, None)
    postgres = args.postgres
    if postgres:
        url, (admin, name) = postgres_database(postgres, "labgate_bench_acme_")
        try:
            run(args, url)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
