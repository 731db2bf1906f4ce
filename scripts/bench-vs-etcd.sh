#!/usr/bin/env bash
# The same loads against a 3-member etcd cluster and against this cluster, one after the
# other on this machine, with one load generator (`paxos bench`), then each figure for both
# and their ratio.
#
#   scripts/bench-vs-etcd.sh                 # full run (about 10 minutes)
#   DURATION=5s WARMUP=1s scripts/bench-vs-etcd.sh
#
# etcd: Debian's etcd-server (3.4; installed with apt-get if missing), 3 members on
# 127.0.0.1, separate data directories, default settings (fsync on), reached through its
# JSON gateway (/v3/kv/put, /v3/kv/range). This cluster: `paxos up` from a release build,
# 3 acceptors that fsync every vote before answering, 2 proposers, 2 learners.
#
# Payload for both: 12-byte random keys (KEYS of them), 128-byte values.
# Loads: writes with 16, 64 and 256 clients; strong reads (etcd: linearizable ranges);
# eventual reads (etcd: serializable ranges); writes from a single client.
#
# Environment: DURATION (10s), WARMUP (2s), CLIENT_COUNTS ("16 64 256"), KEYS (10000),
# WORK_DIR (data directories; default a fresh directory under /var/tmp, on disk so that
# fsync means something), RESULTS_DIR (JSON of every run; default bench-results/<time>),
# PAXOS_BIN (default target/release/paxos, built if missing), ETCD_BIN (default etcd),
# ONLY ("etcd" or "paxos" to run one system).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CLIENT_COUNTS=${CLIENT_COUNTS:-"16 64 256"}
KEYS=${KEYS:-10000}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-vs-etcd.XXXXXX)}
RESULTS_DIR=${RESULTS_DIR:-bench-results/$(date +%Y%m%d-%H%M%S)}
PAXOS_BIN=${PAXOS_BIN:-target/release/paxos}
ETCD_BIN=${ETCD_BIN:-etcd}
ONLY=${ONLY:-}
ETCD_CLIENT_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-17600}
PAXOS_CLIENT_PORT=${PAXOS_CLIENT_PORT:-17900}

mkdir -p "$RESULTS_DIR" "$WORK_DIR"
STARTED_PIDS=()

