"""`labgate ca check-chain` on chains a customer's own CA made with the real `openssl` commands:
complete and ordered, out of order, an intermediate missing, the wrong key, expired, names not
covered, and the wildcard cases of RFC 6125."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from labgate.cli.ca import app

# The customer's leaf names: one host, one wildcard, one address.
LEAF_SANS = "DNS:gw.customer.example,DNS:*.lab.customer.example,IP:192.0.2.10"


def openssl(*argv: object, cwd: Path | None = None) -> str:
    result = subprocess.run(
        ["openssl", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@dataclass(frozen=True)
class CustomerCa:
    """A root, an intermediate and leaves, each made by `openssl` alone."""

    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    def key(self, name: str) -> Path:
        path = self.path(f"{name}.key")
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
        return path

    def leaf(
        self, name: str, *, sans: str = LEAF_SANS, start: str | None = None, end: str | None = None
    ) -> Path:
        """A server leaf signed by the intermediate; `start`/`end` as YYYYMMDDHHMMSSZ."""
        key = self.key(name)
        csr = self.path(f"{name}.csr")
        openssl("req", "-new", "-key", key, "-subj", f"/CN={name}", "-out", csr)
        ext = self.path(f"{name}.ext")
        ext.write_text(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
            f"extendedKeyUsage=serverAuth\nsubjectAltName={sans}\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
        )
        crt = self.path(f"{name}.crt")
        dates = ["-startdate", start or _ago(days=1), "-enddate", end or _ago(days=-90)]
        openssl(
            "ca", "-batch", "-config", self.path("ca.cnf"), "-notext", "-in", csr, "-out", crt,
            "-extfile", ext, *dates,
        )  # fmt: skip
        return crt

    def chain(self, name: str, *parts: str) -> Path:
        path = self.path(f"{name}.chain.pem")
        path.write_bytes(b"".join(self.path(p).read_bytes() for p in parts))
        return path


def _ago(*, days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y%m%d%H%M%SZ")


@pytest.fixture(scope="module")
def customer(tmp_path_factory: pytest.TempPathFactory) -> CustomerCa:
    ca = CustomerCa(tmp_path_factory.mktemp("customer-ca"))
    root_key = ca.key("root")
    openssl(
        "req", "-x509", "-new", "-key", root_key, "-subj", "/O=Customer/CN=Customer Root",
        "-days", "3650", "-out", ca.path("root.crt"),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    inter_key = ca.key("inter")
    openssl(
        "req", "-new", "-key", inter_key, "-subj", "/O=Customer/CN=Customer Intermediate",
        "-out", ca.path("inter.csr"),
    )  # fmt: skip
    ca.path("inter.ext").write_text(
        "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    openssl(
        "x509", "-req", "-in", ca.path("inter.csr"), "-CA", ca.path("root.crt"),
        "-CAkey", root_key, "-CAcreateserial", "-days", "1825",
        "-extfile", ca.path("inter.ext"), "-out", ca.path("inter.crt"),
    )  # fmt: skip
    (ca.directory / "db").mkdir()
    (ca.directory / "db" / "index.txt").write_text("")
    (ca.directory / "db" / "serial").write_text("1000\n")
    ca.path("ca.cnf").write_text(
        f"""[ca]
