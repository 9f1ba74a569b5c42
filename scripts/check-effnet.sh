#!/usr/bin/env bash
# Run configs/effnet-cam.toml (real photos in ../shared, real EfficientNet-Lite0 weights) into a
# temporary runs dir and check its figures against the PyTorch reference: val accuracy >= 0.985, Oxford accuracy
# >= 0.95, CAM pointing game >= 0.70 and energy in box >= 0.43 on the Oxford head boxes, the
# field's scores (15 px, MaxBoxAcc, PxAP) and the centre baseline (0.60) in metrics.csv; then
# `train explain --boxes` on the Oxford photos (localization.json, centre baseline 0.60).
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
# Maps every 5 epochs (0, 5, …, 20) instead of every epoch: the localization scores at photo size
# (MaxBoxAcc, PxAP on 240 photos) cost ~4.5 s a drawing on 2 cores; the checked figures are epoch 20's.
sed -e "s#^runs_dir = .*#runs_dir = \"$runs\"#" -e "s#\.\./shared#$shared#g" \
  -e 's#^kind = "cam"#kind = "cam"\nevery = 5#' configs/effnet-cam.toml > "$runs/effnet-cam.toml"
./target/release/train --config "$runs/effnet-cam.toml" | grep -v "backbone images" | tee "$runs/log.txt"
run_dir=$(sed -n 's/^run dir: //p' "$runs/log.txt" | head -1)
python3 - "$run_dir/metrics.csv" <<'PY'
import csv, sys
last = list(csv.DictReader(open(sys.argv[1])))[-1]
figures = {k: float(last[k]) for k in ["val_accuracy", "oxford_accuracy", "cam_pointing_game", "cam_energy_in_box"]}
print("effnet-cam:", ", ".join(f"{k} {v:.4f}" for k, v in figures.items()))
limits = {"val_accuracy": 0.985, "oxford_accuracy": 0.95, "cam_pointing_game": 0.70, "cam_energy_in_box": 0.43}
failed = [f"{k} {figures[k]:.4f} < {v}" for k, v in limits.items() if figures[k] < v]
# The per-epoch scores of the field, with the centre baseline beside them (it depends only on the
# 240 Oxford boxes: 0.60).
for k in ["cam_pointing_game_15px", "cam_maxboxacc_v2", "cam_maxboxacc_0.5", "cam_pxap",
          "baseline_centre_maxboxacc_v2", "baseline_centre_pxap"]:
    if not 0.0 <= float(last[k] or "nan") <= 1.0:
        failed.append(f"{k} = {last[k]!r}")
centre = float(last["baseline_centre_pointing_game"])
if abs(centre - 0.60) > 0.01:
    failed.append(f"baseline_centre_pointing_game {centre:.3f}, expected 0.60 ± 0.01")
if failed:
    sys.exit("EFFNET FIGURES FAILED: " + ", ".join(failed))
print("EFFNET FIGURES OK")
PY

# train explain --boxes on the 240 Oxford photos with the run's head: localization.json has every
# score for the method and the centre baseline, and the baseline's pointing game (which depends
# only on the boxes) is 0.60 ± 0.01.
./target/release/train explain --backbone efficientnet-lite0 \
  --weights data/weights/efficientnet-lite0-57934424.pth \
  --head gap-linear --head-weights "$run_dir/head.safetensors" --method cam \
  --input "$shared/data/catdog/oxford_loc" --boxes "$shared/data/catdog/annotations/oxford_loc.json" \
  --out-dir "$runs/explain" | tail -4
python3 - "$runs/explain/localization.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
keys = {"pointing_game", "pointing_game_15px", "energy_in_box", "maxboxacc_v2", "maxboxacc", "pxap", "images"}
for name in ["cam", "baseline_centre"]:
    missing = keys - set(report[name])
    if missing or report[name]["images"] != 240 or set(report[name]["maxboxacc"]) != {"0.3", "0.5", "0.7"}:
        sys.exit(f"LOCALIZATION JSON FAILED: {name}: missing {missing} or wrong counts: {report[name]}")
centre = report["baseline_centre"]["pointing_game"]
if abs(centre - 0.60) > 0.01:
    sys.exit(f"LOCALIZATION JSON FAILED: centre baseline pointing game {centre:.3f}, expected 0.60 ± 0.01")
print(f"localization.json: cam MaxBoxAccV2 {report['cam']['maxboxacc_v2']:.3f}, PxAP {report['cam']['pxap']:.3f}; "
      f"centre baseline pointing game {centre:.3f}, MaxBoxAccV2 {report['baseline_centre']['maxboxacc_v2']:.3f}")
print("LOCALIZATION JSON OK")
PY
