#!/usr/bin/env bash
# Side-by-side comparison of Strata, Prometheus and VictoriaMetrics as remote-write receivers.
#
# Why: Strata's headline claims (ingest rate, CPU per sample, memory per series, bytes per
# sample on disk) only mean something next to the systems people would otherwise run, measured
# the same way on the same machine with the same data. This script runs each system alone, on
# loopback, on a fresh data directory, feeds it the same generated workload with `strata-load`
# (remote write 1.0, pre-encoded, 8 keep-alive connections, 2000-sample requests, 15 s scrapes
# with realistic jitter), and measures from the outside:
#
#   ingest samples/s   accepted samples / wall time of the load (strata-load's figure)
#   CPU us/sample      server process utime+stime (/proc/PID/stat) from the first to the last
#                      request (strata-load --server-pid reads it) / accepted samples
#   peak RSS           VmHWM of the server process (/proc/PID/status): right after the load
#                      (ingest peak, also per active series) and after the queries (overall)
#   bytes/sample       everything in the storage format after a flush, per accepted sample:
#                      Prometheus: admin snapshot with head, `du` of the snapshot;
#                      VictoriaMetrics: /internal/force_flush, `du` of the data directory;
#                      Strata: SIGTERM, `flush-head` (head persisted into blocks), block bytes
#   query latency      curl time_total of: an instant selector (node_memory_MemAvailable_bytes
#                      at the end of the data), a range query of node_cpu_seconds_total over
#                      the whole span at 60 s step, and /api/v1/series for node_cpu_seconds_total;
#                      each run 3 times, printed as "first/best" milliseconds
#   dashboard queries  range queries over the whole span at 60 s step, each run 3 times, the
#                      median in ms: `sum by (job) (rate(node_cpu_seconds_total[5m]))` (cpu),
#                      `histogram_quantile(0.99, sum by (le) (rate(http_request_duration_
#                      seconds_bucket[5m])))` (p99) and `count({__name__=~"node_.+"})` (count)
#
# Usage (from anywhere; paths are relative to the repository):
#   bash bench/compare-metrics.sh                 # sizes A (10k series x 1h) and B (100k x 2h)
#   SIZES=A bash bench/compare-metrics.sh         # only A
#   SYSTEMS="strata victoriametrics" SIZES=A bash bench/compare-metrics.sh
# Other knobs: STRATA_WAL_SYNC (default: batch, Strata's default: fsync before acknowledging),
# MAX_SECONDS (bound of each load, default 420), CONCURRENCY (8), BATCH (2000), KEEP=1 (keep
# the work directory).
#
# Installs `prometheus` and `victoria-metrics` from Debian if missing (needs root). Everything
# listens on 127.0.0.1 only; every wait is bounded; every process started here is killed by pid
# on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SIZES="${SIZES:-A B}"
SYSTEMS="${SYSTEMS:-strata prometheus victoriametrics}"
STRATA_WAL_SYNC="${STRATA_WAL_SYNC:-batch}"
MAX_SECONDS="${MAX_SECONDS:-420}"
CONCURRENCY="${CONCURRENCY:-8}"
BATCH="${BATCH:-2000}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/strata-compare.XXXXXX")"
PIDS=()

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

cleanup() {
    local pid
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    if [ "${KEEP:-0}" = 1 ]; then
        log "work directory kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- peers -----------------------------------------------------------------------------------
need_install=()
command -v prometheus >/dev/null 2>&1 || need_install+=(prometheus)
command -v victoria-metrics >/dev/null 2>&1 || need_install+=(victoria-metrics)
if [ "${#need_install[@]}" -gt 0 ]; then
    log "installing ${need_install[*]} from Debian"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_install[@]}"
fi
PROM_VERSION="$(dpkg-query -W -f '${Version}' prometheus 2>/dev/null || prometheus --version 2>&1 | head -n1)"
VM_VERSION="$(dpkg-query -W -f '${Version}' victoria-metrics 2>/dev/null || echo unknown)"

# --- build -----------------------------------------------------------------------------------
log "building strata, strata-load and flush-head (release)"
(cd "$ROOT" && cargo build --release -q -p strata-server --bin strata \
    -p strata-bench --bin strata-load --bin flush-head)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"
STRATA_VERSION="$("$BIN/strata" --version 2>&1 | head -n1)"

# --- helpers ---------------------------------------------------------------------------------
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

