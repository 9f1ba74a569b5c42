#!/usr/bin/env bash
# The full-size streaming check, by hand (needs ~5.1 GB free under target/): a 25,000-image
# fine-tuning cut at VGG16's block4_pool (5.02 GB as f16) is written, trained on and read back
# within 2 GB of peak RSS. `cargo test` runs the same test at 8,000 images (1.6 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
df -h target 2>/dev/null || df -h .
CUT_MEMORY_IMAGES="${CUT_MEMORY_IMAGES:-25000}" \
  cargo test --release -p train --test cut_memory -- --nocapture
