#!/usr/bin/env bash
# Launch TensorBoard on runs/ (or the directory given), on 127.0.0.1 only ($PORT, default 6006),
# keeping every image step. By default TensorBoard keeps 10 random image steps per tag; and
# `--samples_per_plugin images=0`, often advised for "keep all", makes TensorBoard 2.21 serve no
# images at all (measured; see README), so a large number is used instead.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
logdir="${1:-$repo/runs}"
port="${PORT:-6006}"
[ -x "$repo/.venv/bin/tensorboard" ] || "$repo/scripts/setup-venv.sh"
exec "$repo/.venv/bin/tensorboard" --logdir "$logdir" --host 127.0.0.1 --port "$port" \
    --samples_per_plugin images=100000
