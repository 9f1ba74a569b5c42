#!/usr/bin/env bash
# Run the quickstart (a fresh run dir under runs/) and check its figures: wall time < 150 s (a
# regression guard: ~30 s on an AVX-512 machine on 2026-11-27; on a 2-core EPYC without
# AVX-512, 84–88 s on 2026-11-29, 27–28 s on 2026-11-30 after the channels-last Winograd path and
# 18.6–18.9 s after the direct small-layer kernel and mimalloc),
# final validation accuracy ≥ 0.95, CAM pointing game ≥ 0.90, Grad-CAM deletion AUC < insertion
# AUC, CAM/Grad-CAM agreement ρ ≥ 0.99, TensorBoard's reader on the run (every score scalar);
# then `train sanity` (mean Spearman < 0.5 once the head is randomised), and `train compare` of
# it with the fine-tuning quickstart (a value in every row: both score the same metrics).
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
deletion, insertion = float(last["gradcam_deletion_auc"]), float(last["gradcam_insertion_auc"])
rho = float(last["cam_vs_gradcam_spearman"])
print(f"quickstart: {seconds:.1f} s, {len(rows) - 1} epochs (+ step 0), val accuracy {val:.4f}, "
      f"CAM pointing game {point:.3f}, Grad-CAM pointing game {float(last['gradcam_pointing_game']):.3f}")
for m in ["cam", "gradcam"]:
    print(f"  {m}: average drop {float(last[m + '_average_drop']):.4f}, increase in confidence "
          f"{float(last[m + '_increase_in_confidence']):.3f}, deletion AUC {float(last[m + '_deletion_auc']):.3f}, "
          f"insertion AUC {float(last[m + '_insertion_auc']):.3f}")
print(f"  agreement CAM vs Grad-CAM: Spearman {rho:.4f}, top-20% IoU {float(last['cam_vs_gradcam_top20_iou']):.3f}")
failures = [m for ok, m in [(seconds < 150, "took 150 s or more"), (val >= 0.95, "val accuracy < 0.95"),
                            (point >= 0.90, "CAM pointing game < 0.90"),
                            (deletion < insertion, "Grad-CAM deletion AUC >= insertion AUC"),
                            (rho >= 0.99, "CAM and Grad-CAM disagree at the pooled layer")] if not ok]
if failures:
    sys.exit("QUICKSTART FAILED: " + ", ".join(failures))
print("QUICKSTART OK")
PY
.venv/bin/python scripts/check_tensorboard.py --runs "$runs" --epochs "$(grep -c '^[1-9]' "$run_dir/metrics.csv")"
./target/release/train sanity --run "$run_dir" | tee "$runs/sanity.txt"
python3 - "$run_dir/sanity/sanity.csv" <<'PY'
import csv, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["randomised"] == "head"]
bad = [r["method"] for r in rows if not float(r["spearman"]) < 0.5]
print("after the head is randomised: " + ", ".join(f"{r['method']} Spearman {float(r['spearman']):.3f} "
      f"(abs {float(r['spearman_abs']):.3f}, SSIM {float(r['ssim']):.3f})" for r in rows))
if not rows or bad:
    sys.exit(f"SANITY FAILED: maps still correlate after head randomisation: {bad}")
PY
# The fine-tuning quickstart beside it: `compare` has a value for every metric of both (both
# score faithfulness on the same 4 images).
sed "s#^runs_dir = .*#runs_dir = \"$runs\"#" configs/quickstart-finetune.toml > "$runs/quickstart-finetune.toml"
./target/release/train --config "$runs/quickstart-finetune.toml" > "$runs/finetune.txt"
finetune_dir=$(sed -n 's/^run dir: //p' "$runs/finetune.txt" | head -1)
./target/release/train compare "$run_dir" "$finetune_dir" --out "$runs/report"
python3 - "$runs/report/index.html" <<'PY'
import re, sys
table = open(sys.argv[1]).read().split("Final metrics", 1)[1].split("</table>", 1)[0]
rows = re.findall(r"<tr><td>([^<]*)</td>(.*?)</tr>", table)
empty = [name for name, cells in rows if "\u2013" in cells]
print(f"compare quickstart vs quickstart-finetune: {len(rows)} metrics")
if not rows or empty:
    sys.exit(f"COMPARE FAILED: no value for one of the runs in {empty}")
PY
echo "QUICKSTART SANITY AND COMPARE OK"
