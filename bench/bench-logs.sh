#!/usr/bin/env bash
# Log ingest and query benchmark: a fresh Strata on a loopback port, `strata-load logs` pushes
# N generated lines (20 services, 51 streams, ~200-byte JSON/logfmt/plain lines) through the
# Loki push API, then the server is stopped (which flushes every head into blocks), the log
# directory is measured, and the server is restarted to time the benchmark queries (median of
# three runs each).
#
# Usage: bench/bench-logs.sh [LINES] (default 1000000); FORMAT=json|protobuf (default json);
#        CONCURRENCY (default 4); BATCH (default 1000); KEEP=1 keeps the data directory;
#        NO_BUILD=1 uses the release binaries already built.
# Prints one `RESULT` line from the load generator and a `QUERY` line per query.
set -euo pipefail

LINES=${1:-1000000}
FORMAT=${FORMAT:-json}
CONCURRENCY=${CONCURRENCY:-4}
BATCH=${BATCH:-1000}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

if [ -z "${NO_BUILD:-}" ]; then
    cargo build --release -q -p strata-server --bin strata
    cargo build --release -q -p strata-bench --bin strata-load
fi
BIN=$TARGET/release

WORK=$(mktemp -d)
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

start_server() {
    : > "$WORK/server.log"
    STRATA_OTLP_GRPC_ADDR=none STRATA_OTLP_HTTP_ADDR=none \
        "$BIN/strata" --data-dir "$WORK/data" --http-addr 127.0.0.1:0 --log info \
        2>"$WORK/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 600); do
        if grep -q "storage ready" "$WORK/server.log"; then
            ADDR=$(grep "storage ready" "$WORK/server.log" | sed -E 's/.*http_addr=([^ ]+).*/\1/' | tr -d '"')
            return 0
        fi
        sleep 0.1
    done
    echo "strata did not start" >&2
    cat "$WORK/server.log" >&2
    exit 1
}

stop_server() {
    kill -TERM "$SERVER_PID"
    wait "$SERVER_PID" || true
    SERVER_PID=""
}

start_server
"$BIN/strata-load" logs --url "http://$ADDR" --lines "$LINES" --format "$FORMAT" \
    --batch "$BATCH" --concurrency "$CONCURRENCY" --server-pid "$SERVER_PID" \
    --needle-out "$WORK/needle.env" --max-seconds 900 | tee "$WORK/load.out"
stop_server
LOGS_DIR="$WORK/data/tenants/anonymous/logs"
DISK=$(du -sb "$LOGS_DIR" | cut -f1)
BLOCKS=$(du -sb "$LOGS_DIR/blocks" | cut -f1)
echo "DISK bytes=$DISK blocks_bytes=$BLOCKS bytes_per_line=$(awk -v d="$DISK" -v n="$LINES" 'BEGIN{printf "%.1f", d/n}')"

# shellcheck disable=SC1091
. "$WORK/needle.env"
start_server
echo "restart: $(grep -o 'opened tenant logs.*' "$WORK/server.log" | head -1)"

# Median of three `curl` timings of a GET on the Loki API.
time_query() {
    local name=$1 path=$2 shift_args
    shift 2
    local times=()
    for _ in 1 2 3; do
        t=$(curl -sS -o "$WORK/q.out" -w '%{time_total}' -G "http://$ADDR$path" "$@")
        times+=("$t")
    done
    local median
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
    local size
    size=$(wc -c < "$WORK/q.out")
    echo "QUERY name=$name seconds=$median response_bytes=$size"
}

R=(--data-urlencode "start=$START_NS" --data-urlencode "end=$END_NS")
time_query needle_trace /loki/api/v1/query_range --data-urlencode "query={job=\"app\"} |= \"$TRACE\"" "${R[@]}"
time_query needle_token /loki/api/v1/query_range --data-urlencode "query={job=\"app\"} |= \"$NEEDLE\"" "${R[@]}"
time_query checkout_timeout /loki/api/v1/query_range --data-urlencode 'query={service="checkout"} |= "timeout"' --data-urlencode limit=1000 "${R[@]}"
time_query json_level_error /loki/api/v1/query_range --data-urlencode 'query={job="app"} | json | level="error"' --data-urlencode limit=1000 "${R[@]}"
time_query count_by_service /loki/api/v1/query_range --data-urlencode 'query=sum by (service) (count_over_time({job="app"}[1m]))' --data-urlencode step=60 "${R[@]}"
echo "RSS after restart and queries: $(grep VmHWM /proc/"$SERVER_PID"/status)"
stop_server
