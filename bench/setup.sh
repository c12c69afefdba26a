#!/bin/sh
# Install the peers the benchmarks compare labgate with (Debian or Ubuntu, as root): stunnel,
# haproxy and socat for bench/gateway.py, nginx and curl for bench/releases.py.
set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or with sudo): it installs Debian packages" >&2
    exit 1
fi
apt-get update
apt-get install -y --no-install-recommends stunnel4 haproxy socat openssl nginx curl
for tool in socat stunnel haproxy openssl nginx curl; do
    command -v "$tool" >/dev/null || { echo "$tool is still missing" >&2; exit 1; }
done
socat -V | sed -n 2p
stunnel -version 2>&1 | sed -n 1p
haproxy -v | sed -n 1p
nginx -v 2>&1
