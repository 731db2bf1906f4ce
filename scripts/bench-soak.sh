#!/usr/bin/env bash
# The soak of issue 12 ("bounded state"): many writes over a fixed key space, with each
# node's memory and disk sampled while they run, to see whether they stay flat (bounded by
# the key space) or grow with the number of writes.
#
#   scripts/bench-soak.sh                                   # 5,000,000 writes, and etcd if on PATH
#   WRITES=200000 OUT_DIR=/tmp/soak scripts/bench-soak.sh  # a quick trial
#   WITH_ETCD=0 scripts/bench-soak.sh                       # this cluster only
#
# This cluster: `paxos up` in a fresh directory (3 acceptors, 2 proposers, 2 learners,
# 1 client API; mutual TLS between nodes, as it runs by default), loaded by `paxos bench`
# with CLIENTS clients, WRITES writes over KEYS keys, 12-byte keys, 128-byte values.
# etcd (WITH_ETCD=1; the default when `etcd` is on PATH, e.g. `apt-get install
# etcd-server`): afterwards, never at the same time, 3 members on 127.0.0.1 with the
# flags of scripts/bench-vs-etcd.sh's plaintext table (http peers, fsync on), and the
# same load from the same load generator. etcd keeps every revision of every key until it
# is compacted: with its defaults its memory and disk grow with the writes too. Here it
# runs as its documentation recommends for a long-running cluster, with automatic
# compaction enabled: --auto-compaction-mode=revision --auto-compaction-retention=10000
# (ETCD_COMPACTION_RETENTION; 0 turns it off). No defragmentation is run, so etcd's bbolt
# file keeps its high-water size and reuses its free pages.
#
# While the load runs, every SAMPLE_SECONDS this records for every node process: seconds
# since the load started, writes done so far (summed from `paxos bench`'s progress lines,
# one a second), VmRSS and VmHWM (peak) from /proc/PID/status and `du -sk` of its data
# directory, one line per node in OUT_DIR/soak.csv
# (node,role,elapsed_s,writes_done,rss_kib,peak_kib,disk_kib). A last sample is taken 2 s
# after the load ends. Then it draws OUT_DIR/soak.png with scripts/plot-soak.py (if
# matplotlib is installed) and prints, per node, RSS and disk at the end of the first
# FIRST_MARK writes (WRITES/5: the first million of 5 million) and at the end, each the
# median of the samples within FIRST_MARK/4 writes of it (at the end: the last
# FIRST_MARK/2), so that a sample taken during a compaction's spike does not decide the
# verdict; disk as the largest sample of the first FIRST_MARK writes and of the last
# FIRST_MARK (a compacting log is a sawtooth: its high-water mark is what must not grow);
# their growth, and "bytes per live
# key" (sum over acceptors and learners, or over etcd's members, divided by KEYS). The
# figure of merit, printed as PASS/FAIL: acceptors and learners grow by at most 10% in
# RSS and in disk from the first mark to the end. It is a benchmark: it exits 0 whether
# they pass or not, and non-zero only if something failed to run.
#
# Environment: WRITES (5000000), KEYS (10000), CLIENTS (256), SAMPLE_SECONDS (2: at
# 20,000 writes/s a million writes take 50 s, and samples 10 s apart, 5 per million, are
# too few for a median or to find a compacting log's high-water mark),
# FIRST_MARK (WRITES/5), OUT_DIR (docs/soak), WORK_DIR (data directories; default a fresh
# directory under /var/tmp, removed at the end; a 5M run may need a few GB there),
# PAXOS_BIN (target/release/paxos, built if missing), ETCD_BIN (etcd), WITH_ETCD,
# ETCD_COMPACTION_RETENTION (10000), MAX_DURATION (bound on each load, 600m),
# PAXOS_BASE_PORT (17300), PAXOS_CLIENT_PORT (17290), ETCD_CLIENT_PORT (24791, and the
# next two), ETCD_PEER_PORT (24801, and the next two).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh

