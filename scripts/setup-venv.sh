#!/usr/bin/env bash
# Create .venv with TensorBoard (its reader checks our event files in the tests), Pillow, the
# W&B SDK (scripts/wandb_sync.py; the tests run it offline) and MLflow (the tests start a real
# `mlflow server` and read runs back through its REST API). ~1 GB, ~1.5 min on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    if ! python3 -m venv .venv; then
        rm -rf .venv
        echo "error: python3 -m venv failed; on Debian/Ubuntu install the python3-venv package" >&2
        exit 1
    fi
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    "tensorboard==2.21.0" "pillow==13.0.0" "wandb==0.31.0" "mlflow==3.18.0"
.venv/bin/python -c "import tensorboard, PIL, wandb, mlflow; print('tensorboard', tensorboard.__version__, 'pillow', PIL.__version__, 'wandb', wandb.__version__, 'mlflow', mlflow.__version__)"
