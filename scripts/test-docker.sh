#!/usr/bin/env bash
# Builds respite's container image with docker/Dockerfile and checks it, and
# every compose file under docker/, for real (issue 22). Run as root (or
# with sudo available), from anywhere in the repository:
#
#   scripts/test-docker.sh
#
# Installs what it needs (docker.io, docker-compose, debootstrap, redis-tools,
# curl, python3), starts dockerd when no engine answers (and stops it again at
# the end), makes the base images locally when no registry has them
# (docker/stand-in-images.sh), then checks, failing on the first miss:
#   build    a source-only change rebuilds from the cached dependency layer
#            and recompiles respite only; both build times and their ratio
#            are printed as measurements (timings are not asserted: they
#            depend on the machine's load and on the crate mirror's speed)
#   image    --check on the shipped config; health becomes healthy; uid/gid
#            10001; PING/SET/GET; a 4 KB value stored compressed; TAGSET /
#            TAGINVAL; PROXY INFO; /ready and /metrics; no escape codes in
#            `docker logs`; RESPITE_LOG_FORMAT=json gives one JSON object per
#            line; `docker stop` exits 0 within the grace period
#   compose  per file: every service healthy (one-shot jobs exited 0), /ready
#            200, traffic through respite's port, `down -v` leaves nothing;
#            sentinel: SENTINEL FAILOVER with 0 failed writes, then the
#            primary's container stopped and writes resuming (gap printed);
#            cluster: MSET/MGET/SCAN across slots, then a primary's container
#            killed and writes resuming (gap printed)
# Every wait polls a condition with a deadline. The measurements are printed
# at the end (docker/README.md records them).
#
# Environment: KEEP_DOCKERD=1 leaves a dockerd this script started running;
# SKIP_REBUILD_CHECK=1 skips the source-only rebuild measurement;
# CHECKS="image standalone sentinel cluster" (the default) picks the checks
# that run after the build.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export DEBIAN_FRONTEND=noninteractive
# compose v1 builds through the docker CLI (same cache as `docker build`).
export COMPOSE_DOCKER_CLI_BUILD=1 DOCKER_BUILDKIT=0

SUDO=
[ "$(id -u)" = 0 ] || SUDO=sudo
IMAGE=respite:latest
CHECKS="${CHECKS:-image standalone sentinel cluster}"
RUN_ID="respite-ci-$$"
T0=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/respite-docker.XXXXXX")"
SUMMARY="$WORK/summary"
: >"$SUMMARY"