free_port() {
    local port
    for _ in $(seq 1 100); do
        port=$(( 20000 + RANDOM % 20000 ))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

wait_http() { # url expected-body-substring timeout-seconds
    local deadline=$(( SECONDS + $3 ))
    while [ "$SECONDS" -lt "$deadline" ]; do
        local body
        body="$(curl -sf --max-time 2 "$1" 2>/dev/null || true)"
        if [[ "$body" == *"$2"* ]]; then
            return 0
        fi
        sleep 0.5
    done
    return 1
}

wait_exit() { # pid timeout-seconds
    local deadline=$(( SECONDS + $2 ))
    while kill -0 "$1" 2>/dev/null; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

stop_pid() { # pid: SIGTERM, bounded wait, then SIGKILL
    kill -TERM "$1" 2>/dev/null || true
    if ! wait_exit "$1" 60; then
        log "pid $1 did not stop within 60 s; killing"
        kill -9 "$1" 2>/dev/null || true
        wait_exit "$1" 10 || true
    fi
    wait "$1" 2>/dev/null || true
}

result_field() { # file key
    grep '^RESULT ' "$1" | tail -n1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

ms() { awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }'; }

# Runs a GET 3 times; prints "first/best" in ms, or "ERR(code)".
time_query() { # url
    local first="" best="" out code t i
    for i in 1 2 3; do
        out="$(curl -s -o "$WORK/q.out" --max-time 120 -w '%{http_code} %{time_total}' "$1" 2>/dev/null || true)"
        [ -n "$out" ] || out="000 0"
        code="${out% *}"
        t="$(ms "${out#* }")"
        if [ "$code" != 200 ]; then
            echo "ERR($code)"
            return 0
        fi
        [ -n "$first" ] || first="$t"
        if [ "$i" -gt 1 ] && { [ -z "$best" ] || [ "$t" -lt "$best" ]; }; then best="$t"; fi
    done
    echo "$first/$best"
}

# Runs a GET 3 times; prints the median time in ms, or "ERR(code)". The first run's time is
# appended to $WORK/first (VictoriaMetrics answers repeats from its rollup result cache).
median_query() { # url
    local out code ts=() i
    for i in 1 2 3; do
        out="$(curl -s -o "$WORK/q.out" --max-time 300 -w '%{http_code} %{time_total}' "$1" 2>/dev/null || true)"
        [ -n "$out" ] || out="000 0"
        code="${out% *}"
        if [ "$code" != 200 ]; then
            echo "ERR($code)"
            return 0
        fi
        ts+=("$(ms "${out#* }")")
    done
    echo "${ts[0]}" >> "$WORK/first"
    printf '%s\n' "${ts[@]}" | sort -n | sed -n 2p
}

urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }

# --- one run ---------------------------------------------------------------------------------
ROWS=()

run_one() { # system size series duration
    local system="$1" size="$2" series="$3" duration="$4"
    local dir="$WORK/$system-$size" port url pid addr load_out="$WORK/$system-$size.load"
    mkdir -p "$dir"
    log "== $system, size $size ($series series x $duration)"
    case "$system" in
        strata)
            "$BIN/strata" --data-dir "$dir/data" --http-addr 127.0.0.1:0 \
                --otlp-grpc-addr none --otlp-http-addr none \
                --wal-sync "$STRATA_WAL_SYNC" 2> "$dir/server.log" &
            pid=$!
            PIDS+=("$pid")
            local deadline=$(( SECONDS + 120 ))
            addr=""
            while [ -z "$addr" ] && [ "$SECONDS" -lt "$deadline" ] && kill -0 "$pid" 2>/dev/null; do
                addr="$(grep 'storage ready' "$dir/server.log" 2>/dev/null \
                    | grep -o 'http_addr=[0-9.:]*' | head -n1 | cut -d= -f2 || true)"
                [ -n "$addr" ] || sleep 0.2
            done
            [ -n "$addr" ] || { cat "$dir/server.log" >&2; log "strata did not start"; return 1; }
            ;;
        prometheus)
            port="$(free_port)"
            addr="127.0.0.1:$port"
            printf 'global:\n  scrape_interval: 15s\n' > "$dir/prometheus.yml"
            prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
                --web.listen-address="$addr" --web.enable-remote-write-receiver \
                --web.enable-admin-api 2> "$dir/server.log" &
            pid=$!
            PIDS+=("$pid")
            wait_http "http://$addr/-/ready" "Ready" 120 \
                || { tail -n 20 "$dir/server.log" >&2; log "prometheus did not start"; return 1; }
            ;;
        victoriametrics)
            port="$(free_port)"
            addr="127.0.0.1:$port"
            victoria-metrics -storageDataPath="$dir/data" -httpListenAddr="$addr" \
                -retentionPeriod=100y 2> "$dir/server.log" > /dev/null &
            pid=$!
            PIDS+=("$pid")
            wait_http "http://$addr/health" "OK" 120 \
                || { tail -n 20 "$dir/server.log" >&2; log "victoria-metrics did not start"; return 1; }
            ;;
    esac
    url="http://$addr"

    "$BIN/strata-load" --url "$url/api/v1/write" --series "$series" --duration "$duration" \
        --batch "$BATCH" --concurrency "$CONCURRENCY" --interval 15s \
        --max-seconds "$MAX_SECONDS" --server-pid "$pid" > "$load_out" 2>&1 \
        || { cat "$load_out" >&2; log "strata-load failed"; }
    local hwm_load
    hwm_load="$(hwm_kib "$pid")"
    sed 's/^/    /' "$load_out" >&2

    local accepted rate nseries start_ms end_ms complete rejected server_cpu
    accepted="$(result_field "$load_out" accepted)"
    rejected="$(result_field "$load_out" rejected)"
    rate="$(result_field "$load_out" samples_per_s)"
    nseries="$(result_field "$load_out" series)"
    start_ms="$(result_field "$load_out" start_ms)"
    end_ms="$(result_field "$load_out" end_ms)"
    complete="$(result_field "$load_out" complete)"
    server_cpu="$(result_field "$load_out" server_cpu_s)"
    local cpu_us
    cpu_us="$(awk -v c="${server_cpu:-0}" -v n="${accepted:-0}" \
        'BEGIN { if (n > 0) printf "%.3f", c * 1e6 / n; else print "n/a" }')"

    # Let VictoriaMetrics make fresh data searchable before querying.
    if [ "$system" = victoriametrics ]; then
        curl -sf --max-time 60 "$url/internal/force_flush" > /dev/null || true
        sleep 2
    fi
    local start_s=$(( start_ms / 1000 )) end_s=$(( end_ms / 1000 + 1 ))
    local q1 q2 q3
    q1="$(time_query "$url/api/v1/query?query=node_memory_MemAvailable_bytes&time=$end_s")"
    local n1
    n1="$(grep -o '"metric"' "$WORK/q.out" | wc -l || true)"
    q2="$(time_query "$url/api/v1/query_range?query=node_cpu_seconds_total&start=$start_s&end=$end_s&step=60")"
    local n2
    n2="$(grep -o '"metric"' "$WORK/q.out" | wc -l || true)"
    q3="$(time_query "$url/api/v1/series?match%5B%5D=node_cpu_seconds_total&start=$start_s&end=$end_s")"
    local n3
    n3="$(grep -o '"__name__"' "$WORK/q.out" | wc -l || true)"
    log "queries: instant $q1 ms ($n1 series), range $q2 ms ($n2 series), series $q3 ms ($n3 series)"
    local range="start=$start_s&end=$end_s&step=60" d1 d2 d3
    d1="$(median_query "$url/api/v1/query_range?query=$(urlenc 'sum by (job) (rate(node_cpu_seconds_total[5m]))')&$range")"
    d2="$(median_query "$url/api/v1/query_range?query=$(urlenc 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))')&$range")"
    d3="$(median_query "$url/api/v1/query_range?query=$(urlenc 'count({__name__=~"node_.+"})')&$range")"
    log "dashboard queries (median ms): cpu $d1, p99 $d2, count $d3; first runs (ms): $(tail -n 3 "$WORK/first" | tr '\n' ' ')"
    printf '%s %s %s %s %s\n' "$size" "$system" "$d1" "$d2" "$d3" >> "$WORK/dash"

    local hwm
    hwm="$(hwm_kib "$pid")"

    # Flush into the final format and measure it.
    local bytes=0
    case "$system" in
        prometheus)
            local snap
            snap="$(curl -sf --max-time 300 -XPOST "$url/api/v1/admin/tsdb/snapshot" \
                | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')"
            [ -n "$snap" ] && bytes="$(du -sb "$dir/data/snapshots/$snap" | cut -f1)"
            stop_pid "$pid"
            ;;
        victoriametrics)
            curl -sf --max-time 300 "$url/internal/force_flush" > /dev/null || true
            sleep 3
            bytes="$(du -sb "$dir/data" | cut -f1)"
            stop_pid "$pid"
            ;;
        strata)
            stop_pid "$pid"
            "$BIN/flush-head" --data-dir "$dir/data" > "$dir/flush.out" 2>&1 \
                || { cat "$dir/flush.out" >&2; log "flush-head failed"; }
            sed 's/^/    /' "$dir/flush.out" >&2
            bytes="$(result_field "$dir/flush.out" bytes)"
            ;;
    esac
    local bps rss_mib rss_load_mib per_series
    bps="$(awk -v b="${bytes:-0}" -v n="${accepted:-0}" 'BEGIN { if (n > 0) printf "%.3f", b / n; else print "n/a" }')"
    rss_mib="$(awk -v k="${hwm:-0}" 'BEGIN { printf "%.0f", k / 1024 }')"
    rss_load_mib="$(awk -v k="${hwm_load:-0}" 'BEGIN { printf "%.0f", k / 1024 }')"
    per_series="$(awk -v k="${hwm_load:-0}" -v s="${nseries:-0}" 'BEGIN { if (s > 0) printf "%.0f", k * 1024 / s; else print "n/a" }')"
    local note=""
    [ "$complete" = true ] || note="INCOMPLETE"
    [ "${rejected:-0}" = 0 ] || note="$note rejected=$rejected"
    ROWS+=("$(printf '%-4s %-16s %7s %10s %10s %8s %9s %8s %10s %10s %12s %12s %s' \
        "$size" "$system" "$nseries" "$rate" "$cpu_us" "$rss_load_mib" "$per_series" \
        "$rss_mib" "$bps" "$q1" "$q2" "$q3" "$note")")
    printf '%s %s %s %s %s\n' "$size" "$system" "${rate:-0}" "$cpu_us" "$per_series" >> "$WORK/summary"
    rm -rf "$dir/data"
}

