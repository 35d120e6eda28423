#!/usr/bin/env bash
# Runs the whole test suite: unit tests, property tests and the integration
# tests that start real redis-server / redis-sentinel / cluster processes on
# free loopback ports. Installs the Redis packages first when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v redis-server >/dev/null || need+=(redis-server)
command -v redis-cli >/dev/null || need+=(redis-tools)
command -v redis-sentinel >/dev/null || need+=(redis-sentinel)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
exec cargo test --release --no-fail-fast "$@"
