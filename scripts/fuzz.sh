#!/usr/bin/env bash
# Runs each fuzz target in fuzz/ for a while with libFuzzer, on the stable
# toolchain, then keeps the inputs that reached new code in fuzz/seeds/.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 30 s, every target)
#
# libFuzzer needs coverage instrumentation; cargo-fuzz asks nightly for it,
# but the SanitizerCoverage pass and its options are stable codegen flags,
# so this builds the targets with plain `cargo build` and those flags (no
# AddressSanitizer: the crate forbids unsafe code, a bug shows as a panic).
# Exit status: 0 when no target failed; otherwise the failing input is in
# fuzz/artifacts/TARGET/ and the command to replay it is printed.
#
# Environment: FUZZ_JOBS=N runs N fuzzing processes per target (default 1;
# with more, libFuzzer logs each to fuzz/fuzz-N.log); FUZZ_ARGS adds
# libFuzzer options. Run it at low priority on a shared machine:
# `nice -n 19 scripts/fuzz.sh 600`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=()
  for f in fuzz_targets/*.rs; do
    targets+=("$(basename "$f" .rs)")
  done
fi

# libfuzzer-sys compiles libFuzzer itself (C++).
if ! command -v c++ >/dev/null; then
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++
fi

host=$(rustc -vV | sed -n 's/^host: //p')
# --target keeps the flags off build scripts and proc macros (they would
# not link without libFuzzer's coverage callbacks).
export RUSTFLAGS="-Cpasses=sancov-module \
  -Cllvm-args=-sanitizer-coverage-level=4 \
  -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
  -Cllvm-args=-sanitizer-coverage-pc-table \
  -Cllvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing -Cdebug-assertions -Coverflow-checks"
cargo build --release --bins --target "$host"
bin=target/$host/release

jobs=
if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
  jobs="-jobs=$FUZZ_JOBS -workers=$FUZZ_JOBS"
fi
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  before=$(ls "seeds/$t" | wc -l)
  echo "== $t: ${secs}s (seeds: $before)"
  # New inputs go to corpus/ (not committed); seeds/ is read.
  # shellcheck disable=SC2086
  if ! "$bin/$t" "corpus/$t" "seeds/$t" -dict=resp.dict \
      -max_total_time="$secs" -timeout=10 -print_final_stats=1 \
      -artifact_prefix="artifacts/$t/" $jobs ${FUZZ_ARGS:-} 2>"artifacts/$t/log"; then
    status=1
    tail -n 40 "artifacts/$t/log" >&2
    echo "!! $t failed; replay with: (cd fuzz && $bin/$t artifacts/$t/crash-...)" >&2
    echo "!! or on any toolchain: (cd fuzz && cargo run --release --example replay -- $t artifacts/$t)" >&2
    continue
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done ' "artifacts/$t/log" || true
  # Keep what reached new code: merge corpus/ into seeds/ (only inputs that
  # add coverage to what seeds/ already covers are copied).
  "$bin/$t" -merge=1 "seeds/$t" "corpus/$t" -dict=resp.dict 2>"artifacts/$t/merge.log" \
    || { status=1; tail -n 20 "artifacts/$t/merge.log" >&2; continue; }
  after=$(ls "seeds/$t" | wc -l)
  echo "== $t: ok; corpus $(ls "corpus/$t" | wc -l) inputs; seeds $before -> $after"
done
exit $status
