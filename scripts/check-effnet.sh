#!/usr/bin/env bash
# Run configs/effnet-cam.toml (real photos in ../shared, real EfficientNet-Lite0 weights) into a
# temporary runs dir and check its figures against the PyTorch reference: val accuracy >= 0.985, Oxford accuracy
# >= 0.95, CAM pointing game >= 0.70 and energy in box >= 0.43 on the Oxford head boxes.
# Needs the release build and ../shared (or $SHARED_DIR); uses data/weights or copies the weights
# from the shared dir, verifying the sha256 either way.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-$(cd .. && pwd)/shared}"
mkdir -p data/weights
[ -f data/weights/efficientnet-lite0-57934424.pth ] || cp "$shared/weights/efficientnet-lite0-57934424.pth" data/weights/
scripts/fetch-weights.sh efficientnet-lite0
runs=$(mktemp -d)
trap 'rm -rf "$runs"' EXIT
sed -e "s#^runs_dir = .*#runs_dir = \"$runs\"#" -e "s#\.\./shared#$shared#g" configs/effnet-cam.toml > "$runs/effnet-cam.toml"
./target/release/train --config "$runs/effnet-cam.toml" | grep -v "backbone images" | tee "$runs/log.txt"
run_dir=$(sed -n 's/^run dir: //p' "$runs/log.txt" | head -1)
python3 - "$run_dir/metrics.csv" <<'PY'
import csv, sys
last = list(csv.DictReader(open(sys.argv[1])))[-1]
figures = {k: float(last[k]) for k in ["val_accuracy", "oxford_accuracy", "cam_pointing_game", "cam_energy_in_box"]}
print("effnet-cam:", ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
limits = {"val_accuracy": 0.985, "oxford_accuracy": 0.95, "cam_pointing_game": 0.70, "cam_energy_in_box": 0.43}
failed = [f"{k} {figures[k]:.4f} < {v}" for k, v in limits.items() if figures[k] < v]
if failed:
    sys.exit("EFFNET FIGURES FAILED: " + ", ".join(failed))
print("EFFNET FIGURES OK")
PY
