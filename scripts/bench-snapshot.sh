#!/usr/bin/env bash
# Memory and time of a learner's snapshot: compaction of a large state, then a peer
# receiving it whole.
#
#   scripts/bench-snapshot.sh                        # about 1 GiB of state (10-15 minutes)
#   STATE_MIB=128 scripts/bench-snapshot.sh          # a quick trial
#
# 1. `paxos up` in a fresh directory under /var/tmp, with LEARNER_RETAIN_SLOTS=2000 so
#    that the learners compact during the load and their history (2,000 slots of 8 KiB
#    values) stays small beside the state.
# 2. Writes STATE_MIB of state: KEYS keys of VALUE_BYTES each (8 KiB), every key written
#    (the keys are spread by `paxos bench`, so it writes WRITE_FACTOR times as many
#    requests as keys and reports how many keys exist).
# 3. Records learner1's RSS and the size of its snapshot file (the state's size), resets
#    its peak (VmHWM, via /proc/PID/clear_refs), then stops learner2, empties its data
#    directory and starts it again with the same command and environment: learner2
#    starts from nothing, asks learner1, and receives the whole state as a snapshot.
#    A light load (16 clients, half eventual reads) runs for LIGHT_SECONDS before the
#    restart and again from the restart on.
# 4. Reports: the state's size, learner1's RSS before and its peak during the transfer,
#    learner2's peak and final RSS, how long learner2 took to catch up, and the light
#    load's throughput and p99 during the transfer. The figure of merit: neither end's
#    peak exceeds its steady RSS by the state's size (no end holds the state twice).
#
# Environment: STATE_MIB (1024), VALUE_BYTES (8192), WRITE_FACTOR (3), CLIENTS (64),
# LIGHT_SECONDS (30), WORK_DIR, KEEP_WORK_DIR (set: keep it), PAXOS_BIN, PAXOS_BASE_PORT,
# PAXOS_CLIENT_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

STATE_MIB=${STATE_MIB:-1024}
VALUE_BYTES=${VALUE_BYTES:-8192}
WRITE_FACTOR=${WRITE_FACTOR:-3}
CLIENTS=${CLIENTS:-64}
LIGHT_SECONDS=${LIGHT_SECONDS:-30}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-snapshot.XXXXXX)}
PAXOS_BIN=${PAXOS_BIN:-target/release/paxos}
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-17600}
PAXOS_CLIENT_PORT=${PAXOS_CLIENT_PORT:-17900}
KEYS=$((STATE_MIB * 1024 * 1024 / VALUE_BYTES))
STARTED_PIDS=()

cleanup() {
    stop_pids "${STARTED_PIDS[@]}"
    STARTED_PIDS=()
    if [[ -z "${KEEP_WORK_DIR:-}" ]]; then rm -rf "$WORK_DIR"; else echo "kept $WORK_DIR" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ ! -x "$PAXOS_BIN" ]]; then
    cargo build --release --quiet
fi
API="http://127.0.0.1:$PAXOS_CLIENT_PORT"

kib() { awk -v field="$2" '$1 == field":" {print $2}' "/proc/$1/status"; }
mib() { awk -v kib="$1" 'BEGIN { printf "%.1f", kib / 1024 }'; }

# learner_pid ID: the pid of learner ID among the children of `paxos up`.
learner_pid() {
    local pid
    for pid in $(pgrep -P "$up_pid"); do
        if tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 2p | grep -qx learner &&
            tr '\0' '\n' <"/proc/$pid/environ" | grep -qx "LEARNER_ID=$1"; then
            echo "$pid"
            return
        fi
    done
    echo "learner$1 is not running" >&2
    exit 1
}

# applied ID: learner ID's applied slot, from the client API's /status (0 if unknown).
applied() {
    curl -sf "$API/status" | jq --arg name "learner$1" \
        '[.nodes[] | select(.name == $name) | .applied_slot // 0] | first // 0' 2>/dev/null ||
        echo 0
}

echo "== paxos up, then about $STATE_MIB MiB of state: $KEYS keys of $VALUE_BYTES bytes" >&2
ports_free "$PAXOS_CLIENT_PORT" $((PAXOS_BASE_PORT + 1)) $((PAXOS_BASE_PORT + 101)) \
    $((PAXOS_BASE_PORT + 201))
LEARNER_RETAIN_SLOTS=2000 "$PAXOS_BIN" up --data-dir "$WORK_DIR/paxos" \
    --base-port "$PAXOS_BASE_PORT" --client-port "$PAXOS_CLIENT_PORT" \
    >"$WORK_DIR/paxos.log" 2>&1 &
up_pid=$!
STARTED_PIDS+=("$up_pid")
for _ in $(seq 300); do
    curl -sf -XPOST "$API/write" -d '{"key":"probe","value":"probe"}' >/dev/null && break
    sleep 0.2
