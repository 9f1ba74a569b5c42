#!/usr/bin/env bash
# Run the quickstart (a fresh run dir under runs/) and check its figures: wall time < 60 s,
# final validation accuracy ≥ 0.95, CAM pointing game ≥ 0.90, and TensorBoard's reader on the run.
# Needs the release build (cargo build --release) and .venv (scripts/setup-venv.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
sed "s#^runs_dir = .*#runs_dir = \"$runs\"#" configs/quickstart.toml > "$runs/quickstart.toml"
start=$(date +%s.%N)
./target/release/train --config "$runs/quickstart.toml" | tee "$runs/log.txt"
end=$(date +%s.%N)
run_dir=$(sed -n 's/^run dir: //p' "$runs/log.txt" | head -1)
python3 - "$run_dir/metrics.csv" "$start" "$end" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
last = rows[-1]
seconds = float(sys.argv[3]) - float(sys.argv[2])
val, point = float(last["val_accuracy"]), float(last["cam_pointing_game"])
print(f"quickstart: {seconds:.1f} s, {len(rows)} epochs, val accuracy {val:.4f}, "
      f"CAM pointing game {point:.3f}, Grad-CAM pointing game {float(last['gradcam_pointing_game']):.3f}")
failures = [m for ok, m in [(seconds < 60, "took 60 s or more"), (val >= 0.95, "val accuracy < 0.95"),
                            (point >= 0.90, "CAM pointing game < 0.90")] if not ok]
if failures:
    sys.exit("QUICKSTART FAILED: " + ", ".join(failures))
print("QUICKSTART OK")
PY
.venv/bin/python scripts/check_tensorboard.py --runs "$runs" --epochs "$(grep -c '^[0-9]' "$run_dir/metrics.csv")"
