"""The agent's local page, attacked from the caller's side over real loopback sockets.

"Another network" is a second loopback address (127.0.0.2) the client binds, with the agent's
local networks narrowed to 127.0.0.1/32.
"""

from __future__ import annotations

import re
import socket
import time
from typing import Any

import httpx
import pytest

from labgate.agent import localpage

SERVER_ORIGIN = "https://127.0.0.1:8443"


def get(url: str, *, source: str = "127.0.0.1", **kwargs: Any) -> httpx.Response:
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(transport=transport, timeout=10) as client:
        return client.get(url, **kwargs)


def raw(address: str, data: bytes, *, source: str = "127.0.0.1", pause: float = 0.0) -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=15, source_address=(source, 0)) as s:
        s.sendall(data)
        if pause:
            time.sleep(pause)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_the_page_hands_the_secret_to_the_server_origin_only(local_page: Any) -> None:
    running = local_page()
    answer = get(running.url)
    assert answer.status_code == 200
    secret = running.page.secret.reveal()
    assert secret in answer.text
    message = f'{{"instance_id": "{running.page.instance_id}", "secret": "{secret}"}}'
    assert f'postMessage({message},"{SERVER_ORIGIN}")' in answer.text
    assert answer.text.count("postMessage(") == 1


def test_the_page_sends_no_cors_header_and_no_wildcard_anywhere(local_page: Any) -> None:
    running = local_page()
    answer = get(running.url, headers={"Origin": "https://evil.example"})
    assert answer.status_code == 200
    assert not [name for name in answer.headers if name.lower().startswith("access-control-")]
    assert "*" not in answer.text
    assert all("*" not in value for value in answer.headers.values())


def test_the_page_csp_allows_only_its_own_nonced_script(local_page: Any) -> None:
    running = local_page()
    answer = get(running.url)
    csp = answer.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([A-Za-z0-9_-]+)'", csp)
    assert nonce is not None
    assert "unsafe" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    scripts = re.findall(r"<script([^>]*)>", answer.text)
    assert scripts == [f' nonce="{nonce.group(1)}"']
    assert get(running.url).headers["content-security-policy"] != csp  # a nonce per answer
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"


def test_a_peer_outside_the_local_networks_gets_nothing(local_page: Any) -> None:
    running = local_page(networks="127.0.0.1/32")
    answer = get(running.url, source="127.0.0.2")
    assert answer.status_code == 403
    assert answer.text == "refused: not_local\n"
    assert running.page.secret.reveal() not in answer.text


def test_a_forged_forwarded_header_does_not_make_a_peer_local(local_page: Any) -> None:
    running = local_page(networks="127.0.0.1/32")
    forged = {
        "X-Forwarded-For": "127.0.0.1",
        "Forwarded": "for=127.0.0.1",
        "X-Real-IP": "127.0.0.1",
        "Host": "127.0.0.1",
    }
    answer = get(running.url, source="127.0.0.2", headers=forged)
    assert answer.status_code == 403
    assert "not_local" in answer.text


def test_an_outsider_learns_nothing_about_the_instance(local_page: Any) -> None:
    """Outside the networks every request gets the same answer, whatever it names."""
    running = local_page(networks="127.0.0.1/32")
    answers = {
        get(url, source="127.0.0.2").text
        for url in (
            running.url,
            running.url + "x",
            f"http://{running.address}/",
            f"http://{running.address}/link",
        )
    }
    assert answers == {"refused: not_local\n"}


@pytest.mark.parametrize(
    "query",
    [
        "",
        "?instance_id=",
        "?instance_id=wrong",
        "?other=1",
        "?instance_id={id}x",
        "?instance_id={id}&instance_id={id}",
    ],
)
def test_a_wrong_or_missing_instance_id_gets_nothing(local_page: Any, query: str) -> None:
    running = local_page()
    url = f"http://{running.address}/link" + query.format(id=running.page.instance_id)
    answer = get(url)
    assert answer.status_code == 403
    assert answer.text == "refused: instance_mismatch\n"


def test_after_the_window_the_page_gets_nothing(local_page: Any) -> None:
    running = local_page(announcements=3)
    for _ in range(3):
        running.loop.call_soon_threadsafe(running.page.window.count)
    time.sleep(0.2)
    answer = get(running.url)
    assert answer.status_code == 410
    assert answer.text == "refused: window_closed\n"


