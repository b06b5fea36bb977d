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

# The OpenTelemetry Python SDK and its OTLP exporters (gRPC and HTTP), for the trace
# end-to-end test, in a virtualenv outside the repository. Skipped when already installed.
OTEL_VERSION=1.45.2
OTEL_VENV="${STRATA_OTEL_VENV:-$HOME/.cache/strata/otel-venv}"
otel_ok() {
    "$OTEL_VENV/bin/python" - "$OTEL_VERSION" >/dev/null 2>&1 <<'PY'
import sys
from importlib.metadata import version
import opentelemetry.exporter.otlp.proto.grpc.trace_exporter
import opentelemetry.exporter.otlp.proto.http.trace_exporter
assert version("opentelemetry-sdk") == sys.argv[1]
PY
}
if ! otel_ok; then
    echo "install-peers: installing the OpenTelemetry Python SDK $OTEL_VERSION into $OTEL_VENV" >&2
    if ! python3 -m venv "$OTEL_VENV" >/dev/null 2>&1; then
        apt_install python3-venv
        python3 -m venv "$OTEL_VENV"
    fi
    "$OTEL_VENV/bin/pip" install -q --disable-pip-version-check \
        "opentelemetry-sdk==$OTEL_VERSION" "opentelemetry-exporter-otlp==$OTEL_VERSION"
fi
if ! otel_ok; then
    echo "install-peers: the OpenTelemetry SDK in $OTEL_VENV still does not import" >&2
    exit 1
fi
echo "opentelemetry-sdk $OTEL_VERSION ($OTEL_VENV)"
