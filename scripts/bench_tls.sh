#!/usr/bin/env bash
# bench_tls.sh - GET/SET at 50 clients, pipeline 1 and 16, over plaintext and
# TLS, direct to Redis and through respite, interleaved in one run.
#
# Usage:
#   scripts/bench_tls.sh [BEFORE_BINARY]
#
# Starts one redis-server listening on a plaintext port and a TLS port (no
# client certificates), respite (target/release/respite, one worker) with a
# plaintext listener and a [server.tls] listener, both forwarding to Redis's
# PLAINTEXT port, and, when BEFORE_BINARY is given, that binary too
# (plaintext only, to compare the plaintext path before/after a change).
# Certificates are made with openssl in a temporary directory.
#
# Targets, run back to back for every (round, pipeline, test), start rotated:
#   redis       plaintext, direct          redis-tls   TLS, direct
#   respite     plaintext through respite  respite-tls TLS listener of respite
#   before      plaintext through BEFORE_BINARY (if given)
# Prints one row per (target, pipeline, test): median requests/s over the
# rounds, the ratio to the direct run of the same transport, and respite's
# CPU per request (user+sys microseconds of the respite process / requests).
#
# Knobs: ROUNDS [3]  N1 [100000] requests at -P 1  N16 [500000] at -P 16
#        PIN [0] 1: redis on CPU 0, respite on CPU 1 (redis-benchmark unpinned)
set -euo pipefail

BEFORE=${1:-}
ROUNDS=${ROUNDS:-3}
N1=${N1:-100000}
N16=${N16:-500000}
PIN=${PIN:-0}
BIN=$(realpath "${BIN:-target/release/respite}")
[ -n "$BEFORE" ] && BEFORE=$(realpath "$BEFORE")

