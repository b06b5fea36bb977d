#!/usr/bin/env bash
# Bytes per sample after full compaction: Strata against VictoriaMetrics on the same samples.
#
# Why: the figure users compare is what a day of data costs on disk once the database has
# finished merging. Both systems get the same generated samples (the realistic generator of
# `strata-load`, same seed, series, interval and start time):
#   Strata           `compact-bench prepare` (ingest path: append per scrape, 2 h blocks cut)
#                    then `compact-bench compact` (full compaction: 2 h -> 6 h -> 24 h);
#                    bytes = every block file (chunks, index, meta, tombstones).
#   VictoriaMetrics  remote write via `strata-load`, `force_flush`, `force_merge` of the
#                    month's partition, wait until no merge is active; bytes = `du -sb` of the
#                    whole data directory.
# Loopback only; every wait is bounded.
#
# Usage: SERIES=2000 HOURS=26 bash bench/compare-compaction.sh
set -euo pipefail
SERIES="${SERIES:-2000}"
HOURS="${HOURS:-26}"
SEED="${SEED:-42}"
START_MS="${START_MS:-1704067200000}"   # 2024-01-01T00:00:00Z, the generator's default
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
WORK="$(mktemp -d)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
log() { echo "[compare-compaction] $*" >&2; }

cargo build --release -q -p strata-bench --bin compact-bench --bin strata-load --manifest-path "$ROOT/Cargo.toml"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

log "strata: prepare $SERIES series x ${HOURS}h at 15s"
"$BIN/compact-bench" prepare --dir "$WORK/strata" --series "$SERIES" --hours "$HOURS" \
    --interval 15s --seed "$SEED" --start-ms "$START_MS" | tee "$WORK/strata-prepare.out"
"$BIN/compact-bench" compact --dir "$WORK/strata" | tee "$WORK/strata-compact.out"
st_samples="$(sed -n 's/^RESULT .*samples=\([0-9]*\) .*/\1/p' "$WORK/strata-compact.out")"
st_bytes="$(sed -n 's/^RESULT .*bytes_after=\([0-9]*\) .*/\1/p' "$WORK/strata-compact.out")"

if command -v victoria-metrics >/dev/null 2>&1; then
    port=$(( 20000 + RANDOM % 20000 ))
    addr="127.0.0.1:$port"
    victoria-metrics -storageDataPath="$WORK/vm" -httpListenAddr="$addr" -retentionPeriod=100y \
        > "$WORK/vm.log" 2>&1 &
    PIDS+=("$!")
    for _ in $(seq 1 120); do curl -sf "http://$addr/health" >/dev/null 2>&1 && break; sleep 0.5; done
    log "victoria-metrics: remote write of the same samples"
    "$BIN/strata-load" --url "http://$addr/api/v1/write" --series "$SERIES" --duration "${HOURS}h" \
        --interval 15s --seed "$SEED" --start-ms "$START_MS" --max-seconds 900 | tail -n 1 | tee "$WORK/vm-load.out"
    vm_samples="$(sed -n 's/^RESULT .*accepted=\([0-9]*\).*/\1/p' "$WORK/vm-load.out")"
    curl -sf --max-time 300 "http://$addr/internal/force_flush" >/dev/null || true
    curl -sf --max-time 600 "http://$addr/internal/force_merge?partition_prefix=2024_01" >/dev/null || true
    for _ in $(seq 1 600); do
        active="$(curl -sf "http://$addr/metrics" | awk '/^vm_active_merges/ { s += $2 } END { print s + 0 }')"
        [ "$active" = "0" ] && break
        sleep 1
    done
    sleep 5
    vm_bytes="$(du -sb "$WORK/vm" | cut -f1)"
    kill "${PIDS[0]}" 2>/dev/null || true
    echo "RESULT strata_samples=$st_samples strata_bytes=$st_bytes strata_bps=$(awk -v b="$st_bytes" -v n="$st_samples" 'BEGIN { printf "%.3f", b / n }') vm_samples=${vm_samples:-0} vm_bytes=$vm_bytes vm_bps=$(awk -v b="$vm_bytes" -v n="${vm_samples:-0}" 'BEGIN { if (n > 0) printf "%.3f", b / n; else print "n/a" }')"
else
    log "victoria-metrics not installed (apt-get install victoria-metrics); Strata only"
    echo "RESULT strata_samples=$st_samples strata_bytes=$st_bytes"
fi
