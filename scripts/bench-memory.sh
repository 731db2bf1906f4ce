#!/usr/bin/env bash
# Resident memory of every node after 1 million writes over 10,000 keys.
#
#   scripts/bench-memory.sh                      # this cluster (paxos up, release build)
#   WITH_ETCD=1 scripts/bench-memory.sh          # and a 3-member etcd for comparison
#
# Writes come from `paxos bench` (256 clients, 12-byte keys, 128-byte values); when they
# are done the script prints each node's VmRSS and VmHWM (peak) from /proc and the size
# of its data directory. Environment: WRITES (1000000), KEYS (10000), CLIENTS (256),
# WORK_DIR, PAXOS_BIN, ETCD_BIN, WITH_ETCD.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

WRITES=${WRITES:-1000000}
KEYS=${KEYS:-10000}
CLIENTS=${CLIENTS:-256}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-memory.XXXXXX)}
PAXOS_BIN=${PAXOS_BIN:-target/release/paxos}
ETCD_BIN=${ETCD_BIN:-etcd}
WITH_ETCD=${WITH_ETCD:-}
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-17600}
PAXOS_CLIENT_PORT=${PAXOS_CLIENT_PORT:-17900}
ETCD_CLIENT_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
STARTED_PIDS=()

cleanup() {
    stop_pids "${STARTED_PIDS[@]}"
    STARTED_PIDS=()
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


if [[ ! -x "$PAXOS_BIN" ]]; then
    cargo build --release --quiet
fi

# report NAME PID DIRECTORY: one line of the table.
report() {
    local name=$1 pid=$2 directory=$3
    local rss peak disk
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    peak=$(awk '/^VmHWM/ {print $2}' "/proc/$pid/status")
    disk=$(du -sk "$directory" 2>/dev/null | cut -f1 || true)
    awk -v name="$name" -v rss="$rss" -v peak="$peak" -v disk="${disk:-0}" \
        'BEGIN { printf "| %-10s | %8.1f | %8.1f | %8.1f |\n", name, rss / 1024, peak / 1024, disk / 1024 }' 
}

write_load() {
    "$PAXOS_BIN" bench --target "$1" --endpoint "$2" --clients "$CLIENTS" --keys "$KEYS" \
        --requests "$WRITES" --duration 60m --write-ratio 1 --quiet | sed 's/^/    /' >&2
}

echo "== paxos up, then $WRITES writes over $KEYS keys" >&2
ports_free "$PAXOS_CLIENT_PORT" $((PAXOS_BASE_PORT + 1)) $((PAXOS_BASE_PORT + 101)) \
    $((PAXOS_BASE_PORT + 201))
"$PAXOS_BIN" up --data-dir "$WORK_DIR/paxos" --base-port "$PAXOS_BASE_PORT" \
    --client-port "$PAXOS_CLIENT_PORT" >"$WORK_DIR/paxos.log" 2>&1 &
up_pid=$!
STARTED_PIDS+=("$up_pid")
until curl -sf -XPOST "http://127.0.0.1:$PAXOS_CLIENT_PORT/write" \
    -d '{"key":"probe","value":"probe"}' >/dev/null; do
    sleep 0.2
done
write_load paxos "http://127.0.0.1:$PAXOS_CLIENT_PORT"
sleep 2 # let the learners apply the tail
echo "| node | RSS MiB | peak MiB | data MiB |"
echo "|---|---:|---:|---:|"
for pid in $(pgrep -P "$up_pid"); do
    role=$(tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 2p)
    id=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n "s/^$(echo "$role" | tr a-z A-Z)_ID=//p")
    directory="$WORK_DIR/paxos/$role${id:-1}"
    report "$role${id:-1}" "$pid" "$directory"
done
kill -TERM "$up_pid"
wait "$up_pid" 2>/dev/null || true
STARTED_PIDS=()

if [[ -n "$WITH_ETCD" ]]; then
    echo "== etcd (3 members), then $WRITES writes over $KEYS keys" >&2
    ports_free "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    cluster=""
    for index in 0 1 2; do
        cluster+="${cluster:+,}etcd$((index + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$index]}"
    done
    endpoints=""
    for index in 0 1 2; do
        name="etcd$((index + 1))"
        "$ETCD_BIN" --name "$name" --data-dir "$WORK_DIR/$name" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token bench-memory >"$WORK_DIR/$name.log" 2>&1 &
        STARTED_PIDS+=($!)
        endpoints+="${endpoints:+,}http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}"
    done
    until curl -sf -XPOST "http://127.0.0.1:${ETCD_CLIENT_PORTS[0]}/v3/kv/put" \
        -d '{"key":"cHJvYmU=","value":"cHJvYmU="}' >/dev/null; do
        sleep 0.2
    done
    write_load etcd "$endpoints"
    echo
    echo "| node | RSS MiB | peak MiB | data MiB |"
    echo "|---|---:|---:|---:|"
    for index in 0 1 2; do
        report "etcd$((index + 1))" "${STARTED_PIDS[$index]}" "$WORK_DIR/etcd$((index + 1))"
    done
fi