cleanup() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${STARTED_PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
    cp "$WORK_DIR"/*.log "$RESULTS_DIR"/ 2>/dev/null || true
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

need_tools() {
    if ! command -v "$ETCD_BIN" >/dev/null 2>&1; then
        log "installing etcd-server (Debian)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        log "installing python3 (for the comparison table)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3
    fi
    if [[ ! -x "$PAXOS_BIN" ]]; then
        log "building paxos (release)"
        cargo build --release --quiet
    fi
}

machine() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
        echo "disk of WORK_DIR: $(df -h "$WORK_DIR" | awk 'NR==2 {print $1, $2}')"
        echo "kernel: $(uname -r)"
        echo "etcd: $("$ETCD_BIN" --version | head -1)"
        echo "paxos: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        echo "duration: $DURATION, warm-up: $WARMUP, keys: $KEYS"
    } | tee "$RESULTS_DIR/machine.txt" >&2
}

# bench NAME ARGS...: one run of the load generator, its JSON kept as NAME.json.
bench() {
    local name=$1
    shift
    log "$name"
    "$PAXOS_BIN" bench --duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" \
        --key-size 12 --value-size 128 --output json --quiet "$@" \
        >"$RESULTS_DIR/$name.json"
    python3 - "$RESULTS_DIR/$name.json" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_milliseconds"]
print(f"   {r['throughput']:10.0f} req/s  p50 {l['p50']:.2f}  p99 {l['p99']:.2f}  max {l['max']:.2f} ms  errors {r['error_count']}")
EOF
}

# run_loads SYSTEM TARGET ENDPOINTS: every load against one system.
run_loads() {
    local system=$1 target=$2 endpoints=$3
    local common=(--target "$target" --endpoint "$endpoints")
    # Writes first: they fill the key space that the reads then read.
    for clients in $CLIENT_COUNTS; do
        bench "$system-write-$clients" "${common[@]}" --clients "$clients" --write-ratio 1
    done
    bench "$system-write-1" "${common[@]}" --clients 1 --write-ratio 1
    for clients in $CLIENT_COUNTS; do
        bench "$system-strong-read-$clients" "${common[@]}" --clients "$clients" \
            --write-ratio 0 --consistency strong
    done
    for clients in $CLIENT_COUNTS; do
        bench "$system-eventual-read-$clients" "${common[@]}" --clients "$clients" \
            --write-ratio 0 --consistency eventual
    done
}

# ports_free PORT...: fails, naming the port, if anything already listens on one of them
# (benchmarking someone else's server by mistake would be worse than stopping).
ports_free() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is already in use on 127.0.0.1; choose other ports" >&2
            exit 1
        fi
    done
}

start_etcd() {
    ports_free "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    local cluster="" index
    for index in 0 1 2; do
        cluster+="${cluster:+,}etcd$((index + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$index]}"
    done
    for index in 0 1 2; do
        local name="etcd$((index + 1))"
        "$ETCD_BIN" --name "$name" --data-dir "$WORK_DIR/$name" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token bench-vs-etcd \
            >"$WORK_DIR/$name.log" 2>&1 &
        STARTED_PIDS+=($!)
    done
    local deadline=$((SECONDS + 60))
    until curl -sf -XPOST "http://127.0.0.1:${ETCD_CLIENT_PORTS[0]}/v3/kv/put" \
        -d '{"key":"cHJvYmU=","value":"cHJvYmU="}' >/dev/null; do
        if ((SECONDS > deadline)); then
            tail -20 "$WORK_DIR"/etcd*.log >&2
            echo "etcd did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
}

start_paxos() {
    ports_free "$PAXOS_CLIENT_PORT" $((PAXOS_BASE_PORT + 1)) $((PAXOS_BASE_PORT + 2)) \
        $((PAXOS_BASE_PORT + 3)) $((PAXOS_BASE_PORT + 101)) $((PAXOS_BASE_PORT + 102)) \
        $((PAXOS_BASE_PORT + 201)) $((PAXOS_BASE_PORT + 202))
    "$PAXOS_BIN" up --data-dir "$WORK_DIR/paxos" --base-port "$PAXOS_BASE_PORT" \
        --client-port "$PAXOS_CLIENT_PORT" >"$WORK_DIR/paxos.log" 2>&1 &
    STARTED_PIDS+=($!)
    local deadline=$((SECONDS + 60))
    until curl -sf -XPOST "http://127.0.0.1:$PAXOS_CLIENT_PORT/write" \
        -d '{"key":"probe","value":"probe"}' >/dev/null; do
        if ((SECONDS > deadline)); then
            tail -40 "$WORK_DIR/paxos.log" >&2
            echo "paxos did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
}

stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}

need_tools
machine

if [[ "$ONLY" != paxos ]]; then
    log "starting etcd (3 members)"
    start_etcd
    endpoints=""
    for port in "${ETCD_CLIENT_PORTS[@]}"; do
        endpoints+="${endpoints:+,}http://127.0.0.1:$port"
    done
    run_loads etcd etcd "$endpoints"
    stop_started
fi

if [[ "$ONLY" != etcd ]]; then
    log "starting paxos up"
    start_paxos
    run_loads paxos paxos "http://127.0.0.1:$PAXOS_CLIENT_PORT"
    stop_started
fi

python3 - "$RESULTS_DIR" "$CLIENT_COUNTS" <<'EOF' | tee "$RESULTS_DIR/summary.md"
import json, os, sys
directory, counts = sys.argv[1], sys.argv[2].split()
def load(name):
    path = os.path.join(directory, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
rows = [("writes", f"write-{c}", c) for c in counts] + [("writes", "write-1", "1")]
rows += [("strong reads", f"strong-read-{c}", c) for c in counts]
rows += [("eventual reads", f"eventual-read-{c}", c) for c in counts]
print("| load | clients | etcd req/s | paxos req/s | paxos/etcd | etcd p50 ms | paxos p50 ms | etcd p99 ms | paxos p99 ms | p99 paxos/etcd | errors etcd/paxos |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"
for load_name, name, clients in rows:
    etcd, paxos = load("etcd-" + name), load("paxos-" + name)
    def get(result, field):
        if result is None:
            return None
        return result["throughput"] if field == "throughput" else result["latency_milliseconds"][field]
    cells = [load_name, clients]
    et, pt = get(etcd, "throughput"), get(paxos, "throughput")
    cells += [f"{et:.0f}" if et else "-", f"{pt:.0f}" if pt else "-", ratio(pt, et)]
    e50, p50 = get(etcd, "p50"), get(paxos, "p50")
    e99, p99 = get(etcd, "p99"), get(paxos, "p99")
    cells += [f"{e50:.2f}" if e50 else "-", f"{p50:.2f}" if p50 else "-"]
    cells += [f"{e99:.2f}" if e99 else "-", f"{p99:.2f}" if p99 else "-", ratio(p99, e99)]
    errors = [str(r["error_count"]) if r else "-" for r in (etcd, paxos)]
    cells.append("/".join(errors))
    print("| " + " | ".join(str(c) for c in cells) + " |")
EOF
log "results in $RESULTS_DIR"
