#!/usr/bin/env bash
# Fuzz the readers of user files with libFuzzer (cargo fuzz): config text, photos, weight files.
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      (default: 60 s, all three targets)
# Builds the targets optimised, with debug assertions and overflow checks (-O -a) and
# AddressSanitizer, on the stable toolchain (RUSTC_BOOTSTRAP=1 lets it take
# cargo-fuzz's -Z flags; a nightly works too), runs each for SECONDS_PER_TARGET starting from its
# kept corpus (fuzz/corpus/<target>/; new interesting inputs are added there), and prints
# executions per target. A crash, a leak, an allocation over 2 GB, a run over 2.5 GB RSS or an
# input taking > 30 s fails the script: the input is written to fuzz/artifacts/<target>/ —
# fix the bug, then move the input to fuzz/regressions/<target>/ so `cargo test` replays it
# (crates/train/tests/fuzz_corpus.rs). One line per target is appended to target/fuzz-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
[[ "$seconds" =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2; }
[ $# -eq 0 ] || shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config_text image_bytes weight_file_bytes)

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --version 0.13.2 --locked
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O -a

mkdir -p target
summary=target/fuzz-summary.txt
for target in "${targets[@]}"; do
  case "$target" in
    config_text) extra=(-dict=fuzz/config_text.dict -max_len=8192) ;;
    image_bytes) extra=(-max_len=65536) ;;
    weight_file_bytes) extra=(-max_len=16384) ;;
    *) echo "unknown fuzz target $target" >&2; exit 2 ;;
  esac
  mkdir -p "fuzz/corpus/$target"
  log="target/fuzz-$target.log"
  echo "== fuzz $target for ${seconds}s (log: $log)"
  status=0
  cargo fuzz run -O -a "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2560 -malloc_limit_mb=2048 -timeout=30 \
    -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  corpus=$(ls "fuzz/corpus/$target" | wc -l)
  caught=$(grep -c "caught decoder panic" "$log" || true)
  line="$(date -u +%FT%TZ) $target: $runs executions in ${seconds}s, corpus $corpus files, decoder panics caught $caught, exit $status"
  echo "$line" | tee -a "$summary"
  if [ "$status" -ne 0 ]; then
    { grep -v "caught decoder panic" "$log" | tail -n 60; } >&2 || true
    echo "fuzz target $target FAILED; the input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
