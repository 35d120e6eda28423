#!/usr/bin/env bash
# Runs respite on 127.0.0.1:6380 in front of a local Redis on 127.0.0.1:6379.
# Installs redis-server when it is missing and starts one when nothing answers
# on 6379. Extra arguments go to respite (e.g. --log-level debug).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server redis-tools
fi
if ! command -v cargo >/dev/null; then
  echo "run-local: cargo is missing; install Rust from your distribution or rustup first" >&2
  exit 2
fi
if [ "$(redis-cli -p 6379 PING 2>/dev/null || true)" != PONG ]; then
  echo "run-local: starting redis-server on 127.0.0.1:6379" >&2
  redis-server --port 6379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
    --logfile "${TMPDIR:-/tmp}/respite-redis-6379.log"
  for _ in $(seq 1 50); do [ "$(redis-cli -p 6379 PING 2>/dev/null || true)" = PONG ] && break; sleep 0.1; done
fi
cargo build --release
echo "run-local: respite on 127.0.0.1:6380 -> 127.0.0.1:6379 (try: redis-cli -p 6380 PING)" >&2
exec ./target/release/respite --config proxy.toml --listen 127.0.0.1:6380 --upstream 127.0.0.1:6379 "$@"