for size in $SIZES; do
    case "$size" in
        A) series=10000; duration=1h ;;
        B) series=100000; duration=2h ;;
        *) log "unknown size $size (A or B)"; exit 2 ;;
    esac
    for system in $SYSTEMS; do
        run_one "$system" "$size" "$series" "$duration" || log "$system $size failed"
    done
done

# --- report ----------------------------------------------------------------------------------
echo
echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo) RAM, load avg $(cut -d' ' -f1-3 /proc/loadavg)"
echo "systems: $STRATA_VERSION (wal sync: $STRATA_WAL_SYNC) | prometheus $PROM_VERSION | victoria-metrics $VM_VERSION"
echo "load: strata-load, remote write 1.0, $CONCURRENCY connections, batch $BATCH, 15 s scrapes"
echo "columns: rss_MiB = VmHWM after the load, rss_B/ser = that per series, peak_MiB = VmHWM after"
echo "the queries too; disk_B/smp = bytes in the final format after a flush / accepted samples;"
echo "query times in ms as first/best of 3"
echo
printf '%-4s %-16s %7s %10s %10s %8s %9s %8s %10s %10s %12s %12s %s\n' \
    size system series "samples/s" "us_cpu/smp" "rss_MiB" "rss_B/ser" "peak_MiB" \
    "disk_B/smp" "instant_ms" "range_ms" "series_ms" note
