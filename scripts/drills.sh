#!/usr/bin/env bash
# Fault drills against the docker compose cluster. Each drill injects one fault with
# docker, asserts what the design promises, and prints its timings:
#
#   1. write and read through the client API's published port
#   2. kill -9 acceptor1: writes continue
#   3. kill -9 the leading proposer: the other takes over (time without a leader)
#   4. stop learner2, write 1,000 keys, start it: it catches up (how long, how fast)
#   5. disconnect acceptor3 from the network: writes continue; reconnected (at a new address
#      if Docker gives one), it votes again
#   6. pause the leader: a new leader is elected; after unpause no split brain (a history
#      of concurrent writes and strong reads, recorded throughout, is linearizable)
#   7. docker compose down, then up with the volumes kept: every acknowledged write is there
#
# Usage: ./scripts/docker-build && ./scripts/drills.sh
#
# Needs docker (with `docker compose` or `docker-compose`), curl, jq and cargo (drill 6
# records its history with tests/running_cluster.rs). It runs its own compose project
# (DRILLS_PROJECT, default paxos-drills) on host port CLIENT_HOST_PORT (default: a free
# port from 18000 up, so that a `paxos up` on 8000 is left alone), starts from empty
# volumes, and removes its containers, network and volumes on exit, failed or not. Other
# containers are never touched.
# DRILLS_KEEP=1 keeps the cluster after a failure, for a look.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT="${DRILLS_PROJECT:-paxos-drills}"
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "${CLIENT_HOST_PORT:-}" ]; then
  CLIENT_HOST_PORT=18000
  while port_in_use "$CLIENT_HOST_PORT"; do CLIENT_HOST_PORT=$((CLIENT_HOST_PORT + 1)); done
elif port_in_use "$CLIENT_HOST_PORT"; then
  # Drilling someone else's cluster would be wrong twice over.
  echo "drills: port $CLIENT_HOST_PORT is already in use; choose another CLIENT_HOST_PORT" >&2
  exit 1
fi
export CLIENT_HOST_PORT
export PAXOS_IMAGE="${PAXOS_IMAGE:-paxos:local}"
URL="http://127.0.0.1:${CLIENT_HOST_PORT}"
CATCH_UP_KEYS="${DRILLS_CATCH_UP_KEYS:-1000}"
PARTITION_SECONDS="${DRILLS_PARTITION_SECONDS:-8}"
HISTORY_SECONDS="${DRILLS_HISTORY_SECONDS:-24}"
WORK="$(mktemp -d -t paxos-drills.XXXXXX)"
ACKNOWLEDGED="$WORK/acknowledged"   # "key value" of every acknowledged write
: >"$ACKNOWLEDGED"
SUMMARY=()
SQUATTER=""   # drill 5's stand-in container, not part of the compose project
FAILED=1

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  echo "drills: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 1
fi
compose() { "${COMPOSE[@]}" --project-name "$PROJECT" --file docker-compose.yml "$@"; }

# --- reporting ---------------------------------------------------------------------------
log() { printf '%s  %s\n' "$(date +%H:%M:%S.%3N)" "$*"; }
now_ms() { local microseconds="${EPOCHREALTIME/./}"; echo $((microseconds / 1000)); }
seconds_since() { awk -v start="$1" -v end="$(now_ms)" 'BEGIN { printf "%.2f", (end - start) / 1000 }'; }
fail() {
  log "DRILL FAILED: $*"
  exit 1
}
passed() {
  log "PASS: $1 -- $2"
  SUMMARY+=("$1|$2")
}

