#!/usr/bin/env bash
# The same loads against a 3-member etcd cluster and against this cluster, one after the
# other on this machine, with one load generator (`paxos bench`), then each figure for both
# and their ratio: one table in plaintext, one with TLS between the members/nodes.
#
#   scripts/bench-vs-etcd.sh                 # full run, both tables (about 20 minutes)
#   DURATION=5s WARMUP=1s scripts/bench-vs-etcd.sh
#   TLS=on scripts/bench-vs-etcd.sh          # only the TLS table (or --tls)
#   TLS=off scripts/bench-vs-etcd.sh         # only the plaintext table (or --plaintext)
#
# The two tables, each with both systems under the same transport security:
# - plaintext: etcd with http peer URLs; this cluster with `paxos up --insecure` (the node
#   plane in plaintext, PAXOS_INSECURE=true).
# - tls: etcd with peer TLS (https peer URLs, --peer-cert-file, --peer-key-file,
#   --peer-trusted-ca-file, --peer-client-cert-auth: mutual TLS between members, with a CA
#   and member certificates made here with openssl, SANs 127.0.0.1 and localhost); this
#   cluster with `paxos up` as it runs by default: mutual TLS between every node, with the
#   CA and node certificates that `paxos up` writes under its data directory.
# The client side stays plain HTTP in both tables, for both systems: this cluster's client
# API has no TLS yet (issue 14), and the load generator, `paxos bench`, speaks only http://
# (it refuses https:// endpoints), so etcd's client URLs stay http too (no --cert-file,
# --key-file, --trusted-ca-file) and the comparison stays equal. The TLS table therefore
# measures TLS where both systems spend it in replication: every proposal, vote and
# decision between members/nodes is encrypted; the client's request is not.
#
# etcd: Debian's etcd-server (3.4; installed with apt-get if missing), 3 members on
# 127.0.0.1, separate data directories, default settings (fsync on), reached through its
# JSON gateway (/v3/kv/put, /v3/kv/range). This cluster: `paxos up` from a release build,
# 3 acceptors that fsync every vote before answering, 2 proposers, 2 learners. Each table
# starts both systems from empty data directories.
#
# Payload for both: 12-byte random keys (KEYS of them), 128-byte values.
# Loads: writes with 16, 64 and 256 clients; strong reads (etcd: linearizable ranges);
# eventual reads (etcd: serializable ranges); writes from a single client.
#
# Environment: DURATION (10s), WARMUP (2s), CLIENT_COUNTS ("16 64 256"), KEYS (10000),
# WORK_DIR (data directories; default a fresh directory under /var/tmp, on disk so that
# fsync means something), RESULTS_DIR (JSON of every run, in plaintext/ and tls/, and
# summary.md; default bench-results/<time>), PAXOS_BIN (default target/release/paxos,
# built if missing), ETCD_BIN (default etcd), ONLY ("etcd" or "paxos" to run one system),
# TLS ("both", the default: the plaintext table, then the TLS table; "off" or "on" for
# one), OPENSSL (default openssl; installed with apt-get if missing, for etcd's TLS table).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CLIENT_COUNTS=${CLIENT_COUNTS:-"16 64 256"}
KEYS=${KEYS:-10000}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-vs-etcd.XXXXXX)}
RESULTS_DIR=${RESULTS_DIR:-bench-results/$(date +%Y%m%d-%H%M%S)}
PAXOS_BIN=${PAXOS_BIN:-target/release/paxos}
ETCD_BIN=${ETCD_BIN:-etcd}
ONLY=${ONLY:-}
TLS=${TLS:-both}
OPENSSL=${OPENSSL:-openssl}
ETCD_CLIENT_PORTS=(23791 23792 23793)
ETCD_PEER_PORTS=(23801 23802 23803)
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-17600}
PAXOS_CLIENT_PORT=${PAXOS_CLIENT_PORT:-17900}

for argument in "$@"; do
    case "$argument" in
        --tls) TLS=on ;;
        --plaintext | --insecure) TLS=off ;;
        --both) TLS=both ;;
        *)
            echo "bench-vs-etcd: unknown argument $argument (--tls, --plaintext or --both)" >&2
            exit 2
            ;;
    esac
done
case "$TLS" in
    both) MODES=(plaintext tls) ;;
    off | 0 | no | false | plaintext) MODES=(plaintext) ;;
    on | 1 | yes | true | tls) MODES=(tls) ;;
    *)
        echo "bench-vs-etcd: TLS=$TLS is not both, on or off" >&2
        exit 2
        ;;
esac
MODE=""   # the table being measured: plaintext or tls

mkdir -p "$RESULTS_DIR" "$WORK_DIR"
STARTED_PIDS=()

cleanup() {
    stop_pids "${STARTED_PIDS[@]}"
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
    if [[ " ${MODES[*]} " == *" tls "* && "$ONLY" != paxos ]] &&
        ! command -v "$OPENSSL" >/dev/null 2>&1; then
        log "installing openssl (for etcd's certificates)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
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
        echo "tables: ${MODES[*]} (tls: etcd peer TLS, paxos node-plane mutual TLS; clients plain HTTP in both)"
    } | tee "$RESULTS_DIR/machine.txt" >&2
}

