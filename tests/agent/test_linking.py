"""End to end on loopback: the real control server, `labgate agent run` as a process, and the
person's side through the API (the browser's part is tests/agent/test_browser.py)."""

from __future__ import annotations

import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from labgate.agent import headless

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def discovered(server: Any, admin: dict[str, str], instance_id: str) -> headless.Found:
    deadline = time.monotonic() + 30
    with server.client() as http:
        while time.monotonic() < deadline:
            for found in headless.discover(http, admin["Authorization"].split()[1]):
                if found.instance_id == instance_id:
                    return found
            time.sleep(0.3)
    raise AssertionError(f"{instance_id} never listed")


def every_file_under(*directories: Path) -> bytes:
    return b"".join(p.read_bytes() for d in directories for p in d.rglob("*") if p.is_file())


def check_linked_files(data: Path, device_id: str) -> None:
    pem = (data / "device.pem").read_bytes()
    assert stat.S_IMODE((data / "device.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tokens.json").stat().st_mode) == 0o600
    certificate = x509.load_pem_x509_certificate(pem)
    key = load_pem_private_key(pem[pem.index(b"-----BEGIN PRIVATE KEY") :], None)
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()  # type: ignore[union-attr]
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"labgate:device:{device_id}"
    ]


def test_an_agent_links_by_code_and_unlinks(server: Any, start_agent: Any) -> None:
    agent = start_agent("--link-code")
    assert agent.ready["state"] == "unlinked"
    code = agent.ready["code"]
    assert code and len(code.replace("-", "")) == 8
    assert f"reason=code_issued enter code {code}" in agent.stderr()
    admin = server.admin()
    with server.client() as http:
        shown = http.get("/api/v1/device-codes/approve", params={"user_code": code}, headers=admin)
        assert shown.status_code == 200, shown.text
        assert shown.json()["model"] == "qPCR-sim" and shown.json()["serial"] == "SN-0001"
        approved = http.post(
            "/api/v1/device-codes/approve", json={"user_code": code, "approve": True}, headers=admin
        )
        assert approved.status_code == 200, approved.text
    status = agent.wait_for("linked")
    assert "reason=linked" in agent.stderr()
    check_linked_files(agent.data, status["device_id"])
    agent.stop()
    again = start_agent("--link-code")  # a linked agent starts linked: no code, no page
    assert again.ready == {
        "state": "linked",
        "instance_id": None,
        "local": None,
        "code": None,
        "device_id": status["device_id"],
    }
    again.stop()

    from typer.testing import CliRunner

    from labgate.cli.app import app

    shown_status = CliRunner().invoke(app, ["agent", "status", "--data", str(agent.data), "--json"])
    assert shown_status.exit_code == 0, shown_status.output
    assert '"state": "linked"' in shown_status.output
    unlinked = CliRunner().invoke(app, ["agent", "unlink", "--data", str(agent.data)])
    assert unlinked.exit_code == 0, unlinked.output
    assert not (agent.data / "device.pem").exists()
    with server.client() as http:
        device = http.get(f"/api/v1/devices/{status['device_id']}", headers=server.admin())
        assert device.json()["revoked"] is True


def test_an_agent_links_on_the_local_network_and_the_secret_stays_put(
    server: Any, start_agent: Any
) -> None:
    agent = start_agent()
    assert agent.ready["state"] == "unlinked" and agent.ready["code"] is None
    admin = server.admin()
    found = discovered(server, admin, agent.ready["instance_id"])
    assert found.local_address == agent.ready["local"]
    assert (found.model, found.serial) == ("qPCR-sim", "SN-0001")
    secret = headless.read_secret(found)  # as the browser's popup gets it
    with server.client() as http:
        path = f"/api/v1/discovery/{found.instance_id}/link"
        queued = http.post(
            path, headers=admin, json={"instance_id": found.instance_id, "secret": secret}
        )
        assert queued.status_code == 202, queued.text
        status = agent.wait_for("linked")
        assert http.get(path, headers=admin).json()["state"] == "linked"
    check_linked_files(agent.data, status["device_id"])
    # The local page is gone once linked.
    with pytest.raises(httpx.HTTPError):
        httpx.get(found.link_page, timeout=5)
    agent.stop()
    assert secret not in agent.stderr()
    assert secret.encode() not in every_file_under(agent.data, server.data_dir)


