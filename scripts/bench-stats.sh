#!/usr/bin/env bash
# bench-stats.sh - statistics on vs off (vs an optional baseline binary):
# GET, 50 clients, pipeline 16, redis-benchmark against each proxy in turn,
# rounds interleaved (A B C, B C A, ...), medians and ratios printed.
#
#   scripts/bench-stats.sh [BASELINE_BINARY]
#
# Environment: ROUNDS [5]  N [1000000] requests per run  PIN [1] (redis on
# CPU 0, proxies on CPU 1, benchmark unpinned, as in BENCHMARKS.md)
#              BIN [target/release/respite]
set -euo pipefail
ROUNDS=${ROUNDS:-5}
N=${N:-1000000}
PIN=${PIN:-1}
BIN=${BIN:-target/release/respite}
BASE=${1:-}
WORK=$(mktemp -d -t bench-stats.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Runs in the background as `pin CPU cmd... &`: exec, so $! is the command itself.
pin() { if [ "$PIN" = 1 ]; then exec taskset -c "$1" "${@:2}"; else exec "${@:2}"; fi; }

RP=$(free_port)
pin 0 redis-server --port "$RP" --save "" --appendonly no --logfile "$WORK/redis.log" &
PIDS+=($!)
sleep 0.5
printf '[stats]\nenabled = false\n' > "$WORK/off.toml"
printf '[stats]\nenabled = true\n' > "$WORK/on.toml"
start() { # name binary config
  local port; port=$(free_port)
  pin 1 "$2" --config "$3" --listen "127.0.0.1:$port" --upstream "127.0.0.1:$RP" --admin off --workers 1 --log-level warn \
    > "$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  echo "$1 $port" >> "$WORK/targets"
}
start on "$BIN" "$WORK/on.toml"
start off "$BIN" "$WORK/off.toml"
if [ -n "$BASE" ]; then start base "$BASE" "$WORK/off.toml"; fi
sleep 1
redis-benchmark -p "$RP" -t set -n 100000 -r 100000 -d 100 -q > /dev/null
mapfile -t TARGETS < "$WORK/targets"
for ((r = 0; r < ROUNDS; r++)); do
  for ((i = 0; i < ${#TARGETS[@]}; i++)); do
    t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
    name=${t% *}; port=${t#* }
    rps=$(redis-benchmark -p "$port" -c 50 -P 16 -t get -n "$N" -r 100000 -d 100 -q --csv \
      | awk -F, 'NR>0 && $1 ~ /GET/ {gsub(/"/,"",$2); print $2}')
    echo "round $r $name $rps"
    echo "$name $rps" >> "$WORK/results"
  done
done
echo
awk '{v[$1]=v[$1]" "$2} END {for (k in v) print k v[k]}' "$WORK/results" | while read -r name vals; do
  med=$(printf '%s\n' $vals | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
  echo "$name median $med  (all: $vals)"
done | sort | tee "$WORK/medians"
on=$(awk '$1=="on"{print $3}' "$WORK/medians"); off=$(awk '$1=="off"{print $3}' "$WORK/medians")
awk -v a="$on" -v b="$off" 'BEGIN {printf "on/off = %.3f\n", a/b}'
if [ -n "$BASE" ]; then
  base=$(awk '$1=="base"{print $3}' "$WORK/medians")
  awk -v a="$off" -v b="$base" 'BEGIN {printf "off/baseline = %.3f\n", a/b}'
fi