# bench NAME ARGS...: one run of the load generator, its JSON kept as MODE/NAME.json.
bench() {
    local name=$1
    shift
    log "$MODE: $name"
    "$PAXOS_BIN" bench --duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" \
        --key-size 12 --value-size 128 --output json --quiet "$@" \
        >"$RESULTS_DIR/$MODE/$name.json"
    python3 - "$RESULTS_DIR/$MODE/$name.json" <<'EOF' >&2
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


# etcd_certificates DIR: a CA and one certificate per member (etcd1..3) for etcd's peer
# TLS, made with openssl: EC P-256, SANs IP 127.0.0.1 and DNS localhost, for server and
# client use (a member both accepts and opens peer connections). Valid for 2 days.
etcd_certificates() {
    local directory=$1 name
    mkdir -p "$directory"
    "$OPENSSL" req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
        -subj "/CN=bench-vs-etcd CA" -keyout "$directory/ca.key" -out "$directory/ca.pem" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>"$directory/openssl.log"
    for name in etcd1 etcd2 etcd3; do
        "$OPENSSL" req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$name" \
            -keyout "$directory/$name.key" -out "$directory/$name.csr" 2>>"$directory/openssl.log"
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth,clientAuth" >"$directory/$name.ext"
        "$OPENSSL" x509 -req -in "$directory/$name.csr" -CA "$directory/ca.pem" \
            -CAkey "$directory/ca.key" -CAcreateserial -days 2 \
            -extfile "$directory/$name.ext" -out "$directory/$name.pem" 2>>"$directory/openssl.log"
        "$OPENSSL" verify -CAfile "$directory/ca.pem" "$directory/$name.pem" >/dev/null
    done
}

# start_etcd: three members from empty data directories; peer TLS in the TLS table.
start_etcd() {
    ports_free "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    local cluster="" index peer_scheme=http certificates="$WORK_DIR/etcd-certs"
    if [[ "$MODE" == tls ]]; then
        peer_scheme=https
        [[ -s "$certificates/etcd3.pem" ]] || etcd_certificates "$certificates"
    fi
    for index in 0 1 2; do
        cluster+="${cluster:+,}etcd$((index + 1))=$peer_scheme://127.0.0.1:${ETCD_PEER_PORTS[$index]}"
    done
    for index in 0 1 2; do
        local name="etcd$((index + 1))" peer_tls=()
        if [[ "$MODE" == tls ]]; then
            peer_tls=(--peer-cert-file "$certificates/$name.pem"
                --peer-key-file "$certificates/$name.key"
                --peer-trusted-ca-file "$certificates/ca.pem" --peer-client-cert-auth)
        fi
        # Client URLs are http in both tables: `paxos bench` speaks no https (see the top).
        "$ETCD_BIN" --name "$name" --data-dir "$WORK_DIR/$MODE/$name" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --listen-peer-urls "$peer_scheme://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-advertise-peer-urls "$peer_scheme://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "bench-vs-etcd-$MODE" ${peer_tls[@]+"${peer_tls[@]}"} \
            >"$WORK_DIR/$MODE-$name.log" 2>&1 &
        STARTED_PIDS+=($!)
    done
    local deadline=$((SECONDS + 60))
    until curl -sf -XPOST "http://127.0.0.1:${ETCD_CLIENT_PORTS[0]}/v3/kv/put" \
        -d '{"key":"cHJvYmU=","value":"cHJvYmU="}' >/dev/null; do
        if ((SECONDS > deadline)); then
            tail -20 "$WORK_DIR"/"$MODE"-etcd*.log >&2
            echo "etcd did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
    if [[ "$MODE" == tls ]]; then
        # The peers must really talk mutual TLS: etcd says so at start, and a plaintext
        # request to a peer port is refused.
        if ! grep -q "peerTLS: cert = .*client-cert-auth = true" "$WORK_DIR/$MODE-etcd1.log" ||
            curl -sf -m 2 "http://127.0.0.1:${ETCD_PEER_PORTS[0]}/members" >/dev/null 2>&1; then
            tail -20 "$WORK_DIR/$MODE-etcd1.log" >&2
            echo "etcd's peers do not run mutual TLS" >&2
            exit 1
        fi
    fi
}

start_paxos() {
    ports_free "$PAXOS_CLIENT_PORT" $((PAXOS_BASE_PORT + 1)) $((PAXOS_BASE_PORT + 2)) \
        $((PAXOS_BASE_PORT + 3)) $((PAXOS_BASE_PORT + 101)) $((PAXOS_BASE_PORT + 102)) \
        $((PAXOS_BASE_PORT + 201)) $((PAXOS_BASE_PORT + 202))
    # TLS is what `paxos up` does by default; the plaintext table asks for --insecure.
    local security=()
    [[ "$MODE" == plaintext ]] && security=(--insecure)
    "$PAXOS_BIN" up ${security[@]+"${security[@]}"} --data-dir "$WORK_DIR/$MODE/paxos" \
        --base-port "$PAXOS_BASE_PORT" --client-port "$PAXOS_CLIENT_PORT" \
        >"$WORK_DIR/$MODE-paxos.log" 2>&1 &
    STARTED_PIDS+=($!)
    local deadline=$((SECONDS + 60))
    until curl -sf -XPOST "http://127.0.0.1:$PAXOS_CLIENT_PORT/write" \
        -d '{"key":"probe","value":"probe"}' >/dev/null; do
        if ((SECONDS > deadline)); then
            tail -40 "$WORK_DIR/$MODE-paxos.log" >&2
            echo "paxos did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
    # A table labelled with the wrong transport would be worse than none.
    local expected="Nodes talk over mutual TLS"
    [[ "$MODE" == plaintext ]] && expected="WARNING: --insecure"
    if ! grep -q "$expected" "$WORK_DIR/$MODE-paxos.log"; then
        tail -40 "$WORK_DIR/$MODE-paxos.log" >&2
        echo "paxos up did not say \"$expected\"" >&2
        exit 1
    fi
}

need_tools
machine

for MODE in "${MODES[@]}"; do
    mkdir -p "$RESULTS_DIR/$MODE" "$WORK_DIR/$MODE"
    if [[ "$ONLY" != paxos ]]; then
        if [[ "$MODE" == tls ]]; then
            log "$MODE: starting etcd (3 members, peer TLS)"
        else
            log "$MODE: starting etcd (3 members)"
        fi
        start_etcd
        endpoints=""
        for port in "${ETCD_CLIENT_PORTS[@]}"; do
            endpoints+="${endpoints:+,}http://127.0.0.1:$port"
        done
        run_loads etcd etcd "$endpoints"
        stop_started
    fi

    if [[ "$ONLY" != etcd ]]; then
        if [[ "$MODE" == tls ]]; then
            log "$MODE: starting paxos up (mutual TLS between nodes)"
        else
            log "$MODE: starting paxos up --insecure"
        fi
        start_paxos
        run_loads paxos paxos "http://127.0.0.1:$PAXOS_CLIENT_PORT"
        stop_started
    fi
done

python3 - "$RESULTS_DIR" "$CLIENT_COUNTS" "${MODES[@]}" <<'EOF' | tee "$RESULTS_DIR/summary.md"
import json, os, sys
directory, counts, modes = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
titles = {
    "plaintext": "Plaintext: etcd with http peers, `paxos up --insecure`; clients plain HTTP",
    "tls": "TLS between members/nodes: etcd peer TLS (mutual), `paxos up` (mutual TLS); clients plain HTTP",
}
def load(mode, name):
    path = os.path.join(directory, mode, name + ".json")
    return json.load(open(path)) if os.path.exists(path) else None
def get(result, field):
    if result is None:
        return None
    return result["throughput"] if field == "throughput" else result["latency_milliseconds"][field]
def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"
def number(value, digits):
    return f"{value:.{digits}f}" if value else "-"
rows = [("writes", f"write-{c}", c) for c in counts] + [("writes", "write-1", "1")]
rows += [("strong reads", f"strong-read-{c}", c) for c in counts]
rows += [("eventual reads", f"eventual-read-{c}", c) for c in counts]
for mode in modes:
    print(f"### {titles[mode]}")
    print()
    print("| load | clients | etcd req/s | paxos req/s | paxos/etcd | etcd p50 ms | paxos p50 ms | etcd p99 ms | paxos p99 ms | p99 paxos/etcd | errors etcd/paxos |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for load_name, name, clients in rows:
        etcd, paxos = load(mode, "etcd-" + name), load(mode, "paxos-" + name)
        et, pt = get(etcd, "throughput"), get(paxos, "throughput")
        e50, p50 = get(etcd, "p50"), get(paxos, "p50")
        e99, p99 = get(etcd, "p99"), get(paxos, "p99")
        cells = [load_name, clients, number(et, 0), number(pt, 0), ratio(pt, et),
                 number(e50, 2), number(p50, 2), number(e99, 2), number(p99, 2), ratio(p99, e99)]
        cells.append("/".join(str(r["error_count"]) if r else "-" for r in (etcd, paxos)))
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print()
if len(modes) == 2:
    print("### What TLS costs each system (TLS table / plaintext table, same run)")
    print()
    print("| load | clients | etcd req/s | paxos req/s | etcd p99 | paxos p99 |")
    print("|---|---:|---:|---:|---:|---:|")
    for load_name, name, clients in rows:
        cells = [load_name, clients]
        for field in ("throughput", "p99"):
            for system in ("etcd", "paxos"):
                cells.append(ratio(get(load("tls", f"{system}-{name}"), field),
                                   get(load("plaintext", f"{system}-{name}"), field)))
        print("| " + " | ".join(str(c) for c in cells) + " |")
    print()
EOF
log "results in $RESULTS_DIR"