def test_a_wrong_secret_ends_discovery_for_this_start(server: Any, start_agent: Any) -> None:
    agent = start_agent()
    admin = server.admin()
    found = discovered(server, admin, agent.ready["instance_id"])
    guess = "A" * 43
    with server.client() as http:
        path = f"/api/v1/discovery/{found.instance_id}/link"
        first = http.post(
            path, headers=admin, json={"instance_id": found.instance_id, "secret": guess}
        )
        assert first.status_code == 202, first.text
        deadline = time.monotonic() + 30
        while "reason=secret_mismatch" not in agent.stderr() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "reason=secret_mismatch" in agent.stderr()
        time.sleep(0.5)
        second = http.post(
            path, headers=admin, json={"instance_id": found.instance_id, "secret": guess}
        )
        assert second.status_code in (404, 410), second.text
    # The page no longer hands out the real secret either.
    answer = httpx.get(found.link_page, timeout=5)
    assert answer.status_code == 410 and "secret_mismatch" in answer.text
    assert agent.status()["state"] == "unlinked"
    assert not (agent.data / "device.pem").exists()


def test_labgate_link_does_the_exchange_from_a_terminal(server: Any, start_agent: Any) -> None:
    from typer.testing import CliRunner

    from labgate.cli.app import app

    agent = start_agent()
    admin = server.admin()
    discovered(server, admin, agent.ready["instance_id"])
    result = CliRunner().invoke(
        app,
        ["link", "--server", server.url, "--server-ca", str(server.root), "--user", "admin"],
        input="violet staple hammock orbit quietly\n",
    )
    assert result.exit_code == 0, result.output
    assert "linked device" in result.output
    assert "violet" not in result.output.replace("password for admin:", "")
    agent.wait_for("linked")


def test_each_start_has_a_fresh_instance_id_and_secret(server: Any, start_agent: Any) -> None:
    first = start_agent()
    first_page = httpx.get(
        f"http://{first.ready['local']}/link?instance_id={first.ready['instance_id']}", timeout=5
    ).text
    first.stop()
    again = start_agent()
    assert again.ready["instance_id"] != first.ready["instance_id"]
    page = f"http://{again.ready['local']}/link?instance_id="
    assert httpx.get(page + first.ready["instance_id"], timeout=5).status_code == 403
    second_page = httpx.get(page + again.ready["instance_id"], timeout=5).text
    secret_of = lambda text: text.split('"secret": "', 1)[1].split('"', 1)[0]  # noqa: E731
    assert secret_of(first_page) != secret_of(second_page)
    assert b'"secret"' not in every_file_under(again.data)


def test_an_agent_outside_its_local_networks_does_not_announce_and_links_by_code(
    server: Any, start_agent: Any
) -> None:
    agent = start_agent("--local-listen", "127.0.0.2:0", "--local-networks", "127.0.0.1/32")
    assert agent.ready["code"], "it falls back to the code flow"
    assert "reason=not_local own address 127.0.0.2" in agent.stderr()
    with server.client() as http:
        listed = http.get("/api/v1/discovery", headers=server.admin()).json()
    assert listed["devices"] == [] and listed["crowded"] is False


def test_a_denied_code_leaves_the_agent_unlinked(server: Any, start_agent: Any) -> None:
    agent = start_agent("--link-code")
    with server.client() as http:
        denied = http.post(
            "/api/v1/device-codes/approve",
            json={"user_code": agent.ready["code"], "approve": False},
            headers=server.admin(),
        )
        assert denied.status_code == 200, denied.text
    deadline = time.monotonic() + 30
    while "reason=access_denied" not in agent.stderr() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "reason=access_denied" in agent.stderr()
    assert agent.status()["state"] == "unlinked"
    assert not (agent.data / "device.pem").exists()


def test_a_stopped_unlinked_agent_says_so_in_status(server: Any, start_agent: Any) -> None:
    agent = start_agent()
    assert agent.status()["state"] == "unlinked"
    agent.stop()
    assert agent.process.returncode == 130
    assert agent.status()["state"] == "stopped"
    assert agent.status()["instance_id"] is None


def test_labgate_link_reads_no_page_outside_the_local_networks() -> None:
    from labgate.agent.errors import AgentError

    for page in (
        "http://8.8.8.8:46001/link?instance_id=x",
        "https://10.0.0.5:46001/link?instance_id=x",
        "http://10.0.0.5:46001/shutdown",
        "http://example.com/link",
    ):
        found = headless.Found(
            instance_id="x", local_address="", hostname="", model="", serial="", link_page=page
        )
        with pytest.raises(AgentError, match="not an agent's local page"):
            headless.read_secret(found)