cleanup() {
  local status=$?
  set +e
  if [ "$FAILED" = 1 ]; then
    echo "---- state at failure"
    compose ps
    curl -s -m 3 "$URL/status" | jq -c '{leader, quorum, learners}' 2>/dev/null
    echo "---- last log lines"
    compose logs --no-color --tail 30 2>&1 | tail -n 150
  fi
  [ -n "$SQUATTER" ] && docker rm -f "$SQUATTER" >/dev/null 2>&1
  # A paused container cannot be stopped; a disconnected one is removed with the rest.
  for id in $(compose ps -q 2>/dev/null); do
    [ "$(docker inspect -f '{{.State.Paused}}' "$id" 2>/dev/null)" = true ] && docker unpause "$id" >/dev/null
  done
  if [ "$FAILED" = 1 ] && [ "${DRILLS_KEEP:-0}" = 1 ]; then
    echo "DRILLS_KEEP=1: the cluster is left running; remove it with:"
    echo "  ${COMPOSE[*]} --project-name $PROJECT down -v"
  else
    compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1
  fi
  rm -rf "$WORK"
  [ "$status" = 0 ] && [ "$FAILED" = 1 ] && status=1
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the cluster, through the client API -------------------------------------------------
# Builtins only where it is cheap: a drill writes a thousand keys on a busy machine.
new_request_id() { read -r REQUEST_ID </proc/sys/kernel/random/uuid; }

# write KEY VALUE [SECONDS]: retries with one request id (applied at most once) until the
# write is acknowledged or SECONDS (default 15) pass; prints the slot.
write() {
  local key="$1" value="$2" deadline="" answer
  new_request_id
  while true; do
    if answer="$(curl -sf -m 10 -XPOST "$URL/write" \
      -d "{\"key\":\"$key\",\"value\":\"$value\",\"request_id\":\"$REQUEST_ID\"}")"; then
      echo "$key $value" >>"$ACKNOWLEDGED"
      [[ "$answer" =~ \"slot\":([0-9]+) ]] && echo "${BASH_REMATCH[1]}"
      return 0
    fi
    [ -n "$deadline" ] || deadline=$(($(now_ms) + ${3:-15} * 1000))
    [ "$(now_ms)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# read KEY [CONSISTENCY]: prints the value (empty for null); fails on an error. The drills'
# values are plain words, so a pattern finds them without starting jq.
read_key() {
  local answer
  answer="$(curl -sf -m 10 -XPOST "$URL/read" \
    -d "{\"key\":\"$1\",\"consistency\":\"${2:-strong}\"}")" || return 1
  if [[ "$answer" =~ \"value\":\"([^\"]*)\" ]]; then echo "${BASH_REMATCH[1]}"; fi
}

cluster_status() { curl -sf -m 5 "$URL/status" || echo '{}'; }
leader() { cluster_status | jq -r '.leader.proposer // empty'; }
# node_field NAME FIELD: as text ("null" when the node or field is missing; false stays false).
node_field() { cluster_status | jq -r --arg name "$1" --arg field "$2" \
  '[.nodes[]? | select(.name == $name)][0][$field] | tostring'; }
# own_field CONTAINER FIELD: from the node's own /status (`paxos node-status` inside it), which
# needs no network: the view of a node that others may not reach.
own_field() {
  { docker exec "$1" /paxos node-status 2>/dev/null || true; } |
    jq -r --arg field "$2" '.[$field] | tostring' 2>/dev/null
}
# became_leader_after SERVICE SINCE_MS: seconds from SINCE_MS to the "became leader" line
# that SERVICE logged after it (text or JSON logs; containers share the host's clock).
became_leader_after() {
  local stamp at
  for stamp in $(docker logs --since "$(($2 / 1000 - 1))" "$(container "$1")" 2>&1 |
    grep 'became leader' | grep -oE '^[^0-9]*[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z' | grep -oE '[0-9]{4}-.*'); do
    at=$(date -d "$stamp" +%s%3N)
    if [ "$at" -ge "$2" ]; then
      awk -v start="$2" -v end="$at" 'BEGIN { printf "%.2f", (end - start) / 1000 }'
      return
    fi
  done
  echo "?"
}
container() {
  docker ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1"
}

wait_until() { # SECONDS DESCRIPTION COMMAND...: polls COMMAND every 100 ms
  local deadline=$(($(now_ms) + $1 * 1000)) description="$2"
  shift 2
  until "$@"; do
    [ "$(now_ms)" -lt "$deadline" ] || fail "timed out waiting for $description"
    sleep 0.1
  done
}

all_healthy() {
  local service id health
  for service in "$@"; do
    id="$(container "$service")"
    [ -n "$id" ] || return 1
    health="$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{end}}' "$id")"
    [ "$health" = healthy ] || return 1
  done
}
SERVICES=(acceptor1 acceptor2 acceptor3 proposer1 proposer2 learner1 learner2 client)
writable() { write "probe-$RANDOM$RANDOM$RANDOM" ok 3 >/dev/null; }
has_leader() { [ -n "$(leader)" ]; }

write_many() { # PREFIX COUNT WORKERS: writes PREFIX-1..COUNT, WORKERS at a time
  local prefix="$1" count="$2" workers="$3" worker
  for worker in $(seq 0 $((workers - 1))); do
    (
      for index in $(seq $((worker + 1)) "$workers" "$count"); do
        write "$prefix-$index" "value-$index" >/dev/null || { echo "$prefix-$index" >>"$WORK/lost"; }
      done
    ) &
  done
  wait
  if [ -s "$WORK/lost" ]; then
    fail "$(wc -l <"$WORK/lost") writes of $prefix-* were not acknowledged, e.g. $(head -n 1 "$WORK/lost")"
  fi
}

# --- preparation -------------------------------------------------------------------------
for tool in docker curl jq cargo; do
  command -v "$tool" >/dev/null || fail "$tool is not installed"
done
docker image inspect "$PAXOS_IMAGE" >/dev/null 2>&1 ||
  fail "no image $PAXOS_IMAGE: build it first with ./scripts/docker-build"
log "compiling the history recorder of drill 6 (tests/running_cluster.rs)"
cargo test --quiet --test running_cluster --no-run 2>&1 | tail -n 3
compose down -v --remove-orphans --timeout 5 >/dev/null 2>&1 || true

# --- 0. up ---------------------------------------------------------------------------------
log "starting project $PROJECT ($PAXOS_IMAGE, client API on $URL)"
started=$(now_ms)
compose up -d >/dev/null 2>&1 || { compose up -d; fail "docker compose up failed"; }
created_after=$(seconds_since "$started")
wait_until 90 "every service to be healthy" all_healthy "${SERVICES[@]}"
healthy_after=$(seconds_since "$started")
wait_until 30 "a first write" writable
passed "cluster up" "docker compose up returned after ${created_after} s; 8 containers healthy after ${healthy_after} s (healthchecks every 2 s); first write after $(seconds_since "$started") s"

# --- 1. write and read ---------------------------------------------------------------------
log "drill 1: write and read through port $CLIENT_HOST_PORT"
started=$(now_ms)
slot="$(write colour blue)" || fail "a write was not acknowledged"
[ "$(read_key colour strong)" = blue ] || fail "a strong read did not return the value just written"
[ "$(curl -sf -XPOST "$URL/read" -d '{"key":"nobody-wrote-this"}' | jq -r '.value')" = null ] ||
  fail "a key never written did not read as null"
wait_until 5 "an eventual read to converge" bash -c "[ \"\$(curl -sf -XPOST '$URL/read' \
  -d '{\"key\":\"colour\",\"consistency\":\"eventual\"}' | jq -r .value)\" = blue ]"
passed "write and read" "write decided in slot $slot; strong, eventual and absent-key reads right; $(seconds_since "$started") s"

# --- 2. kill acceptor1 -------------------------------------------------------------------
log "drill 2: kill -9 acceptor1, writes continue"
docker kill "$(container acceptor1)" >/dev/null
started=$(now_ms)
write_many acceptor-down 50 4
elapsed=$(seconds_since "$started")
wait_until 10 "the client API to see acceptor1 gone" \
  bash -c "[ \"\$(curl -sf '$URL/status' | jq -r '.quorum.healthy_acceptors')\" = 2 ]"
compose start acceptor1 >/dev/null 2>&1
wait_until 60 "acceptor1 to be healthy again" all_healthy acceptor1
passed "acceptor1 killed" "50 writes acknowledged by the 2 remaining acceptors in $elapsed s; acceptor1 restarted healthy"

# --- 3. kill the leader --------------------------------------------------------------------
log "drill 3: kill -9 the leading proposer"
wait_until 20 "a leader" has_leader
old_leader="$(leader)"
new_leader=$((3 - old_leader))
killed=$(now_ms)
docker kill "$(container "proposer$old_leader")" >/dev/null
(write after-failover taken-over 30 >/dev/null && now_ms >"$WORK/first-write") &
writer=$!
leads_other() { [ "$(leader)" = "$new_leader" ]; }
wait_until 30 "proposer$new_leader to lead" leads_other
seen_leading=$(seconds_since "$killed")
without_leader=$(became_leader_after "proposer$new_leader" "$killed")
wait "$writer" || fail "no write was acknowledged within 30 s of the leader's death"
writes_blocked=$(awk -v start="$killed" -v end="$(cat "$WORK/first-write")" 'BEGIN { printf "%.2f", (end - start) / 1000 }')
[ "$(read_key after-failover)" = taken-over ] || fail "the write acknowledged by the new leader is not readable"
compose start "proposer$old_leader" >/dev/null 2>&1
wait_until 60 "proposer$old_leader to be healthy again" all_healthy "proposer$old_leader"
sleep 2
[ "$(leader)" = "$new_leader" ] || fail "the restarted proposer$old_leader deposed a live leader"
passed "leader killed" "proposer$old_leader killed; proposer$new_leader became leader ${without_leader} s later (its log; seen in /status after ${seen_leading} s); first write acknowledged ${writes_blocked} s after the kill; the restarted proposer$old_leader follows"

# --- 4. a learner catches up ---------------------------------------------------------------
log "drill 4: stop learner2, write $CATCH_UP_KEYS keys, start it"
compose stop learner2 >/dev/null 2>&1
started=$(now_ms)
write_many catch-up "$CATCH_UP_KEYS" 8
write_seconds=$(seconds_since "$started")
learner1_slot="$(cluster_status | jq -r '[.learners[] | select(.id == 1)][0].applied_slot')"
keys_learner1="$(node_field learner1 key_count)"
[[ "$learner1_slot" =~ ^[0-9]+$ && "$keys_learner1" =~ ^[0-9]+$ ]] || fail "learner1 reports no applied slot"
applied_slot() { cluster_status | jq -r --arg id "$1" '[.learners[]? | select(.id == ($id | tonumber))][0].applied_slot // 0'; }
learner2="$(container learner2)"
caught_up() {
  [ "$(own_field "$learner2" applied_slot)" -ge "$learner1_slot" ] 2>/dev/null &&
    [ "$(own_field "$learner2" key_count)" -ge "$keys_learner1" ] 2>/dev/null
}
started=$(now_ms)
compose start learner2 >/dev/null 2>&1
wait_until 120 "learner2 to catch up to slot $learner1_slot" caught_up
caught_up_at=$(now_ms)
# The process start, from docker, and the slot it recovered from its own log, from its
# log line "learner recovered its log ... applied_slot=N" (text or JSON).
process_started=$(date -d "$(docker inspect -f '{{.State.StartedAt}}' "$learner2")" +%s%3N)
recovered_slot="$(docker logs --since "$((started / 1000 - 1))" "$learner2" 2>&1 |
  grep 'learner recovered its log' | tail -n 1 | grep -oE 'applied_slot[^0-9]{0,3}[0-9]+' | grep -oE '[0-9]+$' || echo 0)"
slots=$((learner1_slot - recovered_slot))
catch_up=$(awk -v start="$process_started" -v end="$caught_up_at" 'BEGIN { printf "%.2f", (end - start) / 1000 }')
rate=$(awk -v slots="$slots" -v seconds="$catch_up" 'BEGIN { printf "%.0f", slots / (seconds > 0.01 ? seconds : 0.01) }')
wait_until 60 "learner2 to be healthy again" all_healthy learner2
wait_until 30 "the client API to see learner2 caught up" bash -c "[ \"\$(curl -sf '$URL/status' | \
  jq -r '[.learners[] | select(.id == 2)][0].applied_slot')\" -ge $learner1_slot ] 2>/dev/null"
passed "learner catch-up" "$CATCH_UP_KEYS keys written in ${write_seconds} s while learner2 was down; learner2 recovered slot $recovered_slot from its own log and caught up to slot $learner1_slot ($keys_learner1 keys, $slots slots behind) within ${catch_up} s of its process starting ($(seconds_since "$started") s after docker start): at least $rate slots/s (polling included)"

# --- 5. a partitioned acceptor ---------------------------------------------------------------
log "drill 5: disconnect acceptor3 from the network for ${PARTITION_SECONDS} s"
acceptor3="$(container acceptor3)"
network="$(docker inspect -f '{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}' "$acceptor3" | awk '{print $1}')"
address() { docker inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"; }
address_before="$(address "$acceptor3")"
docker network disconnect "$network" "$acceptor3"
started=$(now_ms)
write_many partitioned 50 4
elapsed=$(seconds_since "$started")
remaining=$((PARTITION_SECONDS * 1000 - ($(now_ms) - started)))
[ "$remaining" -gt 0 ] && sleep "$(awk -v ms="$remaining" 'BEGIN { print ms / 1000 }')"
acceptor3_cut_off() { [ "$(node_field acceptor3 healthy)" = false ]; }
wait_until 10 "the client API to see acceptor3 cut off" acceptor3_cut_off
slot_at_reconnect="$(cluster_status | jq -r '[.nodes[] | select(.role == "acceptor") | .accepted_slot_max // 0] | max')"
# A stand-in holds acceptor3's old address (Docker usually hands it out next) while
# acceptor3 reconnects, so that it comes back at a new address, as a re-created container
# would, and the old address is left unused: connections to it get no answer at all, not
# even a reset, and only the nodes' 5 s silence timeout closes them. The stand-in has no
# certificate: it runs insecure (it talks to nobody) so that it starts and stays up.
SQUATTER="$(docker run -d --network "$network" -e PROPOSER_HOSTS=127.0.0.1:1 \
  -e LEARNER_HOSTS=127.0.0.1:1 -e LOG_LEVEL=error -e PAXOS_INSECURE=true "$PAXOS_IMAGE" client)"
docker network connect --alias acceptor3 "$network" "$acceptor3"
reconnected=$(now_ms)
address_after="$(address "$acceptor3")"
docker rm -f "$SQUATTER" >/dev/null && SQUATTER=""
if [ "$address_after" = "$address_before" ]; then moved="at the same address"; else moved="at a new address"; fi
votes_again() {
  write "after-partition-$RANDOM$RANDOM$RANDOM" v 5 >/dev/null || return 1
  [ "$(own_field "$acceptor3" accepted_slot_max)" -gt "$slot_at_reconnect" ] 2>/dev/null
}
wait_until 60 "acceptor3 to vote again" votes_again
rejoin=$(seconds_since "$reconnected")
passed "acceptor3 partitioned" "50 writes acknowledged in $elapsed s while acceptor3 was cut off; reconnected $moved, it voted on new slots after ${rejoin} s"

# --- 6. pause the leader -------------------------------------------------------------------
log "drill 6: pause the leader while 4 clients write and read strongly for ${HISTORY_SECONDS} s"
PAXOS_URL="$URL" HISTORY_SECONDS="$HISTORY_SECONDS" \
  cargo test --quiet --test running_cluster -- --ignored --nocapture >"$WORK/history.log" 2>&1 &
recorder=$!
sleep 4
wait_until 20 "a leader" has_leader
paused_leader="$(leader)"
new_leader=$((3 - paused_leader))
paused_id="$(container "proposer$paused_leader")"
docker pause "$paused_id" >/dev/null
paused=$(now_ms)
wait_until 30 "proposer$new_leader to lead while proposer$paused_leader is paused" leads_other
election=$(became_leader_after "proposer$new_leader" "$paused")
seen_leading=$(seconds_since "$paused")
sleep 4
docker unpause "$paused_id" >/dev/null
unpaused=$(now_ms)
one_leader() {
  local leaders
  leaders="$(cluster_status | jq -r '[.nodes[]? | select(.role == "proposer" and .state == "leader")] | length')"
  [ "$leaders" = 1 ]
}
wait_until 20 "a single proposer to report itself leader after the unpause" one_leader
settled=$(seconds_since "$unpaused")
if ! wait "$recorder"; then
  cat "$WORK/history.log"
  fail "the history recorded across the pause is not linearizable (or too short)"
fi
history="$(grep '^history:' "$WORK/history.log" || true)"
passed "leader paused" "proposer$paused_leader paused; proposer$new_leader became leader ${election} s later (seen in /status after ${seen_leading} s); after the unpause one leader within ${settled} s; ${history#history: }: linearizable"

# --- 7. down and up, volumes kept ----------------------------------------------------------
acknowledged=$(wc -l <"$ACKNOWLEDGED")
log "drill 7: docker compose down, up again; read back $acknowledged acknowledged writes"
started=$(now_ms)
compose down --timeout 10 >/dev/null 2>&1
volumes=$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT" | wc -l)
[ "$volumes" -ge 7 ] || fail "only $volumes volumes of project $PROJECT survived docker compose down"
compose up -d >/dev/null 2>&1 || fail "docker compose up failed after down"
wait_until 90 "every service to be healthy after the restart" all_healthy "${SERVICES[@]}"
wait_until 30 "a write after the restart" writable
back_after=$(seconds_since "$started")
started=$(now_ms)
sort -u "$ACKNOWLEDGED" | awk '{ print $1, $2 }' >"$WORK/expected"
split -n l/8 "$WORK/expected" "$WORK/expected."
for part in "$WORK"/expected.*; do
  (
    while read -r key value; do
      actual="$(read_key "$key" strong)" || { echo "$key: read failed" >>"$WORK/missing"; continue; }
      [ "$actual" = "$value" ] || echo "$key: expected $value, read '$actual'" >>"$WORK/missing"
    done <"$part"
  ) &
done
wait
if [ -s "$WORK/missing" ]; then
  fail "$(wc -l <"$WORK/missing") acknowledged writes are missing after down and up, e.g. $(head -n 3 "$WORK/missing" | tr '\n' ';')"
fi
checked=$(wc -l <"$WORK/expected")
passed "down and up" "down and up again, writable after ${back_after} s; all $checked acknowledged writes read back strongly in $(seconds_since "$started") s"

FAILED=0
echo
echo "== drill summary (project $PROJECT, image $PAXOS_IMAGE)"
for line in "${SUMMARY[@]}"; do
  printf '  %-22s %s\n' "${line%%|*}" "${line#*|}"
done
echo "drills: ${#SUMMARY[@]} passed, 0 failed"
