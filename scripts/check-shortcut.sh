#!/usr/bin/env bash
# The shortcut quickstart (configs/quickstart-shortcut.toml), checked as its issue asks, on each
# seed given (default: 1; `scripts/check-shortcut.sh 1 2 3` for three). Each seed replaces the
# config's data and run seeds and runs from an empty runs dir (cold cache: the set is generated
# too). At the last epoch, for CAM and Grad-CAM:
#   - energy in the cue's box >= 0.25, >= 2x its step-0 value, and above the head box's;
#   - drift_from_start >= 0.3;
#   - clean accuracy at least 0.15 below cue accuracy;
# and the wall time under SHORTCUT_SECONDS (default 90: a regression guard; 42 s on a 2-core
# AMD EPYC Zen 4 on 2026-12-07). Then the plain quickstart runs beside the first seed's run,
# `train compare` puts the two side by side, and both are read through TensorBoard's own server
# (scripts/check_tensorboard.py: one run per run, each score charted with its baselines, strips
# of >= 112-px frames, HParams names that differ in their first 15 characters).
# Needs the release build and .venv (scripts/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
limit="${SHORTCUT_SECONDS:-90}"
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
seeds=("$@")
[ ${#seeds[@]} -gt 0 ] || seeds=(1)
for seed in "${seeds[@]}"; do
  dir="$runs/seed$seed"
  mkdir -p "$dir"
  sed -e "s#^runs_dir = .*#runs_dir = \"$dir\"#" -e "s#^seed = 1\$#seed = $seed#" \
      -e "s#synthetic = { seed = 1,#synthetic = { seed = $seed,#" \
      configs/quickstart-shortcut.toml > "$dir/config.toml"
  grep -q "synthetic = { seed = $seed," "$dir/config.toml" || { echo "seed not set in the config" >&2; exit 1; }
  start=$(date +%s.%N)
  ./target/release/train --config "$dir/config.toml" > "$dir/log.txt"
  end=$(date +%s.%N)
  run_dir=$(sed -n 's/^run dir: //p' "$dir/log.txt" | head -1)
  python3 - "$run_dir/metrics.csv" "$start" "$end" "$seed" "$limit" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
seconds, seed, limit = float(sys.argv[3]) - float(sys.argv[2]), sys.argv[4], float(sys.argv[5])
first, last = rows[0], rows[-1]
f = lambda row, key: float(row[key])
cue, clean = f(last, "cue_accuracy"), f(last, "clean_accuracy")
print(f"seed {seed}: {seconds:.1f} s; last epoch: accuracy cue {cue:.3f}, clean {clean:.3f}, "
      f"val {f(last, 'val_accuracy'):.3f}; best clean {max(f(r, 'clean_accuracy') for r in rows[1:]):.3f}")
failures = []
if seconds >= limit:
    failures.append(f"took {seconds:.1f} s (limit {limit:.0f})")
if not clean <= cue - 0.15:
    failures.append(f"clean accuracy {clean:.3f} is not 0.15 below cue {cue:.3f}")
for m in ["cam", "gradcam"]:
    e0, e, head = f(first, f"{m}_energy_in_cue_box"), f(last, f"{m}_energy_in_cue_box"), f(last, f"{m}_energy_in_box")
    drift = f(last, f"{m}_drift_from_start")
    ratio = f"{e / e0:.1f}x" if e0 > 0 else "from 0"
    print(f"  {m}: energy in cue box {e0:.3f} at step 0 -> {e:.3f} ({ratio}), head box {head:.3f}, "
          f"drift from start {drift:.3f}")
    for ok, what in [(e >= 0.25, "cue-box energy < 0.25"), (e >= 2 * e0, "cue-box energy < 2x step 0"),
                     (e > head, "cue-box energy not above the head box's"), (drift >= 0.3, "drift_from_start < 0.3")]:
        if not ok:
            failures.append(f"{m}: {what}")
if failures:
    sys.exit(f"SHORTCUT FAILED (seed {seed}): " + "; ".join(failures))
PY
done
# The plain quickstart beside the first seed's run: `train compare` of the two (the README's
# command), and TensorBoard's server on both (two runs: their HParams names must differ).
first="$runs/seed${seeds[0]}"
sed "s#^runs_dir = .*#runs_dir = \"$first\"#" configs/quickstart.toml > "$runs/quickstart.toml"
./target/release/train --config "$runs/quickstart.toml" > "$runs/quickstart.txt"
plain=$(sed -n 's/^run dir: //p' "$runs/quickstart.txt" | head -1)
shortcut=$(sed -n 's/^run dir: //p' "$first/log.txt" | head -1)
./target/release/train compare "$plain" "$shortcut" --out "$runs/report" > /dev/null
grep -q "energy_in_cue_box" "$runs/report/index.html" || { echo "compare lacks the cue's energy" >&2; exit 1; }
.venv/bin/python scripts/check_tensorboard.py --runs "$first" --epochs 10
echo "SHORTCUT OK on seeds ${seeds[*]}"
