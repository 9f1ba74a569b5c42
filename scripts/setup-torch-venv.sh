#!/usr/bin/env bash
# Create .venv-torch with PyTorch (CPU use; PyPI's wheel, ~4 GB with its CUDA libraries) for
# `train bench --pytorch .venv-torch/bin/python`, which times the same layers in PyTorch in the
# same run as ours. Not used by CI or the tests (too big); run it by hand.
#   scripts/setup-torch-venv.sh [DIR]     (default: .venv-torch in the repository)
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-.venv-torch}"
if [ ! -x "$dir/bin/python" ]; then
    if ! python3 -m venv "$dir"; then
        rm -rf "$dir"
        echo "error: python3 -m venv failed; on Debian/Ubuntu install the python3-venv package" >&2
        exit 1
    fi
fi
"$dir/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.15.*" "torchvision==0.29.*" numpy
"$dir/bin/python" -c "import torch; print('torch', torch.__version__, 'threads', torch.get_num_threads())"
echo "use: cargo run --release -p train -- bench --pytorch $dir/bin/python --json bench.json"
