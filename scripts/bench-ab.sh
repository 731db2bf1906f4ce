#!/usr/bin/env bash
# Quick paxos-only loads against one build, with the cluster's CPU time per request: run it
# for the binary before and after a change, alternating, to see what the change bought on
# a machine too noisy for throughput alone.
#
#   scripts/bench-ab.sh /tmp/paxos-before before; scripts/bench-ab.sh target/release/paxos after
#
# Prints one line per load: throughput, p50, p99, errors and the CPU time of all cluster
# processes (from /proc/<pid>/stat) divided by the requests served. Loads (LOADS): wN =
# writes with N clients, eN = eventual reads, sN = strong reads. The load generator is
# BENCH_BIN (default target/release/paxos), the same for both builds. Environment:
# LOADS ("w64 w256 w1 e64 s64"), DURATION (5s), DATA_ROOT (/var/tmp), CPU_FILTER (e.g.
# "-f client" to count one process only), PAXOS_BASE_PORT (17500), PAXOS_CLIENT_PORT (17800).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$1
LABEL=${2:-$(basename "$BIN")}
BENCH_BIN=${BENCH_BIN:-target/release/paxos}
DURATION=${DURATION:-5s}
LOADS=${LOADS:-"w64 w256 w1 e64 s64"}
BASE=${PAXOS_BASE_PORT:-17500}
PORT=${PAXOS_CLIENT_PORT:-17800}
DATA=$(mktemp -d "${DATA_ROOT:-/var/tmp}/bench-ab.XXXXXX")

for port in "$PORT" $((BASE + 1)) $((BASE + 101)) $((BASE + 201)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "port $port is already in use on 127.0.0.1" >&2
        exit 1
    fi
done
"$BIN" up --data-dir "$DATA/cluster" --base-port "$BASE" --client-port "$PORT" \
    >"$DATA/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null || true; wait $UP 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 150); do
    curl -sf -XPOST "localhost:$PORT/write" -d '{"key":"p","value":"p"}' >/dev/null && break
    sleep 0.2
done

# cpu: clock ticks used so far by the cluster's processes.
cpu() {
    local total=0 pid
    for pid in $(pgrep -P "$UP" ${CPU_FILTER:-}); do
        # Fields after the command name: 12 and 13 are utime and stime.
        set -- $(cut -d')' -f2 "/proc/$pid/stat")
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}

run() {
    local name=$1 before after result
    shift
    before=$(cpu)
    result=$("$BENCH_BIN" bench --endpoint "http://127.0.0.1:$PORT" --duration "$DURATION" \
        --keys 10000 --quiet --output json "$@")
    after=$(cpu)
    echo "$result" | LABEL=$LABEL NAME=$name TICKS=$((after - before)) HZ=$(getconf CLK_TCK) \
        python3 -c '
import json, os, sys
r = json.load(sys.stdin)
l = r["latency_milliseconds"]
label, name = os.environ["LABEL"], os.environ["NAME"]
throughput, p50, p99, errors = r["throughput"], l["p50"], l["p99"], r["error_count"]
cpu = int(os.environ["TICKS"]) * 1e6 / int(os.environ["HZ"]) / max(1, r["requests"])
print(f"{label} {name:<6} {throughput:8.0f}/s p50 {p50:6.2f} p99 {p99:6.2f} "
      f"errors {errors} cpu/request {cpu:6.1f} us")'
}

for load in $LOADS; do
    case $load in
        w*) run "$load" --clients "${load#w}" --write-ratio 1 ;;
        e*) run "$load" --clients "${load#e}" --write-ratio 0 --consistency eventual ;;
        s*) run "$load" --clients "${load#s}" --write-ratio 0 --consistency strong ;;
        *) echo "unknown load $load" >&2 ;;
    esac
done