WORK=$(mktemp -d -t bench_tls.XXXXXX)
PIDS=()
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then tail -n 5 "$WORK"/*.log >&2 || true; fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

pin() { if [ "$PIN" = 1 ]; then echo "taskset -c $1"; fi; }
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
NEXT=7600
free_port() { while port_busy "$NEXT"; do NEXT=$((NEXT + 1)); done; printf -v "$1" '%s' "$NEXT"; NEXT=$((NEXT + 1)); }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
TICK=$(getconf CLK_TCK)

# Certificates: a CA and a server certificate for 127.0.0.1.
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$WORK/server.key" -out "$WORK/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/server.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
  -CAcreateserial -days 2 -extfile "$WORK/san.ext" -out "$WORK/server.pem" 2>/dev/null

free_port RP; free_port RTP; free_port AP; free_port ATP; free_port BP
$(pin 0) redis-server --port "$RP" --tls-port "$RTP" --bind 127.0.0.1 --save '' --appendonly no \
  --tls-cert-file "$WORK/server.pem" --tls-key-file "$WORK/server.key" \
  --tls-ca-cert-file "$WORK/ca.pem" --tls-auth-clients no --logfile "$WORK/redis.log" &
PIDS+=($!)
cat >"$WORK/respite.toml" <<EOF
[server.tls]
listen = "127.0.0.1:$ATP"
cert_file = "$WORK/server.pem"
key_file = "$WORK/server.key"
EOF
# Both binaries run in $WORK, away from any ./proxy.toml.
cd "$WORK"
$(pin 1) "$BIN" --config "$WORK/respite.toml" --listen "127.0.0.1:$AP" --upstream "127.0.0.1:$RP" \
  --workers 1 --admin off --log-level warn 2>"$WORK/respite.log" &
AFTER_PID=$!
PIDS+=($AFTER_PID)
BEFORE_PID=
if [ -n "$BEFORE" ]; then
  $(pin 1) "$BEFORE" --listen "127.0.0.1:$BP" --upstream "127.0.0.1:$RP" \
    --workers 1 --admin off --log-level warn 2>"$WORK/before.log" &
  BEFORE_PID=$!
  PIDS+=($BEFORE_PID)
fi
TLSARGS=(--tls --cacert "$WORK/ca.pem")
for _ in $(seq 1 100); do
  ok=1
  redis-cli -p "$RP" PING >/dev/null 2>&1 || ok=0
  redis-cli -p "$AP" PING >/dev/null 2>&1 || ok=0
  redis-cli "${TLSARGS[@]}" -p "$ATP" PING >/dev/null 2>&1 || ok=0
  if [ -n "$BEFORE" ]; then redis-cli -p "$BP" PING >/dev/null 2>&1 || ok=0; fi
  [ $ok = 1 ] && break
  sleep 0.1
done
redis-benchmark -p "$RP" -q -t set -n 100000 -r 100000 -d 100 >/dev/null

TARGETS="redis redis-tls respite respite-tls"
[ -n "$BEFORE" ] && TARGETS="$TARGETS before"
declare -A PORT=([redis]=$RP [redis-tls]=$RTP [respite]=$AP [respite-tls]=$ATP [before]=$BP)
declare -A PROC=([respite]=$AFTER_PID [respite-tls]=$AFTER_PID [before]=$BEFORE_PID)

RAW="$WORK/raw.tsv"
: >"$RAW"
for round in $(seq 1 "$ROUNDS"); do
  for P in 1 16; do
    n=$N1; [ "$P" = 16 ] && n=$N16
    for t in get set; do
      set -- $TARGETS
      rot=$(( (round - 1) % $# ))
      order="${*:rot+1} ${*:1:rot}"
      for target in $order; do
        extra=()
        case $target in *-tls) extra=("${TLSARGS[@]}") ;; esac
        pid=${PROC[$target]:-}
        c0=0; [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
        rps=$(redis-benchmark -p "${PORT[$target]}" "${extra[@]}" -c 50 -P "$P" -n "$n" \
          -r 100000 -d 100 -t "$t" --csv 2>/dev/null | awk -F'"' 'NR==2 {print $4}')
        c1=0; [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
        us=$(awk -v d=$((c1 - c0)) -v n="$n" -v hz="$TICK" 'BEGIN { printf "%.2f", d / hz * 1e6 / n }')
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$P" "$t" "$target" "$rps" "$us" >>"$RAW"
      done
    done
  done
done

echo "rounds=$ROUNDS N1=$N1 N16=$N16 PIN=$PIN; respite upstream: plaintext"
echo
echo "| target | pipeline | test | median req/s | ratio to direct (same transport) | respite CPU us/request |"
echo "|---|---|---|---|---|---|"
awk -F'\t' '
  { k = $4 "\t" $2 "\t" $3; n[k]++; r[k, n[k]] = $5; c[k, n[k]] = $6 }
  function med(arr, key, cnt,   i, j, t, v) {
    for (i = 1; i <= cnt; i++) v[i] = arr[key, i] + 0
    for (i = 1; i <= cnt; i++) for (j = i + 1; j <= cnt; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return (cnt % 2) ? v[(cnt + 1) / 2] : (v[cnt / 2] + v[cnt / 2 + 1]) / 2
  }
  END {
    for (k in n) { m[k] = med(r, k, n[k]); cpu[k] = med(c, k, n[k]) }
    split("redis redis-tls respite respite-tls before", order, " ")
    for (P = 1; P <= 16; P += 15) for (ti = 1; ti <= 2; ti++) {
      t = (ti == 1) ? "get" : "set"
      for (o = 1; o <= 5; o++) {
        k = order[o] "\t" P "\t" t
        if (!(k in n)) continue
        base = (order[o] ~ /-tls$/) ? "redis-tls" : "redis"
        ratio = m[base "\t" P "\t" t] ? m[k] / m[base "\t" P "\t" t] : 0
        cpuv = (order[o] ~ /^redis/) ? "-" : cpu[k]
        printf "| %s | %d | %s | %.0f | %.2f | %s |\n", order[o], P, toupper(t), m[k], ratio, cpuv
      }
    }
  }' "$RAW"