WRITES=${WRITES:-5000000}
KEYS=${KEYS:-10000}
CLIENTS=${CLIENTS:-256}
SAMPLE_SECONDS=${SAMPLE_SECONDS:-2}
FIRST_MARK=${FIRST_MARK:-$((WRITES / 5))}
OUT_DIR=${OUT_DIR:-docs/soak}
WORK_DIR=${WORK_DIR:-$(mktemp -d /var/tmp/bench-soak.XXXXXX)}
PAXOS_BIN=${PAXOS_BIN:-target/release/paxos}
ETCD_BIN=${ETCD_BIN:-etcd}
ETCD_COMPACTION_RETENTION=${ETCD_COMPACTION_RETENTION:-10000}
MAX_DURATION=${MAX_DURATION:-600m}
PAXOS_BASE_PORT=${PAXOS_BASE_PORT:-17300}
PAXOS_CLIENT_PORT=${PAXOS_CLIENT_PORT:-17290}
ETCD_CLIENT_PORT=${ETCD_CLIENT_PORT:-24791}
ETCD_PEER_PORT=${ETCD_PEER_PORT:-24801}
ETCD_CLIENT_PORTS=("$ETCD_CLIENT_PORT" $((ETCD_CLIENT_PORT + 1)) $((ETCD_CLIENT_PORT + 2)))
ETCD_PEER_PORTS=("$ETCD_PEER_PORT" $((ETCD_PEER_PORT + 1)) $((ETCD_PEER_PORT + 2)))
if [[ -z "${WITH_ETCD:-}" ]]; then
    WITH_ETCD=0
    command -v "$ETCD_BIN" >/dev/null 2>&1 && WITH_ETCD=1
fi
CSV="$OUT_DIR/soak.csv"
STARTED_PIDS=()
# The nodes being sampled: name, role, pid and data directory, index by index.
NODE_NAMES=()
NODE_ROLES=()
NODE_PIDS=()
NODE_DIRS=()

log() { echo "== $*" >&2; }

cleanup() {
    stop_pids "${STARTED_PIDS[@]}"
    STARTED_PIDS=()
    rm -rf "$WORK_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


need_tools() {
    if [[ ! -x "$PAXOS_BIN" ]]; then
        log "building paxos (release)"
        cargo build --release --quiet
    fi
    if [[ "$WITH_ETCD" == 1 ]] && ! command -v "$ETCD_BIN" >/dev/null 2>&1; then
        log "installing etcd-server (Debian)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server
    fi
    if [[ "$WITH_ETCD" != 1 ]]; then
        log "etcd skipped (WITH_ETCD=$WITH_ETCD; \`apt-get install etcd-server\` to compare)"
    fi
    if ((FIRST_MARK <= 0 || FIRST_MARK >= WRITES)); then
        echo "FIRST_MARK=$FIRST_MARK must lie in (0, WRITES=$WRITES)" >&2
        exit 2
    fi
}

machine() {
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
        echo "memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
        echo "disk of WORK_DIR: $(df -h "$WORK_DIR" | awk 'NR==2 {print $1, $2, $4 " free"}')"
        echo "paxos: $PAXOS_BIN, $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
        if [[ "$WITH_ETCD" == 1 ]]; then
            echo "etcd: $("$ETCD_BIN" --version | head -1), auto-compaction revision $ETCD_COMPACTION_RETENTION"
        fi
        echo "writes: $WRITES over $KEYS keys (12-byte keys, 128-byte values), $CLIENTS clients"
        echo "sampled every $SAMPLE_SECONDS s; first mark at $FIRST_MARK writes"
    } | tee "$OUT_DIR/machine.txt" >&2
}

# elapsed_since START: seconds since START (an $EPOCHREALTIME), one decimal.
elapsed_since() {
    awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'
}

