# Shell functions the benchmark scripts share (sourced, not run).

# stop_pids PID...: asks each process to stop (TERM), waits up to 10 s for each, then
# kills what is left, so that a benchmark never leaves a node running.
stop_pids() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# ports_free PORT...: fails, naming the port, if anything already listens on one of them.
ports_free() {
    local port
    for port in "$@"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "port $port is already in use on 127.0.0.1; choose other ports" >&2
            exit 1
        fi
    done
}

# stop_started: stops the processes in STARTED_PIDS (the caller's list of what it
# started), waiting for each, and empties the list.
stop_started() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    STARTED_PIDS=()
}
