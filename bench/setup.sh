#!/bin/sh
# Install the peers bench/gateway.py compares the labgate gateway with (Debian or Ubuntu, as root).
set -eu
if [ "$(id -u)" -ne 0 ]; then
    echo "run as root (or with sudo): it installs Debian packages" >&2
    exit 1
fi
apt-get update
apt-get install -y --no-install-recommends stunnel4 haproxy socat openssl
for tool in socat stunnel haproxy openssl; do
    command -v "$tool" >/dev/null || { echo "$tool is still missing" >&2; exit 1; }
done
socat -V | sed -n 2p
stunnel -version 2>&1 | sed -n 1p
haproxy -v | sed -n 1p