# writes_done LOG: writes answered without error so far, from `paxos bench`'s progress
# lines ("[  12.0s]    35012 req/s  mean 7.21 ms  errors 0": requests completed in that
# second, and the errors so far).
writes_done() {
    awk '/ req\/s / {
            line = $0
            sub(/^[^]]*\]/, "", line)
            split(line, fields, " ")
            completed += fields[1]
            if (match(line, /errors [0-9]+/)) errors = substr(line, RSTART + 7, RLENGTH - 7)
        }
        END { print completed - errors }' "$1"
}

# sample ELAPSED WRITES: one CSV line for every node being sampled.
sample() {
    local elapsed=$1 writes=$2 index pid rss peak disk
    for index in "${!NODE_NAMES[@]}"; do
        pid=${NODE_PIDS[$index]}
        if [[ ! -r "/proc/$pid/status" ]]; then
            echo "${NODE_NAMES[$index]} (pid $pid) is not running" >&2
            continue
        fi
        rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
        peak=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
        disk=$(du -sk "${NODE_DIRS[$index]}" 2>/dev/null | cut -f1 || true)
        echo "${NODE_NAMES[$index]},${NODE_ROLES[$index]},$elapsed,$writes,$rss,$peak,$disk" >>"$CSV"
    done
    # One line on the terminal: the sum of RSS and disk of the nodes that keep state.
    awk -F, -v elapsed="$elapsed" -v writes="$writes" -v count="${#NODE_NAMES[@]}" '
        { line[NR] = $0 }
        END {
            for (i = NR - count + 1; i <= NR; i++) {
                split(line[i], f, ",")
                if (f[2] == "acceptor" || f[2] == "learner" || f[2] == "etcd") { rss += f[5]; disk += f[7] }
            }
            printf "   [%7.1fs] %9d writes  state nodes: RSS %7.1f MiB  disk %7.1f MiB\n", elapsed, writes, rss / 1024, disk / 1024
        }' "$CSV" >&2
}

# all_running: fails, naming it, if a sampled node has exited.
all_running() {
    local index
    for index in "${!NODE_NAMES[@]}"; do
        if ! kill -0 "${NODE_PIDS[$index]}" 2>/dev/null; then
            echo "${NODE_NAMES[$index]} exited during the soak" >&2
            return 1
        fi
    done
}

# soak SYSTEM ENDPOINTS: the load against one system, sampled until it ends.
soak() {
    local system=$1 endpoints=$2 start bench_pid next
    local bench_log="$WORK_DIR/$system-bench.log" result="$OUT_DIR/$system-bench.json"
    log "$system: $WRITES writes over $KEYS keys, sampled every $SAMPLE_SECONDS s"
    start=$EPOCHREALTIME
    sample 0.0 0
    "$PAXOS_BIN" bench --target "$system" --endpoint "$endpoints" --clients "$CLIENTS" \
        --keys "$KEYS" --key-size 12 --value-size 128 --write-ratio 1 \
        --requests "$WRITES" --duration "$MAX_DURATION" --output json \
        >"$result" 2>"$bench_log" &
    bench_pid=$!
    STARTED_PIDS+=("$bench_pid")
    while kill -0 "$bench_pid" 2>/dev/null; do
        next=$((SECONDS + SAMPLE_SECONDS))
        while ((SECONDS < next)) && kill -0 "$bench_pid" 2>/dev/null; do
            sleep 0.5
        done
        kill -0 "$bench_pid" 2>/dev/null || break
        sample "$(elapsed_since "$start")" "$(writes_done "$bench_log")"
    done
    if ! wait "$bench_pid"; then
        tail -20 "$bench_log" >&2
        echo "paxos bench against $system failed" >&2
        exit 1
    fi
    local elapsed
    elapsed=$(elapsed_since "$start")
    sleep 2 # let the learners apply the tail
    sample "$(elapsed_since "$start")" \
        "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["requests"])' "$result")"
    all_running
    python3 - "$result" "$elapsed" "$WRITES" <<'EOF' >&2
import json, sys
r = json.load(open(sys.argv[1]))
l = r["latency_milliseconds"]
print(f"   {r['requests']} writes in {float(sys.argv[2]):.1f} s: {r['throughput']:.0f}/s, "
      f"p99 {l['p99']:.1f} ms, max {l['max']:.1f} ms, errors {r['error_count']}")
if r["requests"] + r["error_count"] < int(sys.argv[3]):
    print(f"   WARNING: the load stopped at its MAX_DURATION before {sys.argv[3]} writes")
EOF
}

