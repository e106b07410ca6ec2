#!/usr/bin/env bash
# Fuzzes QuantKit's readers of outside input with libFuzzer (the harness is
# Sources/quantkit-fuzz/main.swift; targets onnx npy pb image json toml list).
#
#   bash scripts/fuzz.sh [TARGET ...] [--time SECONDS | --runs N]   explore (default: all, 60 s each)
#   bash scripts/fuzz.sh --smoke                                    the fixed short run of scripts/test.sh
#
# Explore mode keeps a growing corpus per target in .cache/fuzz/<target> (started from the
# committed seeds, Tests/fuzz/seeds/<target>) and writes crashing inputs to .cache/fuzz/crashes/.
# A crash found becomes a regression: copy its input to Tests/fuzz/regressions/<target>/ and fix
# the cause; every later run (the smoke run too) replays it first.
# The smoke run: every seed and regression, then 3,000 mutated inputs per target from seed 1;
# it writes nothing and fails on any crash, timeout (10 s) or allocation over 2 GB.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
targets=() mode=explore limit=(-max_total_time=60)
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) mode=smoke; limit=(-runs=3000 -seed=1) ;;
    --time) limit=(-max_total_time="$2"); shift ;;
    --runs) limit=(-runs="$2"); shift ;;
    onnx|npy|pb|image|json|toml|list|plan) targets+=("$1") ;;
    *) echo "usage: scripts/fuzz.sh [TARGET ...] [--time S | --runs N] | --smoke" >&2; exit 64 ;;
  esac
  shift
done
[ ${#targets[@]} -gt 0 ] || targets=(onnx npy pb image json toml list plan)

echo "== swift build -c release --sanitize fuzzer --product quantkit-fuzz (.build-fuzz)"
buildlog=$(mktemp)
if ! swift build -c release --scratch-path .build-fuzz --sanitize fuzzer --product quantkit-fuzz >"$buildlog" 2>&1; then
  grep -E "error" "$buildlog" | head -20 || tail -20 "$buildlog"
  echo "fuzz: the fuzzer did not build"; rm -f "$buildlog"; exit 1
fi
rm -f "$buildlog"
fuzzer=.build-fuzz/release/quantkit-fuzz
export SWIFT_BACKTRACE=enable=no  # else Swift's backtracer takes the trap and libFuzzer saves nothing
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-$(bash scripts/openblas-coretype.sh)}
common=(-max_len=65536 -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=2048 -print_final_stats=1)
failed=()
for t in "${targets[@]}"; do
  seeds=Tests/fuzz/seeds/$t regressions=Tests/fuzz/regressions/$t
  dirs=("$seeds")
  [ -d "$regressions" ] && dirs+=("$regressions")
  if [ "$mode" = smoke ]; then
    work=$(mktemp -d)
    artifacts=$work/
  else
    work=.cache/fuzz/$t
    mkdir -p "$work" .cache/fuzz/crashes
    artifacts=.cache/fuzz/crashes/$t-
  fi
  log=$(mktemp)
  if QK_FUZZ_TARGET=$t "$fuzzer" "$work" "${dirs[@]}" "${common[@]}" "${limit[@]}" -artifact_prefix="$artifacts" >"$log" 2>&1; then
    echo "fuzz $t: $(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}') inputs, no crash"
  else
    echo "fuzz $t: FAILED"; grep -E "ERROR|==|Fatal|SUMMARY|Test unit written|Crash|panic" "$log" | head -20
    failed+=("$t")
  fi
  rm -f "$log"
  [ "$mode" = smoke ] && rm -rf "$work"
done
if [ ${#failed[@]} -gt 0 ]; then echo "fuzz: crashes in ${failed[*]}"; exit 1; fi
echo "fuzz: ${#targets[@]} targets, no crash"