def test_after_a_wrong_proof_the_page_gets_nothing(local_page: Any) -> None:
    from labgate.agent.reasons import Reason

    running = local_page()
    running.loop.call_soon_threadsafe(running.page.window.close, Reason.SECRET_MISMATCH)
    time.sleep(0.2)
    answer = get(running.url)
    assert answer.status_code == 410
    assert answer.text == "refused: secret_mismatch\n"


@pytest.mark.parametrize("path", ["/", "/shutdown", "/status", "/link/", "/LINK", "/favicon.ico"])
def test_the_listener_offers_nothing_but_the_link_route(local_page: Any, path: str) -> None:
    running = local_page()
    answer = get(f"http://{running.address}{path}?instance_id={running.page.instance_id}")
    assert answer.status_code == 404


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "HEAD"])
def test_other_methods_are_refused_and_change_nothing(local_page: Any, method: str) -> None:
    running = local_page()
    transport = httpx.HTTPTransport(local_address="127.0.0.1")
    with httpx.Client(transport=transport, timeout=10) as client:
        answer = client.request(method, running.url, content=b"shutdown=1")
    assert answer.status_code == 405
    assert get(running.url).status_code == 200  # still serving, window still open


def test_a_request_head_over_the_limit_is_refused(local_page: Any) -> None:
    running = local_page()
    padding = b"X-Pad: " + b"a" * localpage.MAX_HEAD + b"\r\n"
    target = f"/link?instance_id={running.page.instance_id}".encode()
    answer = raw(running.address, b"GET " + target + b" HTTP/1.1\r\n" + padding + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert running.page.secret.reveal().encode() not in answer


def test_a_slow_request_head_is_cut_off(local_page: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(localpage, "HEAD_SECONDS", 0.5)
    running = local_page()
    target = f"/link?instance_id={running.page.instance_id}".encode()
    started = time.monotonic()
    answer = raw(running.address, b"GET " + target + b" HTTP/1.1\r\n", pause=0.0)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 10
    assert running.page.secret.reveal().encode() not in answer


@pytest.mark.parametrize(
    "line", [b"GET\r\n\r\n", b"GET /link HTTP/2\r\n\r\n", b"\x16\x03\x01\r\n\r\n"]
)
def test_a_garbled_request_line_is_refused(local_page: Any, line: bytes) -> None:
    running = local_page()
    assert raw(running.address, line).startswith(b"HTTP/1.1 400 ")


def test_the_secret_appears_in_no_log_line(
    local_page: Any, agent_log: pytest.LogCaptureFixture
) -> None:
    running = local_page(networks="127.0.0.1/32")
    get(running.url)
    get(running.url, source="127.0.0.2")
    get(running.url + "x")
    secret = running.page.secret.reveal()
    assert agent_log.records, "the page logs what it does"
    assert all(secret not in record.getMessage() for record in agent_log.records)
    reasons = {m.split()[0] for m in (r.getMessage() for r in agent_log.records)}
    assert {"reason=secret_handed_out", "reason=not_local", "reason=instance_mismatch"} <= reasons


def test_the_secret_does_not_show_in_repr_str_or_pickle(local_page: Any) -> None:
    import pickle

    running = local_page()
    secret = running.page.secret
    assert secret.reveal() not in repr(secret) + str(secret) + repr(running.page)
    with pytest.raises(TypeError):
        pickle.dumps(secret)


def test_in_the_code_flow_the_page_shows_the_code_and_never_the_secret(local_page: Any) -> None:
    from labgate.agent.reasons import Reason

    running = local_page()
    running.page.user_code = lambda: "BCDF-GHJK"
    running.loop.call_soon_threadsafe(running.page.window.close, Reason.DISCOVERY_ENDED)
    time.sleep(0.2)
    answer = get(running.url)
    assert answer.status_code == 200
    assert "BCDF-GHJK" in answer.text
    assert running.page.secret.reveal() not in answer.text
    assert "<script" not in answer.text
    assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert get(running.url, source="127.0.0.2").status_code == 403  # outsiders: still nothing