for row in "${ROWS[@]}"; do echo "$row"; done
echo
if [ -f "$WORK/summary" ]; then
    awk '
        { rate[$1" "$2] = $3; cpu[$1" "$2] = $4; sizes[$1] = 1 }
        END {
            for (s in sizes) {
                st = rate[s" strata"]; pr = rate[s" prometheus"]; vm = rate[s" victoriametrics"]
                line = ""
                if (st != "" && vm > 0) line = line sprintf(" %.2fx victoriametrics", st / vm)
                if (st != "" && pr > 0) line = line sprintf(", %.2fx prometheus", st / pr)
                if (cpu[s" strata"] != "" && cpu[s" victoriametrics"] > 0)
                    line = line sprintf("; cpu/sample = %.2fx victoriametrics", cpu[s" strata"] / cpu[s" victoriametrics"])
                if (line != "") printf "size %s: strata ingest =%s\n", s, line
            }
        }' "$WORK/summary" | sort
fi
if [ -f "$WORK/dash" ]; then
    echo
    echo "dashboard range queries, median of 3 (ms): size system cpu p99 count"
    sed 's/^/  /' "$WORK/dash"
    awk '
        { cpu[$1" "$2] = $3; p99[$1" "$2] = $4; cnt[$1" "$2] = $5; sizes[$1] = 1 }
        END {
            for (s in sizes) {
                st = s" strata"; vm = s" victoriametrics"
                if (cpu[vm] > 0 && p99[vm] > 0 && cnt[vm] > 0 && cpu[st] != "")
                    printf "size %s: strata/victoriametrics latency: cpu %.2fx, p99 %.2fx, count %.2fx\n",
                        s, cpu[st] / cpu[vm], p99[st] / p99[vm], cnt[st] / cnt[vm]
            }
        }' "$WORK/dash" | sort
fi
