"""Benchmark of signed releases: serving a large target over TLS, and the device's install.

Prints, in one run:
- throughput (MB/s) and server CPU per MB of a release target (default 100 MiB of random bytes)
  fetched over TLS 1.3 (TLS_AES_128_GCM_SHA256, the same certificate and key) by curl from
  `labgate server run` at /tuf/targets/ and from Debian's nginx serving the same file (one
  worker, sendfile on). Target: labgate >= 0.5x nginx's throughput;
- the agent's verify-and-install of that target from an offline bundle (TUF metadata through
  ngclient, the copy off the bundle, python-tuf's length and SHA-256 check, the move into the
  inactive slot, the health check, the commit) against `sha256sum` of the same file, both from
  the page cache (and `openssl dgst -sha256`, the SHA-256 Python's hashlib uses). Target: within
  1.5x of sha256sum;
- the same install online, through the labgate server (download, verification, install).

Needs nginx and curl (`bench/setup.sh`). Loopback only; every loop is bounded by --rounds.

    .venv/bin/python bench/releases.py [--mib 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from labgate.agent.installation import (
    Bundle,
    Online,
    ReleaseConfig,
    ReleaseInstall,
    Source,
    install_root,
)
from labgate.releases import keyfiles
from labgate.releases.repository import Repository
from labgate.releases.verification import Binding
from server import cpu_seconds, start, stop

MIB = 1024 * 1024
CIPHER = "TLS_AES_128_GCM_SHA256"

NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log error;
events {{ worker_connections 64; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    types {{ application/octet-stream bin; }}
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location /tuf/ {{ alias {repo}/; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_tree_cpu(pid: int) -> float:
    """CPU seconds of `pid` and its children (nginx's master and worker)."""
    total = cpu_seconds(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return total + sum(cpu_seconds(int(child)) for child in children)


def fetch(url: str, ca: Path) -> tuple[float, int]:
    """One download with curl to /dev/null: (seconds, bytes)."""
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--fail",
            "--cacert",
            str(ca),
            "--tlsv1.3",
            "--tls13-ciphers",
            CIPHER,
            "-o",
            "/dev/null",
            "-w",
            "%{time_total} %{size_download}",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds, size = result.stdout.split()
    return float(seconds), int(size)


def serve_rounds(label: str, url: str, ca: Path, cpu: Callable[[], float], rounds: int) -> float:
    fetch(url, ca)  # warm: the page cache, the server's first request
    before = cpu()
    seconds = total = 0.0
    for _ in range(rounds):
        took, size = fetch(url, ca)
        seconds += took
        total += size
    used = cpu() - before
    rate = total / seconds / 1e6
    print(f"  {label:8} {rate:8.1f} MB/s   server CPU {used / (total / 1e6) * 1000:6.3f} ms/MB")
    return rate


def make_repository(base: Path, size: int) -> tuple[Repository, Binding, Path]:
    root = [keyfiles.generate() for _ in range(3)]
    targets, online = keyfiles.generate(), keyfiles.generate()
    now = datetime.now(UTC)
    repo = Repository.create(
        base / "repo",
        root_signers=root,
        root_threshold=2,
        targets_signer=targets,
        online_signer=online,
        now=now,
    )
    artifact = base / "firmware-1.0.bin"
    with artifact.open("wb") as out:
        for _ in range(size // MIB):
            out.write(os.urandom(MIB))
    (added,) = repo.add(
        version="1.0", compatible=["bench"], artifacts=[artifact], signers=[targets], now=now
    )
    repo.refresh_online(online, now=now)
    artifact.unlink()
    binding = Binding(target_path=added.path, length=added.length, sha256=added.sha256)
    return repo, binding, repo.targets_dir / f"{added.sha256}.{added.path}"


def install_once(base: Path, repo: Repository, binding: Binding, source: Source, n: int) -> float:
    device = base / f"device-{n}"
    config = ReleaseConfig(model="bench")
    config.save(device)
    install_root(device, repo.root_bytes())
    started = time.perf_counter()
    outcome = ReleaseInstall(data_dir=device, config=config, source=source, binding=binding).run()
    took = time.perf_counter() - started
    assert outcome.committed, outcome
    shutil.rmtree(device)
    return took


def sha256sum(path: Path, command: tuple[str, ...] = ("sha256sum",)) -> float:
    started = time.perf_counter()
    result = subprocess.run([*command, str(path)], check=True, capture_output=True, timeout=600)
    took = time.perf_counter() - started
    assert path.name.split(".")[0].encode() in result.stdout
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=100, help="target size in MiB")
    parser.add_argument("--rounds", type=int, default=3, help="downloads and installs each")
    args = parser.parse_args()
    for tool in ("nginx", "curl", "sha256sum"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            raise SystemExit(f"{tool} is missing: run bench/setup.sh as root")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        base.chmod(0o755)  # nginx's worker drops root and must read the repository
        repo, binding, stored = make_repository(base, args.mib * MIB)
        data = base / "server"
        subprocess.run(
            [sys.executable, "-m", "labgate", "server", "init", "--data", str(data)],
            check=True,
            capture_output=True,
        )
        ca = data / "ca" / "root.crt"
        server, ready = start(
            [
                sys.executable,
                "-m",
                "labgate",
                "server",
                "run",
                "--data",
                str(data),
                "--listen",
                "127.0.0.1:0",
            ],
            {"LABGATE_RELEASES_DIR": str(repo.directory)},
            quiet=True,
        )
        port = free_port()
        conf = base / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                prefix=base,
                port=port,
                cert=data / "server.crt",
                key=data / "server.key",
                repo=repo.directory,
            )
        )
        web = subprocess.Popen([nginx, "-c", str(conf), "-p", str(base)], stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            path = f"/tuf/targets/{stored.name}"
            what = f"a {args.mib} MiB target over TLS 1.3 ({CIPHER})"
            print(f"serving {what} to curl, {args.rounds} rounds")
            ours = serve_rounds(
                "labgate", ready["url"] + path, ca, lambda: cpu_seconds(server.pid), args.rounds
            )
            theirs = serve_rounds(
                "nginx",
                f"https://127.0.0.1:{port}{path}",
                ca,
                lambda: process_tree_cpu(web.pid),
                args.rounds,
            )
            print(f"  labgate / nginx throughput: {ours / theirs:.2f}x (target >= 0.5x)")

            bundle = base / "usb"
            repo.bundle(bundle)
            bundled = bundle / "targets" / stored.name
            sha256sum(bundled)  # warm the page cache
            when = datetime.now(UTC)
            offline = [
                install_once(base, repo, binding, Bundle(directory=bundle, valid_at=when), n)
                for n in range(args.rounds)
            ]
            summed = [sha256sum(bundled) for _ in range(args.rounds)]
            # OpenSSL's SHA-256 (CPU extensions where present) is what Python's hashlib uses;
            # coreutils' sha256sum may not be, so both are shown.
            digested = [
                sha256sum(bundled, ("openssl", "dgst", "-sha256")) for _ in range(args.rounds)
            ]
            online_source = Online(
                server_url=ready["url"], context=ssl.create_default_context(cafile=str(ca))
            )
            online = [
                install_once(base, repo, binding, online_source, 100 + n)
                for n in range(args.rounds)
            ]
            best_install, best_sum = min(offline), min(summed)
            print(f"verify-and-install of the {args.mib} MiB target (best of {args.rounds})")
            size = args.mib * MIB / 1e6
            print(
                f"  agent, from a bundle   {best_install:7.3f} s  ({size / best_install:7.1f} MB/s)"
            )
            print(f"  sha256sum              {best_sum:7.3f} s  ({size / best_sum:7.1f} MB/s)")
            best_openssl = min(digested)
            print(
                f"  openssl dgst -sha256   {best_openssl:7.3f} s  ({size / best_openssl:7.1f} MB/s)"
            )
            print(f"  agent / sha256sum: {best_install / best_sum:.2f}x (target <= 1.5x)")
            print(f"  agent / openssl dgst: {best_install / best_openssl:.2f}x")
            print(f"  agent, online via labgate {min(online):7.3f} s (download, verify, install)")
        finally:
            web.terminate()
            web.wait(timeout=10)
            stop(server)


if __name__ == "__main__":
    main()
