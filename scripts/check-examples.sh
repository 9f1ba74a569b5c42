#!/usr/bin/env bash
# Run the two "your own model" examples offline and check, with TensorBoard's own reader, that
# each wrote CAM and Grad-CAM maps of every explained image at step 0 and after every epoch
# (8 epochs), the grids, and an evolution strip per image.
#   scripts/check-examples.sh            (needs scripts/setup-venv.sh's .venv)
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for example in own_model burn_learner; do
    start=$SECONDS
    # burn-train's plain-terminal renderer prints a progress line per batch: kept in a log.
    if ! cargo run --release --quiet -p cam-examples --example "$example" -- --out "$out/$example" \
        > "$out/$example.log" 2>&1; then
        tail -30 "$out/$example.log" >&2
        echo "error: example $example failed" >&2
        exit 1
    fi
    grep -E "val accuracy|wrote" "$out/$example.log" | tail -3
    echo "example $example: $((SECONDS - start)) s"
done
.venv/bin/python - "$out" <<'PY'
import sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

epochs = 8
for example in ("own_model", "burn_learner"):
    acc = EventAccumulator(str(Path(sys.argv[1]) / example), size_guidance={"tensors": 0})
    acc.Reload()
    # Images are written as tensor summaries of the `images` plugin (what tf.summary does).
    tags = [t for t in acc.Tags()["tensors"]
            if acc.SummaryMetadata(t).plugin_data.plugin_name == "images"]
    for method in ("cam", "gradcam"):
        per_image = [t for t in tags if t.startswith(f"{method}/") and t.count("/") == 1
                     and not t.endswith("/grid")]
        assert len(per_image) == 8, f"{example}: {method} image tags {per_image}"
        for tag in per_image + [f"{method}/grid"]:
            steps = sorted(e.step for e in acc.Tensors(tag))
            assert steps == list(range(epochs + 1)), f"{example}: {tag} steps {steps}"
        strips = [t for t in tags if t.startswith(f"{method}/evolution/")]
        assert len(strips) == 8, f"{example}: {method} evolution strips {strips}"
    print(f"{example}: cam and gradcam maps of 8 images at steps 0..{epochs}, grids, strips: ok")
PY
