#!/usr/bin/env bash
# Installs the peer systems the end-to-end tests run against (a real Prometheus), from Debian's
# packages, if they are not already on PATH. Idempotent: a second run only prints the version.
#
# Usage: bash tests/install-peers.sh
# Needs root (or passwordless sudo) the first time, to run apt-get.
set -euo pipefail

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo -n "$@"
    else
        echo "install-peers: need root to run: $*" >&2
        return 1
    fi
}

updated=0
apt_install() {
    if [ "$updated" -eq 0 ]; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        updated=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

if ! command -v prometheus >/dev/null 2>&1; then
    echo "install-peers: installing prometheus from Debian" >&2
    apt_install prometheus
fi

if ! command -v prometheus >/dev/null 2>&1; then
    echo "install-peers: prometheus still not on PATH after installing" >&2
    exit 1
fi
prometheus --version 2>&1 | head -n 1