done
"$PAXOS_BIN" bench --endpoint "$API" --clients "$CLIENTS" --keys "$KEYS" \
    --value-size "$VALUE_BYTES" --requests $((KEYS * WRITE_FACTOR)) --duration 60m \
    --write-ratio 1 --quiet | sed 's/^/    /' >&2
sleep 5 # the learners apply the tail; a compaction may finish

# light_load FILE: the light load, for LIGHT_SECONDS, its report in FILE.
light_load() {
    # Its own 1,000 keys (16 bytes long, so none of the state's), 128-byte values: it
    # leaves the state as it is.
    "$PAXOS_BIN" bench --endpoint "$API" --clients 16 --keys 1000 --key-size 16 \
        --write-ratio 0.5 --consistency eventual --duration "${LIGHT_SECONDS}s" \
        --output json >"$1" 2>/dev/null
}
light_load "$WORK_DIR/baseline.json" # the same light load with both learners up, to compare
learner1=$(learner_pid 1)
learner2=$(learner_pid 2)
snapshot_file=$(ls -t "$WORK_DIR"/paxos/learner1/snapshot-*.snap 2>/dev/null | head -1 || true)
state_kib=$(($(stat -c %s "${snapshot_file:-/dev/null}" 2>/dev/null || echo 0) / 1024))
keys=$(curl -sf "$API/status" | jq '[.nodes[] | select(.name == "learner1") | .key_count] | first')
load_peak1=$(kib "$learner1" VmHWM)
rss1_before=$(kib "$learner1" VmRSS)
rss2_before=$(kib "$learner2" VmRSS)
target=$(applied 1)
echo "== state: $keys keys, snapshot file $(mib "$state_kib") MiB at ${snapshot_file##*/}" >&2

# learner2 starts over from nothing, with the command and environment it had.
mapfile -d '' learner2_command <"/proc/$learner2/cmdline"
mapfile -d '' learner2_environment <"/proc/$learner2/environ"
learner2_dir=$(printf '%s\n' "${learner2_environment[@]}" | sed -n 's/^DATA_DIR=//p')
kill -TERM "$learner2"
while kill -0 "$learner2" 2>/dev/null; do sleep 0.1; done
rm -rf "${learner2_dir:?}"/*
echo 5 >"/proc/$learner1/clear_refs" # learner1's peak counts from here
started=$(date +%s.%N)
env -i "${learner2_environment[@]}" "${learner2_command[@]}" >"$WORK_DIR/learner2.log" 2>&1 &
learner2=$!
STARTED_PIDS+=("$learner2")
light_load "$WORK_DIR/light.json" &
light=$!
STARTED_PIDS+=("$light")
peak2=0
for _ in $(seq 6000); do
    peak2=$(kib "$learner2" VmHWM)
    if (($(applied 2) >= target)); then
        break
    fi
    sleep 0.1
done
caught_up=$(date +%s.%N)
peak1=$(kib "$learner1" VmHWM)
rss1_after=$(kib "$learner1" VmRSS)
rss2_after=$(kib "$learner2" VmRSS)
seconds=$(awk -v a="$started" -v b="$caught_up" 'BEGIN { printf "%.1f", b - a }')

echo
echo "State: $keys keys of $VALUE_BYTES bytes; learner1's snapshot file $(mib "$state_kib") MiB."
echo "learner2 started from an empty disk and reached slot $target in $seconds s."
echo
echo "| | RSS before MiB | peak during MiB | RSS after MiB | peak - RSS before, in states |"
echo "|---|---:|---:|---:|---:|"
awk -v b="$rss1_before" -v p="$peak1" -v a="$rss1_after" -v s="$state_kib" \
    'BEGIN { printf "| learner1 (sends) | %.1f | %.1f | %.1f | %.2f |\n", b/1024, p/1024, a/1024, (p-b)/s }'
awk -v b="$rss2_before" -v p="$peak2" -v a="$rss2_after" -v s="$state_kib" \
    'BEGIN { printf "| learner2 (receives) | %.1f (before its restart) | %.1f | %.1f | %.2f of a state above nothing |\n", b/1024, p/1024, a/1024, p/s }'
echo
echo "learner1's peak during the load (compactions included): $(mib "$load_peak1") MiB."
wait "$light" 2>/dev/null || true
for report in baseline light; do
    [[ -s "$WORK_DIR/$report.json" ]] || continue
    case $report in
    baseline) when="before the restart" ;;
    light) when="in the first $LIGHT_SECONDS s after the restart" ;;
    esac
    jq -r --arg when "$when" '"Light load \($when) (16 clients, half eventual reads): \(.throughput | floor) requests/s, p99 \(.latency_milliseconds.p99) ms, max \(.latency_milliseconds.max) ms, \(.error_count) errors."' \
        "$WORK_DIR/$report.json" || true
done
grep -h "a peer sent its state as a snapshot" "$WORK_DIR/learner2.log" | tail -1 || true