log() { printf '[test-docker %4ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }
fail() {
  log "FAIL: $*"
  exit 1
}
measured() {
  log "measured: $*"
  echo "$*" >>"$SUMMARY"
}
now() { date +%s.%N; }
elapsed_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# ---------------------------------------------------------------------------
# Cleanup: whatever this run created goes, also on failure.
# ---------------------------------------------------------------------------
CONTAINERS=()
NETWORKS=()
PROJECTS=()
STARTED_DOCKERD=
WRITER_PID=
cleanup() {
  local rc=$?
  set +e
  [ -z "$WRITER_PID" ] || kill "$WRITER_PID" 2>/dev/null
  if [ ${#PROJECTS[@]} -gt 0 ]; then
    for p in "${PROJECTS[@]}"; do
      local file="${p#*=}" name="${p%%=*}"
      if [ "$rc" != 0 ]; then
        log "logs of $name (last 40 lines per service):"
        timeout 60 docker-compose -p "$name" -f "$file" logs --no-color --tail 40 >&2
      fi
      timeout 120 docker-compose -p "$name" -f "$file" down -v --remove-orphans >/dev/null 2>&1
    done
  fi
  for c in "${CONTAINERS[@]}"; do
    if [ "$rc" != 0 ] && docker inspect "$c" >/dev/null 2>&1; then
      log "logs of $c:"
      docker logs --tail 40 "$c" >&2
    fi
    docker rm -f -v "$c" >/dev/null 2>&1
  done
  for n in "${NETWORKS[@]}"; do docker network rm "$n" >/dev/null 2>&1; done
  if [ -n "$STARTED_DOCKERD" ] && [ "${KEEP_DOCKERD:-0}" != 1 ]; then
    kill "$STARTED_DOCKERD" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$STARTED_DOCKERD" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then
    log "all checks passed"
  else
    log "FAILED (exit $rc)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_until DESCRIPTION SECONDS COMMAND...: polls COMMAND every 0.2 s until
# it succeeds, or fails the run when SECONDS have passed.
wait_until() {
  local what="$1" secs="$2"
  shift 2
  local deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${secs}s"
    sleep 0.2
  done
}

# ---------------------------------------------------------------------------
# Tools and the engine
# ---------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ -n "$SUDO" ]; then
  # shellcheck disable=SC2033 # sudo runs the binary, not this function
  docker() { sudo docker "$@"; }
  # shellcheck disable=SC2033
  docker-compose() { sudo -E docker-compose "$@"; }
fi

if ! docker info >/dev/null 2>&1; then
  log "starting dockerd (log: /var/log/respite-dockerd.log)"
  $SUDO sh -c 'setsid dockerd >/var/log/respite-dockerd.log 2>&1 </dev/null & echo $! >/run/respite-dockerd.pid'
  STARTED_DOCKERD="$($SUDO cat /run/respite-dockerd.pid)"
  wait_until "dockerd answering" 60 docker info
fi

# ---------------------------------------------------------------------------
# Base images, then the image
# ---------------------------------------------------------------------------
log "base images"
start=$(now)
$SUDO "$ROOT/docker/stand-in-images.sh"
measured "base images ready in $(elapsed_since "$start") s"

# The Dockerfile step that builds the dependencies against stub sources (the
# only one with `mkdir src`): whether the build log says it came from cache.
deps_cached() {
  grep -q '^Step .*mkdir src' "$1" || fail "no dependency step ('RUN mkdir src ...') in the build log $1"
  grep -A1 '^Step .*mkdir src' "$1" | grep -q 'Using cache'
}

log "building $IMAGE"
start=$(now)
docker build -f docker/Dockerfile -t "$IMAGE" . >"$WORK/build.log" 2>&1 \
  || {
    tail -n 60 "$WORK/build.log" >&2
    fail "docker build"
  }
build_secs=$(elapsed_since "$start")
if deps_cached "$WORK/build.log"; then
  cold=
  measured "image build: ${build_secs} s (dependency layer cached from an earlier run)"
else
  cold=1
  measured "image build, cold: ${build_secs} s"
fi

if [ "${SKIP_REBUILD_CHECK:-0}" != 1 ]; then
  # The tracked sources with one change under src/, built as a new context.
  ctx="$WORK/ctx"
  mkdir -p "$ctx"
  git ls-files -z --cached --others --exclude-standard \
    | (cd "$ROOT" && xargs -0 cp --parents -t "$ctx" 2>/dev/null || true)
  [ -f "$ctx/src/main.rs" ] || fail "could not copy the sources for the rebuild check"
  echo "// source-only change $RUN_ID" >>"$ctx/src/main.rs"
  log "rebuilding after a source-only change"
  start=$(now)
  docker build -f docker/Dockerfile -t "$RUN_ID:src-change" "$ctx" >"$WORK/rebuild.log" 2>&1 \
    || {
      tail -n 60 "$WORK/rebuild.log" >&2
      fail "docker build after a source change"
    }
  rebuild_secs=$(elapsed_since "$start")
  # Drop what only this check made: the tag and the build stage's image.
  docker rmi "$RUN_ID:src-change" >/dev/null
  stage="$(awk '/^Step / { s = ($0 ~ /RUN cargo build/ && $0 !~ /mkdir src/) } s && /^ ---> [0-9a-f]+$/ { id = $2 } END { print id }' "$WORK/rebuild.log")"
  [ -z "$stage" ] || docker rmi "$stage" >/dev/null 2>&1 || true
  rm -rf "$ctx"
  deps_cached "$WORK/rebuild.log" || fail "a source-only change rebuilt the dependency layer"
  grep -q 'Compiling respite' "$WORK/rebuild.log" || fail "a source-only change did not recompile respite"
  measured "image rebuild after a source-only change: ${rebuild_secs} s (dependency layer cached)"
  if [ -n "$cold" ]; then
    measured "rebuild / cold build: $(awk -v r="$rebuild_secs" -v c="$build_secs" 'BEGIN { printf "%.2f", r / c }')"
  fi
fi

# ---------------------------------------------------------------------------
# Helpers for the checks
# ---------------------------------------------------------------------------
health() { docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$1"; }

# wait_healthy CONTAINER SECONDS: fails at once on `unhealthy` or an exit.
wait_healthy() {
  local c="$1" secs="$2" deadline=$(($(date +%s) + $2)) h
  while :; do
    h="$(health "$c")"
    [ "$h" = healthy ] && return 0
    [ "$h" = unhealthy ] && fail "$c became unhealthy: $(docker inspect -f '{{range .State.Health.Log}}{{.Output}}{{end}}' "$c" | tail -n 3)"
    [ "$(docker inspect -f '{{.State.Running}}' "$c")" = true ] || fail "$c exited: $(docker inspect -f '{{.State.Status}} {{.State.ExitCode}}' "$c")"
    [ "$(date +%s)" -lt "$deadline" ] || fail "$c not healthy within ${secs}s (status: $h)"
    sleep 0.5
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# rcli PORT ARGS...: redis-cli against respite's published port.
rcli() {
  local port="$1"
  shift
  timeout 10 redis-cli -h 127.0.0.1 -p "$port" "$@"
}

# expect WHAT WANT GOT
expect() {
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1"; }
ready() { [ "$(http_status "http://127.0.0.1:$1/ready")" = 200 ]; }

no_escape_codes() {
  # $1: a file of log output
  if grep -q $'\x1b' "$1"; then
    grep -m3 $'\x1b' "$1" | cat -v >&2
    fail "escape codes in docker logs"
  fi
}

# The writer: SET through respite every 10 ms on one connection (reconnecting
# after an error) until the stop file appears; one line per write:
#   <unix time> ok|fail [error]
write_loop() {
  local port="$1" prefix="$2" out="$3" stop="$4"
  python3 - "$port" "$prefix" "$out" "$stop" <<'PY' &
import os, socket, sys, time
port, prefix, out, stop = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
sock = reader = None
i = 0
with open(out, "w", buffering=1) as log:
    while not os.path.exists(stop):
        i += 1
        key, val = f"{prefix}:{i}".encode(), str(i).encode()
        cmd = b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(key), key, len(val), val)
        try:
            if sock is None:
                sock = socket.create_connection(("127.0.0.1", port), timeout=2)
                sock.settimeout(2)
                reader = sock.makefile("rb")
            sock.sendall(cmd)
            line = reader.readline()
            if not line:
                raise OSError("connection closed")
            if line == b"+OK\r\n":
                log.write(f"{time.time():.3f} ok\n")
            else:
                log.write(f"{time.time():.3f} fail {line.decode(errors='replace').strip()}\n")
        except OSError as e:
            log.write(f"{time.time():.3f} fail {e}\n")
            if sock is not None:
                sock.close()
            sock = reader = None
        time.sleep(0.01)
PY
  WRITER_PID=$!
}

stop_writer() {
  touch "$1"
  wait "$WRITER_PID" || true
  WRITER_PID=
}

count_lines() { grep -c " $2" "$1" || true; }

# An ok write after time $2 that follows a failed one after time $2.
resumed_after() {
  awk -v t="$2" '$1 > t && $2 == "fail" { f = 1 } f && $2 == "ok" { found = 1; exit } END { exit !found }' "$1"
}
failed_after() { awk -v t="$2" '$1 > t && $2 == "fail" { found = 1; exit } END { exit !found }' "$1"; }
oks_after() { awk -v t="$2" -v n="$3" '$1 > t && $2 == "ok" { c++ } END { exit !(c >= n) }' "$1"; }

# The outage after time $2: from the last ok write before the first failure
# to the first ok write after it, in seconds.
gap_after() {
  awk -v t="$2" '
    $2 == "ok" && !f { last = $1 }
    $1 > t && $2 == "fail" && !f { f = 1 }
    f && $2 == "ok" { printf "%.2f", $1 - last; exit }' "$1"
}

# ---------------------------------------------------------------------------
# The image on its own, in front of a Redis container called `redis`
# (docker/proxy.toml's upstream)
# ---------------------------------------------------------------------------
image_checks() {
  log "image: respite --check on the shipped configuration"
  out="$(docker run --rm "$IMAGE" --check 2>&1)" || fail "respite --check: $out"
  expect "--check" "respite: configuration OK" "$out"

  net="$RUN_ID-net"
  docker network create "$net" >/dev/null
  NETWORKS+=("$net")
  redis_c="$RUN_ID-redis"
  respite_c="$RUN_ID-respite"
  CONTAINERS+=("$redis_c" "$respite_c")
  docker run -d --name "$redis_c" --network "$net" --network-alias redis redis:7.2 \
    redis-server --save "" --appendonly no >/dev/null
  wait_until "redis container answering" 60 docker exec "$redis_c" redis-cli ping
  docker run -d --name "$respite_c" --network "$net" \
    -p 127.0.0.1::6380 -p 127.0.0.1::9121 "$IMAGE" >/dev/null
  log "image: waiting for the HEALTHCHECK"
  start=$(now)
  wait_healthy "$respite_c" 90
  measured "image: healthy $(elapsed_since "$start") s after start (HEALTHCHECK interval 10 s)"
  port="$(docker port "$respite_c" 6380/tcp | head -n1 | sed 's/.*://')"
  admin="$(docker port "$respite_c" 9121/tcp | head -n1 | sed 's/.*://')"

  log "image: user, commands, compression, tags, admin"
  ids="$(docker exec "$respite_c" sh -c 'grep -E "^(Uid|Gid):" /proc/1/status' | awk '{print $1, $2, $3, $4, $5}' | tr '\n' ' ')"
  expect "respite's uid/gid" "Uid: 10001 10001 10001 10001 Gid: 10001 10001 10001 10001 " "$ids"
  expect "id in the container" "uid=10001(respite) gid=10001(respite) groups=10001(respite)" "$(docker exec "$respite_c" id)"
  expect PING PONG "$(rcli "$port" PING)"
  expect SET OK "$(rcli "$port" SET ci:k hello)"
  expect GET hello "$(rcli "$port" GET ci:k)"
  # 4 KB of repetitive JSON: stored compressed (respite's envelope starts with
  # F5 52 43), read back byte for byte.
  python3 -c 'import sys; sys.stdout.write(("{\"user\":42,\"name\":\"Ada\",\"tags\":[1,2,3]}" * 200)[:4096])' >"$WORK/value"
  expect "SET 4 KB" OK "$(rcli "$port" -x SET ci:big <"$WORK/value")"
  rcli "$port" --raw GET ci:big | head -c 4096 >"$WORK/value.back"
  cmp -s "$WORK/value" "$WORK/value.back" || fail "GET of the 4 KB value through respite differs"
  stored="$(docker exec "$redis_c" redis-cli STRLEN ci:big)"
  [ "$stored" -lt 4096 ] || fail "the 4 KB value is stored with $stored bytes: not compressed"
  magic="$(docker exec "$redis_c" redis-cli --raw GETRANGE ci:big 0 2 | head -c 3 | od -An -tx1 | tr -d ' \n')"
  expect "stored value's magic" f55243 "$magic"
  measured "image: 4096-byte value stored in $stored bytes"
  expect TAGSET OK "$(rcli "$port" TAGSET ci:t1 v1 TAGS ci:group)"
  expect TAGSET OK "$(rcli "$port" TAGSET ci:t2 v2 TAGS ci:group other)"
  expect TAGINVAL 2 "$(rcli "$port" TAGINVAL ci:group)"
  expect "EXISTS after TAGINVAL" 0 "$(rcli "$port" EXISTS ci:t1 ci:t2)"
  rcli "$port" PROXY INFO >"$WORK/proxy-info"
  grep -q '^# Server' "$WORK/proxy-info" || fail "PROXY INFO has no '# Server' section: $(head -c 300 "$WORK/proxy-info")"
  expect "/ready" 200 "$(http_status "http://127.0.0.1:$admin/ready")"
  curl -fsS --max-time 5 "http://127.0.0.1:$admin/metrics" >"$WORK/metrics" || fail "/metrics"
  grep -Eq '^respite_compression_values_compressed_total [1-9]' "$WORK/metrics" \
    || fail "/metrics does not count the compressed value: $(grep compression_values "$WORK/metrics")"
  docker logs "$respite_c" >"$WORK/respite.log" 2>&1
  grep -q 'respite listening' "$WORK/respite.log" || fail "no start-up line in docker logs"
  no_escape_codes "$WORK/respite.log"

  log "image: docker stop"
  start=$(now)
  docker stop -t 10 "$respite_c" >/dev/null
  stop_secs=$(elapsed_since "$start")
  expect "exit code after docker stop" 0 "$(docker inspect -f '{{.State.ExitCode}}' "$respite_c")"
  measured "image: docker stop returned in ${stop_secs} s, exit code 0"

  log "image: RESPITE_LOG_FORMAT=json"
  json_c="$RUN_ID-json"
  CONTAINERS+=("$json_c")
  docker run -d --name "$json_c" --network "$net" -e RESPITE_LOG_FORMAT=json "$IMAGE" >/dev/null
  wait_until "json container logging its start" 30 sh -c "docker logs '$json_c' 2>&1 | grep -q 'respite listening'"
  docker stop -t 10 "$json_c" >/dev/null
  docker logs "$json_c" >"$WORK/json.log" 2>&1
  no_escape_codes "$WORK/json.log"
  python3 - "$WORK/json.log" <<'PY' || fail "RESPITE_LOG_FORMAT=json: not one JSON object per line"
import json, sys
lines = [l for l in open(sys.argv[1], encoding="utf-8").read().splitlines() if l]
assert lines, "no log lines"
for line in lines:
    obj = json.loads(line)
    assert isinstance(obj, dict) and "level" in obj and "message" in obj["fields"], line
msgs = [json.loads(l)["fields"]["message"] for l in lines]
assert "respite listening" in msgs and "shutting down" in msgs, msgs
PY
  docker rm -f -v "$redis_c" "$respite_c" "$json_c" >/dev/null
  docker network rm "$net" >/dev/null
  CONTAINERS=()
  NETWORKS=()
}

# ---------------------------------------------------------------------------
# The compose files
# ---------------------------------------------------------------------------
# compose_up NAME [OPTION...]: starts docker/compose.NAME.yml as project $RUN_ID-NAME on
# free host ports; sets PROJECT, FILE, PORT, ADMIN.
compose_up() {
  PROJECT="$RUN_ID-$1"
  FILE="$ROOT/docker/compose.$1.yml"
  PORT="$(free_port)"
  ADMIN="$(free_port)"
  while [ "$ADMIN" = "$PORT" ]; do ADMIN="$(free_port)"; done
  export RESPITE_CLIENT_PORT="$PORT" RESPITE_ADMIN_PORT="$ADMIN"
  PROJECTS+=("$PROJECT=$FILE")
  log "$1: up (project $PROJECT, client port $PORT, admin port $ADMIN)"
  local start
  start=$(now)
  timeout 300 docker-compose -p "$PROJECT" -f "$FILE" up -d "${@:2}" >"$WORK/up.log" 2>&1 \
    || {
      cat "$WORK/up.log" >&2
      fail "$1: docker-compose up"
    }
  all_services_healthy "$1"
  wait_until "$1: /ready 200" 60 ready "$ADMIN"
  measured "$1: every service healthy and /ready 200 $(elapsed_since "$start") s after up"
}

dc() { timeout 120 docker-compose -p "$PROJECT" -f "$FILE" "$@"; }

# Every container of the project healthy; one without a healthcheck (the
# cluster's init job) must have exited 0.
all_services_healthy() {
  local deadline=$(($(date +%s) + 180)) c h pending ids
  ids="$(dc ps -a -q)"
  [ -n "$ids" ] || fail "$1: no containers"
  while :; do
    pending=
    for c in $ids; do
      h="$(health "$c")"
      case "$h" in
        healthy) ;;
        unhealthy) fail "$1: $(docker inspect -f '{{.Name}}' "$c") unhealthy" ;;
        none)
          if [ "$(docker inspect -f '{{.State.Status}}' "$c")" = exited ]; then
            [ "$(docker inspect -f '{{.State.ExitCode}}' "$c")" = 0 ] \
              || fail "$1: $(docker inspect -f '{{.Name}}' "$c") exited with $(docker inspect -f '{{.State.ExitCode}}' "$c")"
          else
            pending="$pending $(docker inspect -f '{{.Name}}' "$c")"
          fi
          ;;
        *) pending="$pending $(docker inspect -f '{{.Name}}' "$c")($h)" ;;
      esac
    done
    [ -z "$pending" ] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || fail "$1: not healthy within 180s:$pending"
    sleep 0.5
  done
}

# Containers, networks and volumes of the project; `down -v` must remove all.
compose_down() {
  local volumes c v left
  volumes="$(for c in $(dc ps -a -q); do docker inspect -f '{{range .Mounts}}{{if .Name}}{{.Name}} {{end}}{{end}}' "$c"; done)"
  dc down -v >/dev/null 2>&1 || fail "$1: docker-compose down -v"
  left="$(docker ps -a -q --filter "label=com.docker.compose.project=$PROJECT")"
  [ -z "$left" ] || fail "$1: containers left after down -v: $left"
  left="$(docker network ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  [ -z "$left" ] || fail "$1: networks left after down -v: $left"
  left="$(docker volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
  for v in $volumes; do
    docker volume inspect "$v" >/dev/null 2>&1 && left="$left $v"
  done
  [ -z "${left// /}" ] || fail "$1: volumes left after down -v: $left"
  unset 'PROJECTS[${#PROJECTS[@]}-1]'
  log "$1: down -v left nothing behind"
}

traffic() {
  expect "$1: PING" PONG "$(rcli "$PORT" PING)"
  expect "$1: SET" OK "$(rcli "$PORT" SET "ci:$1" hello)"
  expect "$1: GET" hello "$(rcli "$PORT" GET "ci:$1")"
}

# The container of the project whose IP on the compose network is $1, or
# whose service is $1.
container_of() {
  local c
  for c in $(dc ps -q); do
    if docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}{{index .Config.Labels "com.docker.compose.service"}}' "$c" \
      | tr ' ' '\n' | grep -qxF "$1"; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# ---- standalone ----
standalone_checks() {
  # Built through compose too: with COMPOSE_DOCKER_CLI_BUILD=1 it reuses the
  # image built above instead of building from scratch.
  compose_up standalone --build
  deps_cached "$WORK/up.log" || fail "standalone: docker-compose up --build did not reuse the cached layers"
  traffic standalone
  compose_down standalone
}

# ---- sentinel ----
sentinel_checks() {
  compose_up sentinel
  traffic sentinel
  sentinel_primary() {
    dc exec -T sentinel-1 redis-cli -p 26379 SENTINEL get-master-addr-by-name mymaster | head -n1 | tr -d '\r'
}
proxy_uses() { rcli "$PORT" PROXY NODES | grep -qF "$1"; }
# Every replica attached and every sentinel aware of the others before the
# failover (a SENTINEL FAILOVER needs a replica the sentinels know).
sentinel_ready() {
  dc exec -T sentinel-1 redis-cli -p 26379 SENTINEL master mymaster | tr -d '\r' \
    | awk 'p == "num-slaves" && $0 >= 2 { s = 1 } p == "num-other-sentinels" && $0 >= 2 { o = 1 } { p = $0 } END { exit !(s && o) }'
}
wait_until "sentinel: both replicas and all sentinels known" 90 sentinel_ready
old="$(sentinel_primary)"
log "sentinel: SENTINEL FAILOVER (primary $old) while writing"
out="$WORK/writes-failover"
write_loop "$PORT" ci:failover "$out" "$WORK/stop-failover"
wait_until "sentinel: writer running" 30 oks_after "$out" 0 20
t_event=$(now)
expect "SENTINEL FAILOVER" OK "$(dc exec -T sentinel-1 redis-cli -p 26379 SENTINEL FAILOVER mymaster | tr -d '\r')"
primary_is_not() { [ "$(sentinel_primary)" != "$1" ]; }
wait_until "sentinel: the sentinels name a new primary" 60 primary_is_not "$old"
new="$(sentinel_primary)"
wait_until "sentinel: respite uses the new primary $new" 30 proxy_uses "$new:6379"
t_switched=$(now)
wait_until "sentinel: writes go on after the switch" 30 oks_after "$out" "$t_switched" 50
stop_writer "$WORK/stop-failover"
failed="$(count_lines "$out" fail)"
total="$(wc -l <"$out")"
if [ "$failed" != 0 ]; then
  grep ' fail' "$out" | head -n 5 >&2
  fail "sentinel: $failed of $total writes failed during SENTINEL FAILOVER"
fi
measured "sentinel: SENTINEL FAILOVER $old -> $new: 0 of $total writes failed; longest wait between writes $(awk '$2 == "ok" { if (l) { g = $1 - l; if (g > m) m = g } l = $1 } END { printf "%.3f", m }' "$out") s"
# A write through respite lands on the new primary.
expect "sentinel: SET after failover" OK "$(rcli "$PORT" SET ci:after-failover yes)"
expect "sentinel: the key on the new primary" yes \
  "$(docker exec "$(container_of "$new")" redis-cli GET ci:after-failover | tr -d '\r')"

wait_until "sentinel: replicas re-attached to $new" 60 sentinel_ready
primary_c="$(container_of "$new")" || fail "sentinel: no container has $new"
log "sentinel: docker stop of the primary's container $(docker inspect -f '{{.Name}}' "$primary_c") while writing"
out="$WORK/writes-stop"
write_loop "$PORT" ci:stop "$out" "$WORK/stop-stop"
wait_until "sentinel: writer running" 30 oks_after "$out" 0 20
t_event=$(now)
docker stop -t 10 "$primary_c" >/dev/null
wait_until "sentinel: writes fail after the primary stopped" 30 failed_after "$out" "$t_event"
wait_until "sentinel: writes resume after the primary stopped" 120 resumed_after "$out" "$t_event"
wait_until "sentinel: writes go on" 30 oks_after "$out" "$(now)" 20
stop_writer "$WORK/stop-stop"
gap="$(gap_after "$out" "$t_event")"
measured "sentinel: primary's container stopped -> writes resumed after ${gap} s ($(count_lines "$out" fail) of $(wc -l <"$out") writes failed; down-after-milliseconds 5000)"
compose_down sentinel
}

# ---- cluster ----
cluster_checks() {
  compose_up cluster
  traffic cluster
  log "cluster: MSET/MGET/SCAN across slots"
  keys=()
  for i in $(seq 1 30); do keys+=("ci:slot:$i"); done
  slots="$(for k in "${keys[@]}"; do rcli "$PORT" CLUSTER KEYSLOT "$k"; done | sort -un | wc -l)"
  [ "$slots" -gt 10 ] || fail "cluster: the test keys fall in only $slots slots"
  mset=()
  for k in "${keys[@]}"; do mset+=("$k" "v-$k"); done
  expect "cluster: MSET across slots" OK "$(rcli "$PORT" MSET "${mset[@]}")"
  expect "cluster: MGET across slots" "$(printf 'v-%s\n' "${keys[@]}")" "$(rcli "$PORT" MGET "${keys[@]}")"
  # Every primary holds some of them, and SCAN through respite finds all.
  for c in $(dc ps -q); do
    svc="$(docker inspect -f '{{index .Config.Labels "com.docker.compose.service"}}' "$c")"
    case "$svc" in redis-node-*) ;; *) continue ;; esac
    if docker exec "$c" redis-cli ROLE | head -n1 | grep -q master; then
      n="$(docker exec "$c" redis-cli DBSIZE)"
      [ "$n" -gt 0 ] || fail "cluster: primary $svc holds none of the keys"
    fi
  done
  found="$(rcli "$PORT" --scan --pattern 'ci:slot:*' | sort -u | wc -l)"
  expect "cluster: SCAN through respite finds every key" 30 "$found"

  # Kill the primary serving the writer's slot (all its keys share one tag).
  slot="$(rcli "$PORT" CLUSTER KEYSLOT '{ci:gap}')"
  owner="$(dc exec -T redis-node-1 redis-cli CLUSTER NODES | tr -d '\r' | awk -v s="$slot" '
    $3 ~ /master/ { for (i = 9; i <= NF; i++) { split($i, r, "-"); if (r[2] == "") r[2] = r[1]; if (s >= r[1] && s <= r[2]) { split($2, a, ":"); print a[1]; exit } } }')"
  [ -n "$owner" ] || fail "cluster: no primary found for slot $slot"
  victim="$(container_of "$owner")" || fail "cluster: no container has $owner"
  log "cluster: docker kill of $(docker inspect -f '{{.Name}}' "$victim") (slot $slot) while writing"
  out="$WORK/writes-kill"
  write_loop "$PORT" '{ci:gap}' "$out" "$WORK/stop-kill"
  wait_until "cluster: writer running" 30 oks_after "$out" 0 20
  t_event=$(now)
  docker kill "$victim" >/dev/null
  wait_until "cluster: writes fail after the kill" 30 failed_after "$out" "$t_event"
  wait_until "cluster: writes resume after the kill" 120 resumed_after "$out" "$t_event"
  wait_until "cluster: writes go on" 30 oks_after "$out" "$(now)" 20
  stop_writer "$WORK/stop-kill"
  gap="$(gap_after "$out" "$t_event")"
  measured "cluster: primary's container killed -> writes resumed after ${gap} s ($(count_lines "$out" fail) of $(wc -l <"$out") writes failed; cluster-node-timeout 5000)"
  compose_down cluster
}

for check in $CHECKS; do
  case "$check" in
    image | standalone | sentinel | cluster) "${check}_checks" ;;
    *) fail "unknown check '$check' in CHECKS (image standalone sentinel cluster)" ;;
  esac
done

log "summary:"
sed 's/^/  /' "$SUMMARY" >&2
measured "total time $(($(date +%s) - T0)) s"