default_ca = customer
[customer]
dir = {ca.directory}
database = $dir/db/index.txt
serial = $dir/db/serial
new_certs_dir = $dir/db
certificate = $dir/inter.crt
private_key = $dir/inter.key
default_md = sha256
policy = anything
unique_subject = no
copy_extensions = none
[anything]
commonName = supplied
"""
    )
    ca.leaf("good")
    ca.leaf("expired", start=_ago(days=100), end=_ago(days=10))
    ca.leaf("future", start=_ago(days=-10), end=_ago(days=-100))
    ca.leaf("soon", end=_ago(days=-5))
    ca.key("stranger")
    return ca


def check(*argv: object) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["check-chain", *map(str, argv)])
    return result.exit_code, result.output


def problems(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("problem: ")]


def test_a_complete_ordered_chain_with_its_key_covering_its_names_passes(
    customer: CustomerCa,
) -> None:
    chain = customer.chain("good", "good.crt", "inter.crt")
    code, output = check(
        chain, "--key", customer.path("good.key"), "--ca", customer.path("root.crt"),
        "--name", "gw.customer.example", "--name", "bench3.lab.customer.example",
        "--name", "192.0.2.10", "--name", "GW.Customer.Example.",
    )  # fmt: skip
    assert code == 0, output
    assert problems(output) == []
    assert "ok: the chain may be installed" in output
    assert "days from now" in output


def test_the_root_in_the_file_completes_the_chain_and_is_noted(customer: CustomerCa) -> None:
    chain = customer.chain("with-root", "good.crt", "inter.crt", "root.crt")
    code, output = check(chain, "--key", customer.path("good.key"), "--name", "gw.customer.example")
    assert code == 0, output
    assert "ends with its root" in output


def test_out_of_order_is_named(customer: CustomerCa) -> None:
    chain = customer.chain("reversed", "inter.crt", "good.crt")
    code, output = check(
        chain, "--key", customer.path("good.key"), "--ca", customer.path("root.crt"),
        "--name", "gw.customer.example",
    )  # fmt: skip
    assert code == 1
    assert any("out of order" in p for p in problems(output)), output
    assert len(problems(output)) == 1, output


def test_a_missing_intermediate_is_named(customer: CustomerCa) -> None:
    for chain in (
        customer.chain("leaf-only", "good.crt"),
        customer.chain("gap", "good.crt", "root.crt"),
    ):
        code, output = check(
            chain, "--key", customer.path("good.key"), "--ca", customer.path("root.crt"),
            "--name", "gw.customer.example",
        )  # fmt: skip
        assert code == 1, output
        assert any("CN=Customer Intermediate" in p and "missing" in p for p in problems(output)), (
            output
        )


def test_without_the_root_the_chain_is_not_taken_as_complete(customer: CustomerCa) -> None:
    chain = customer.chain("good", "good.crt", "inter.crt")
    code, output = check(chain, "--key", customer.path("good.key"), "--name", "gw.customer.example")
    assert code == 1
    assert any("incomplete" in p and "--ca" in p for p in problems(output)), output


def test_the_wrong_key_is_named(customer: CustomerCa) -> None:
    chain = customer.chain("good", "good.crt", "inter.crt")
    for key in ("stranger.key", "inter.key"):
        code, output = check(
            chain, "--key", customer.path(key), "--ca", customer.path("root.crt"),
            "--name", "gw.customer.example",
        )  # fmt: skip
        assert code == 1
        assert problems(output) == [
            f"problem: {customer.path(key)} is not the key of the leaf (CN=good)"
        ], output


def test_an_encrypted_key_is_named_not_asked_for(customer: CustomerCa, tmp_path: Path) -> None:
    locked = tmp_path / "locked.key"
    openssl(
        "pkey", "-in", customer.path("good.key"), "-aes256", "-passout", "pass:a long passphrase",
        "-out", locked,
    )  # fmt: skip
    chain = customer.chain("good", "good.crt", "inter.crt")
    code, output = check(
        chain, "--key", locked, "--ca", customer.path("root.crt"), "--name", "gw.customer.example"
    )
    assert code == 1
    assert problems(output) == [
        f"problem: {locked} is encrypted; the gateway and the control server load it unencrypted"
    ], output


def test_expired_and_not_yet_valid_leaves_are_named(customer: CustomerCa) -> None:
    for name, words in (("expired", "expired"), ("future", "is not valid until")):
        chain = customer.chain(name, f"{name}.crt", "inter.crt")
        code, output = check(
            chain, "--key", customer.path(f"{name}.key"), "--ca", customer.path("root.crt"),
            "--name", "gw.customer.example",
        )  # fmt: skip
        assert code == 1
        assert any(words in p and f"CN={name}" in p for p in problems(output)), output


def test_a_leaf_expiring_soon_passes_and_says_so(customer: CustomerCa) -> None:
    chain = customer.chain("soon", "soon.crt", "inter.crt")
    code, output = check(
        chain, "--key", customer.path("soon.key"), "--ca", customer.path("root.crt"),
        "--name", "gw.customer.example", "--json",
    )  # fmt: skip
    assert code == 0, output
    report = json.loads(output)
    assert report["ok"] is True and 4 < report["days_left"] < 5.1
    assert any("expires in" in n for n in report["notes"])


@pytest.mark.parametrize(
    "name",
    [
        "other.customer.example",  # simply not there
        "lab.customer.example",  # the wildcard's parent: * is one label, never none
        "a.b.lab.customer.example",  # nor two
        "xlab.customer.example",  # nor part of a label
        "192.0.2.11",  # another address
        "customer.example",
        "gw.customer.example.evil.example",  # a suffix trick
    ],
)
def test_a_name_not_covered_is_named(customer: CustomerCa, name: str) -> None:
    chain = customer.chain("good", "good.crt", "inter.crt")
    code, output = check(
        chain, "--key", customer.path("good.key"), "--ca", customer.path("root.crt"),
        "--name", name,
    )  # fmt: skip
    assert code == 1
    assert len(problems(output)) == 1 and "not" in problems(output)[0], output


def test_an_address_is_never_covered_by_a_dns_name_and_a_bad_wildcard_covers_nothing(
    customer: CustomerCa,
) -> None:
    leaf = customer.leaf(
        "odd", sans="DNS:192.0.2.20,DNS:w*.customer.example,DNS:*.example,DNS:ok.customer.example"
    )
    chain = customer.chain("odd", "odd.crt", "inter.crt")
    assert leaf.is_file()
    for name in ("192.0.2.20", "www.customer.example", "customer.example", "evil.example"):
        code, output = check(
            chain, "--key", customer.path("odd.key"), "--ca", customer.path("root.crt"),
            "--name", name,
        )  # fmt: skip
        assert code == 1, (name, output)
        assert len(problems(output)) == 1, output


def test_several_problems_are_each_named_once_in_json(customer: CustomerCa) -> None:
    chain = customer.chain("expired-reversed", "inter.crt", "expired.crt")
    code, output = check(
        chain, "--key", customer.path("stranger.key"), "--ca", customer.path("root.crt"),
        "--name", "nowhere.example", "--json",
    )  # fmt: skip
    assert code == 1
    report = json.loads(output)
    assert report["ok"] is False
    text = "\n".join(report["problems"])
    for words in ("out of order", "is not the key", "expired", "nowhere.example"):
        assert words in text, text


def test_a_file_that_is_no_chain_is_one_error_line(customer: CustomerCa, tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("hello\n")
    code, output = check(bogus, "--key", customer.path("good.key"), "--name", "a.example")
    assert code == 1
    assert "no PEM certificate" in output
    assert "Traceback" not in output
