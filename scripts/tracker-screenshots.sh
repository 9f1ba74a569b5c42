#!/usr/bin/env bash
# The README's tracker screenshots (by hand, after `cargo build --release` and
# scripts/setup-venv.sh): the quickstart logged live to a local MLflow server, then synced to W&B
# offline; headless Chromium shoots MLflow's UI on the run's CAM grid of the last epoch
# (docs/mlflow-ui.jpg) and a page of the W&B offline run's media: one photo's CAM overlays at
# every step with the captions W&B holds (docs/wandb-offline-media.jpg).
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --host 127.0.0.1 \
  --port "$port" --workers 1 --backend-store-uri "sqlite:///$work/mlflow.db" \
  --artifacts-destination "$work/artifacts" > "$work/server.log" 2>&1 &
server=$!
trap 'kill -TERM -- -$server 2>/dev/null || true; sleep 1; rm -rf "$work"' EXIT
until [ "$(curl -s "http://127.0.0.1:$port/health")" = OK ]; do sleep 0.5; done

sed -e "s#^runs_dir = .*#runs_dir = \"$work/runs\"#" configs/quickstart.toml > "$work/quickstart.toml"
printf '\n[logging]\nmlflow = "http://127.0.0.1:%s"\nexperiment = "quickstart"\n' "$port" >> "$work/quickstart.toml"
target/release/train --config "$work/quickstart.toml" | grep -E "^mlflow:|best val"
run=$(ls -d "$work"/runs/quickstart-*)
read -r experiment run_id < <(.venv/bin/python -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["experiment_id"], r["run_id"])' "$run/mlflow.json")
shoot() { chromium --headless --no-sandbox --hide-scrollbars --virtual-time-budget=20000 \
  --window-size="$1" --screenshot="$2" "$3" 2> /dev/null; }
shoot 1400,900 docs/mlflow-ui.png \
  "http://127.0.0.1:$port/#/experiments/$experiment/runs/$run_id/artifacts/images/cam/epoch-010/grid.png"

WANDB_MODE=offline WANDB_SILENT=true WANDB_DIR="$work" WANDB_CACHE_DIR="$work/cache" \
  WANDB_DATA_DIR="$work/data" WANDB_CONFIG_DIR="$work/config" \
  .venv/bin/python scripts/wandb_sync.py "$run" --project quickstart | tail -1
offline=$(ls -d "$work"/wandb/offline-run-*)
.venv/bin/python - "$offline" "$work/media.html" <<'PY'
import glob, html, os, sys
sys.path.insert(0, "scripts")
from check_wandb import history
offline, out = sys.argv[1:]
rows, _ = history(glob.glob(os.path.join(offline, "*.wandb"))[0])
cells = []
for step in sorted(rows):
    image = rows[step].get("cam/cat_00600")
    if isinstance(image, dict) and "path" in image:
        src = os.path.join(offline, "files", image["path"])
        cells.append(f'<figure><img src="file://{src}"><figcaption>step {step}<br>'
                     f'{html.escape(image.get("caption", ""))}</figcaption></figure>')
open(out, "w").write(
    "<html><body style='font:13px sans-serif;margin:12px'>"
    f"<p>W&amp;B offline run {html.escape(os.path.basename(offline))}: media <code>cam/cat_00600</code></p>"
    "<style>figure{display:inline-block;margin:4px;width:170px}img{width:160px;image-rendering:pixelated}</style>"
    + "".join(cells) + "</body></html>")
PY
shoot 1150,520 docs/wandb-offline-media.png "file://$work/media.html"
for shot in mlflow-ui wandb-offline-media; do
  .venv/bin/python -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").save(sys.argv[2], quality=85)' \
    "docs/$shot.png" "docs/$shot.jpg"
  rm "docs/$shot.png"
done
ls -l docs/mlflow-ui.jpg docs/wandb-offline-media.jpg
