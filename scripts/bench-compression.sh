#!/usr/bin/env bash
# bench-compression.sh - respite with compression on vs off (and, optionally,
# a baseline respite binary without the compression code), GET and SET of
# generated ~4 KB JSON values, 50 clients, pipeline 16, interleaved rounds.
#
# Usage: scripts/bench-compression.sh [BASE_BINARY]
# Env:   ROUNDS [3]  SECS [8]  SIZE [4096]  KEYS [10000]
# Each target has its own redis-server (a compressing proxy and a plain one
# must not share a keyspace). Prints one TSV row per run and a summary.
set -euo pipefail
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-8}
SIZE=${SIZE:-4096}
KEYS=${KEYS:-10000}
BASE=${1:-}
cd "$(dirname "$0")/.."
cargo build --release --bin respite --example json_load >/dev/null
BIN=target/release/respite
LOAD=target/release/examples/json_load
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
port=$((21000 + RANDOM % 2000))
start_redis() {
  redis-server --port "$1" --save '' --appendonly no --daemonize no >"$WORK/redis-$1.log" 2>&1 &
  PIDS+=($!)
}
start_proxy() { # bin port redis_port enabled
  printf '[compression]\nenabled = %s\n' "$4" >"$WORK/c-$2.toml"
  "$1" --config "$WORK/c-$2.toml" --listen "127.0.0.1:$2" --upstream "127.0.0.1:$3" \
    --admin off --workers 1 --log-level warn >"$WORK/p-$2.log" 2>&1 &
  PIDS+=($!)
}
declare -A TARGET
names=(on off)
start_redis $port; start_proxy $BIN $((port + 1)) $port true; TARGET[on]=$((port + 1))
start_redis $((port + 2)); start_proxy $BIN $((port + 3)) $((port + 2)) false; TARGET[off]=$((port + 3))
if [ -n "$BASE" ]; then
  start_redis $((port + 4)); start_proxy "$BASE" $((port + 5)) $((port + 4)) false; TARGET[base]=$((port + 5))
  names+=(base)
fi
sleep 1
for n in "${names[@]}"; do "$LOAD" "127.0.0.1:${TARGET[$n]}" set 2 50 16 "$SIZE" "$KEYS" >/dev/null; done
echo -e "round\ttest\ttarget\trps"
for r in $(seq 1 "$ROUNDS"); do
  for t in set get; do
    # Rotate the start so no target always runs first.
    for i in "${!names[@]}"; do
      n=${names[$(( (i + r) % ${#names[@]} ))]}
      rps=$("$LOAD" "127.0.0.1:${TARGET[$n]}" "$t" "$SECS" 50 16 "$SIZE" "$KEYS")
      echo -e "$r\t$t\t$n\t$rps"
    done
  done
done | tee "$WORK/rows.tsv"
echo
echo "median requests/s (ratio to off):"
for t in set get; do
  off=$(awk -v t=$t '$2==t && $3=="off"{print $4}' "$WORK/rows.tsv" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  for n in "${names[@]}"; do
    med=$(awk -v t=$t -v n=$n '$2==t && $3==n{print $4}' "$WORK/rows.tsv" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    echo -e "$t\t$n\t$med\t$(awk -v a=$med -v b=$off 'BEGIN{printf "%.2f", a/b}')"
  done
done
redis-cli -p $port info memory | grep '^used_memory:' | sed 's/^/on  redis /'
redis-cli -p $((port + 2)) info memory | grep '^used_memory:' | sed 's/^/off redis /'
