#!/usr/bin/env bash
# Run configs/effnet-3class.toml (cat and dog: the shared photos; drawing: synthetic animals;
# EfficientNet-Lite0 with its real ImageNet weights) into a temporary runs dir and check the
# N-class outputs: val accuracy >= 0.8, a metrics.csv column per set and class, a confusion CSV
# per set and epoch, and in TensorBoard the `confusion/<set>` images, the per-class accuracy
# scalars, the CAM and Grad-CAM maps at every step and caption tables naming the classes.
# Needs the release build, ../shared (or $SHARED_DIR) and scripts/setup-venv.sh's .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-$(cd .. && pwd)/shared}"
export SHARED_DIR="$shared"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scripts/make-3class-data.sh "$work/data" > /dev/null
sed -e "s#^runs_dir = .*#runs_dir = \"$work/runs\"#" -e "s#data/three-class#$work/data#g" \
  configs/effnet-3class.toml > "$work/effnet-3class.toml"
./target/release/train --config "$work/effnet-3class.toml" | grep -v "backbone images" | tee "$work/log.txt" | grep -E "epoch  10|best|total"
run_dir=$(sed -n 's/^run dir: //p' "$work/log.txt" | head -1)
.venv/bin/python - "$run_dir" <<'PY'
import csv, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

run = Path(sys.argv[1])
classes, epochs = ["cat", "dog", "drawing"], 10
rows = list(csv.DictReader(open(run / "metrics.csv")))
last = rows[-1]
failed = []
if float(last["val_accuracy"]) < 0.8:
    failed.append(f"val_accuracy {last['val_accuracy']} < 0.8")
for s in ("train", "val"):
    for c in classes:
        if not 0.0 <= float(last[f"{s}_accuracy_{c}"]) <= 1.0:
            failed.append(f"{s}_accuracy_{c} = {last[f'{s}_accuracy_{c}']!r}")
    for e in range(1, epochs + 1):
        lines = (run / "confusion" / f"{s}-epoch-{e:03}.csv").read_text().splitlines()
        if lines[0] != "true\\predicted," + ",".join(classes) or len(lines) != 4:
            failed.append(f"confusion/{s}-epoch-{e:03}.csv: {lines[:1]}")
acc = EventAccumulator(str(run), size_guidance={"tensors": 0, "scalars": 0})
acc.Reload()
tags = acc.Tags()
for s in ("train", "val"):
    steps = sorted(e.step for e in acc.Tensors(f"confusion/{s}"))
    if steps != list(range(1, epochs + 1)):
        failed.append(f"confusion/{s} steps {steps}")
    for c in classes:
        if len(acc.Scalars(f"accuracy/{s}/{c}")) != epochs:
            failed.append(f"accuracy/{s}/{c} missing epochs")
for method in ("cam", "gradcam"):
    if sorted(e.step for e in acc.Tensors(f"{method}/grid")) != list(range(epochs + 1)):
        failed.append(f"{method}/grid steps")
    captions = acc.Tensors(f"{method}/captions")[-1].tensor_proto.string_val[0].decode()
    if not all(f"| {c} |" in captions for c in classes):
        failed.append(f"{method}/captions lacks a class name: {captions[:200]}")
print(f"effnet-3class: val_accuracy {float(last['val_accuracy']):.4f}, " + ", ".join(
    f"val_accuracy_{c} {float(last[f'val_accuracy_{c}']):.2f}" for c in classes))
if failed:
    sys.exit("3-CLASS CHECK FAILED: " + "; ".join(failed))
print("3-CLASS CHECK OK")
PY