start_paxos() {
    ports_free "$PAXOS_CLIENT_PORT" $((PAXOS_BASE_PORT + 1)) $((PAXOS_BASE_PORT + 2)) \
        $((PAXOS_BASE_PORT + 3)) $((PAXOS_BASE_PORT + 101)) $((PAXOS_BASE_PORT + 102)) \
        $((PAXOS_BASE_PORT + 201)) $((PAXOS_BASE_PORT + 202))
    log "paxos: starting paxos up (3 acceptors, 2 proposers, 2 learners, 1 client API)"
    "$PAXOS_BIN" up --data-dir "$WORK_DIR/paxos" --base-port "$PAXOS_BASE_PORT" \
        --client-port "$PAXOS_CLIENT_PORT" >"$WORK_DIR/paxos.log" 2>&1 &
    local up_pid=$!
    STARTED_PIDS+=("$up_pid")
    local deadline=$((SECONDS + 60))
    until curl -sf -XPOST "http://127.0.0.1:$PAXOS_CLIENT_PORT/write" \
        -d '{"key":"probe","value":"probe"}' >/dev/null; do
        if ((SECONDS > deadline)) || ! kill -0 "$up_pid" 2>/dev/null; then
            tail -40 "$WORK_DIR/paxos.log" >&2
            echo "paxos did not start" >&2
            exit 1
        fi
        sleep 0.2
    done
    # The nodes are the children of `paxos up`: `paxos <role>`, with ROLE_ID and DATA_DIR
    # in their environment.
    NODE_NAMES=() NODE_ROLES=() NODE_PIDS=() NODE_DIRS=()
    local pid role id directory
    for pid in $(pgrep -P "$up_pid"); do
        role=$(tr '\0' '\n' <"/proc/$pid/cmdline" | grep -m1 -xE 'acceptor|proposer|learner|client' || true)
        [[ -n "$role" ]] || continue
        id=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n "s/^${role^^}_ID=//p")
        directory=$(tr '\0' '\n' <"/proc/$pid/environ" | sed -n 's/^DATA_DIR=//p')
        NODE_NAMES+=("$role${id:-1}")
        NODE_ROLES+=("$role")
        NODE_PIDS+=("$pid")
        NODE_DIRS+=("${directory:-$WORK_DIR/paxos/$role${id:-1}}")
    done
    if ((${#NODE_NAMES[@]} != 8)); then
        echo "expected 8 nodes under paxos up, found ${#NODE_NAMES[@]}: ${NODE_NAMES[*]}" >&2
        exit 1
    fi
}

# start_etcd: three members from empty data directories, bench-vs-etcd.sh's plaintext
# flags plus automatic compaction.
start_etcd() {
    ports_free "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    log "etcd: starting 3 members (auto-compaction: revision, retention $ETCD_COMPACTION_RETENTION)"
    local cluster="" index compaction=()
    if ((ETCD_COMPACTION_RETENTION > 0)); then
        compaction=(--auto-compaction-mode=revision
            "--auto-compaction-retention=$ETCD_COMPACTION_RETENTION")
    fi
    for index in 0 1 2; do
        cluster+="${cluster:+,}etcd$((index + 1))=http://127.0.0.1:${ETCD_PEER_PORTS[$index]}"
    done
    NODE_NAMES=() NODE_ROLES=() NODE_PIDS=() NODE_DIRS=()
    for index in 0 1 2; do
        local name="etcd$((index + 1))"
        "$ETCD_BIN" --name "$name" --data-dir "$WORK_DIR/$name" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[$index]}" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[$index]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token bench-soak ${compaction[@]+"${compaction[@]}"} \
            >"$WORK_DIR/$name.log" 2>&1 &
        STARTED_PIDS+=($!)
        NODE_NAMES+=("$name")
        NODE_ROLES+=(etcd)
        NODE_PIDS+=($!)
        NODE_DIRS+=("$WORK_DIR/$name")
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

mkdir -p "$OUT_DIR" "$WORK_DIR"
need_tools
machine
echo "node,role,elapsed_s,writes_done,rss_kib,peak_kib,disk_kib" >"$CSV"
rm -f "$OUT_DIR/paxos-bench.json" "$OUT_DIR/etcd-bench.json"

start_paxos
soak paxos "http://127.0.0.1:$PAXOS_CLIENT_PORT"
stop_started

if [[ "$WITH_ETCD" == 1 ]]; then
    start_etcd
    endpoints=""
    for port in "${ETCD_CLIENT_PORTS[@]}"; do
        endpoints+="${endpoints:+,}http://127.0.0.1:$port"
    done
    soak etcd "$endpoints"
    stop_started
fi

if python3 -c 'import matplotlib' 2>/dev/null; then
    python3 scripts/plot-soak.py "$CSV" "$OUT_DIR/soak.png"
else
    log "no plot: matplotlib is missing (pip install matplotlib; then scripts/plot-soak.py $CSV)"
fi

python3 - "$CSV" "$KEYS" "$FIRST_MARK" "$OUT_DIR" <<'EOF' | tee "$OUT_DIR/summary.md"
import csv, json, os, sys
path, keys, mark, directory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for system in ("paxos", "etcd"):
    result = os.path.join(directory, f"{system}-bench.json")
    if os.path.exists(result):
        r = json.load(open(result))
        l = r["latency_milliseconds"]
        print(f"{system}: {r['requests']} writes in {r['duration_seconds']:.1f} s, {r['throughput']:.0f}/s,"
              f" p99 {l['p99']:.1f} ms, max {l['max']:.1f} ms, errors {r['error_count']}")
print()
nodes = {}  # name -> (role, [(writes, rss_kib, disk_kib)])
for row in csv.DictReader(open(path)):
    role, samples = nodes.setdefault(row["node"], (row["role"], []))
    samples.append((int(row["writes_done"]), int(row["rss_kib"]), int(row["disk_kib"] or 0),
                    int(row["peak_kib"])))

def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2

def interpolated(samples, writes, column):
    """The value at `writes` writes, interpolated between the two samples around it."""
    points = sorted((s[0], s[column]) for s in samples)
    for (w0, v0), (w1, v1) in zip(points, points[1:]):
        if w0 <= writes <= w1:
            return v0 if w1 == w0 else v0 + (v1 - v0) * (writes - w0) / (w1 - w0)
    return points[-1][1]

# A node's value "at" a mark is the median of its samples within a quarter of the first
# mark around it (at the end: the last half of that), so that one sample taken during a
# compaction (a spike that lasts a second) does not decide the verdict.
window = mark / 4

def at(samples, writes, column):
    near = [s[column] for s in samples if abs(s[0] - writes) <= window]
    return median(near) if near else interpolated(samples, writes, column)

def end(samples, column):
    last = max(samples)[0]  # the sample with the most writes: the last one
    near = [s[column] for s in samples if s[0] >= last - 2 * window]
    return median(near)

# Disk is judged by its high-water mark instead: a log that compacts is a sawtooth (an
# acceptor's between a few KiB and its 16 MiB threshold), whose samples fall anywhere on
# it. A node's disk over a million writes is the largest sample in it, the first million
# (up to the mark) against the last.
def disk_first(samples):
    return max(s[2] for s in samples if s[0] <= mark)

def disk_last(samples):
    last = max(samples)[0]
    return max(s[2] for s in samples if s[0] >= last - mark)

def growth(first, last):
    return (last - first) / first * 100 if first else float("inf")

# RSS is judged by its trend: the least-squares line through every sample from the first
# mark to the end, and its growth from the mark to the last sample. Two points (even each
# a median) of a process of 15 MiB move by the allocator's 1-2 MiB, which is 10%; the line
# through a few hundred samples does not, and a growth with the history (the 205 bytes per
# write of acceptors before trimming) shows as its slope.
def rss_trend(samples):
    points = [(s[0], s[1]) for s in samples if s[0] >= mark]
    last = max(samples)[0]
    if len(points) < 2 or last <= mark:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread
    at_mark = mean_y + slope * (mark - mean_x)
    return growth(at_mark, at_mark + slope * (last - mark))

def millions(writes):
    return f"{writes / 1e6:g}M"

judged = ("acceptor", "learner", "etcd")
last_writes = {name: max(samples)[0] for name, (role, samples) in nodes.items()}
end_label = millions(min(last_writes.values())) if last_writes else "end"
print(f"RSS at {millions(mark)} writes and at the end ({end_label}), each the median of the"
      f" samples within {millions(window)} writes of it (at the end: the last {millions(2 * window)}),"
      f" and the RSS trend: the growth, from {millions(mark)} to the end, of the least-squares line"
      f" through every sample from {millions(mark)} on; disk: the largest sample of the first"
      f" {millions(mark)} writes and of the last; flat = the RSS trend and the disk grow by at most"
      " 10% (judged for acceptors and learners; etcd for comparison)")
print()
print(f"| node | RSS MiB {millions(mark)} | RSS MiB end | RSS growth | RSS trend | peak MiB end"
      f" | disk MiB {millions(mark)} | disk MiB end | disk growth | flat |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
totals = {}  # system -> [rss first, rss end, disk first, disk end]
for name, (role, samples) in nodes.items():
    rss0, rss1 = at(samples, mark, 1) / 1024, end(samples, 1) / 1024
    disk0, disk1 = disk_first(samples) / 1024, disk_last(samples) / 1024
    peak = max(samples)[3] / 1024
    trend = rss_trend(samples)
    if role in judged:
        flat = trend is not None and trend <= 10 and growth(disk0, disk1) <= 10
        verdict = "PASS" if flat else "FAIL"
        system = "etcd" if role == "etcd" else "paxos"
        sums = totals.setdefault(system, [0, 0, 0, 0])
        for index, value in enumerate((rss0, rss1, disk0, disk1)):
            sums[index] += value
    else:
        verdict = "-"
    disk_growth = f"{growth(disk0, disk1):+.1f}%" if disk0 else "-"
    trend_cell = f"{trend:+.1f}%" if trend is not None else "-"
    print(f"| {name} | {rss0:.1f} | {rss1:.1f} | {growth(rss0, rss1):+.1f}% | {trend_cell} | {peak:.1f}"
          f" | {disk0:.1f} | {disk1:.1f} | {disk_growth} | {verdict} |")
print()
print(f"Bytes per live key ({keys} keys): sum over acceptors and learners (paxos) or the 3 members (etcd)")
print()
print(f"| system | RSS B/key {millions(mark)} | RSS B/key end | disk B/key {millions(mark)} | disk B/key end |")
print("|---|---:|---:|---:|---:|")
for system, sums in totals.items():
    cells = [f"{value * 1024 * 1024 / keys:,.0f}" for value in sums]
    print(f"| {system} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
EOF
log "samples in $CSV, summary in $OUT_DIR/summary.md"
