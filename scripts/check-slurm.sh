#!/usr/bin/env bash
# The sharded backbone pass on a real Slurm cluster (CI runs this): brings up a single-node
# cluster (scripts/slurm-local.sh, Debian's slurm-wlm and munge), then
#   1. a reference run without Slurm: `train --config C`, computing its own features;
#   2. on a fresh cache: a job array of 4 shards (scripts/slurm/features.sbatch), shard 2 run a
#      second time (outside Slurm) while the array's task 2 runs, then scripts/slurm/train.sbatch
#      after the array (afterok); the run must print `features: 0 computed` and its metrics.csv
#      must equal the reference's, timing columns aside;
#   3. with TIME_SHARDS=1 (by hand; the README's figure): one process (`train features`, cold
#      cache) against the 4-shard array alone (cold cache), on the same images.
# Slurm is stopped at the end, pass or fail.
#   scripts/check-slurm.sh [CONFIG]
# CONFIG: default, a small real-photo config written here: EfficientNet-Lite0 (real weights) on
# ../shared's 600 + 200 photos and the 240 Oxford photos with head boxes, 192x192, seed 3,
# 3 epochs, CAM and Grad-CAM. Its runs_dir is replaced by temporary ones.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-$(cd .. && pwd)/shared}"
# The release build of the workspace (`cargo build --release`, or CI's `cargo test --release
# --workspace`): building `-p train` alone would build burn again with other features.
train=target/release/train
[ -x "$train" ] || { echo "no $train: run cargo build --release first" >&2; exit 1; }
work=$(mktemp -d /tmp/check-slurm.XXXXXX)
chmod 755 "$work"
export SLURM_LOCAL_DIR=""
cleanup() {
  scripts/slurm-local.sh stop "$SLURM_LOCAL_DIR" || true
  rm -rf "$work"
}
trap cleanup EXIT

config=${1:-}
if [ -z "$config" ]; then
  mkdir -p data/weights
  [ -f data/weights/efficientnet-lite0-57934424.pth ] \
    || cp "$shared/weights/efficientnet-lite0-57934424.pth" data/weights/
  scripts/fetch-weights.sh efficientnet-lite0 > /dev/null
  config="$work/small-photos.toml"
  cat > "$config" <<EOF
[run]
name = "slurm-check"
runs_dir = "runs"
seed = 3

[data]
train_dir = "$shared/data/catdog/train"
val_dir = "$shared/data/catdog/val"
boxes = "$shared/data/catdog/annotations/oxford_loc.json"
image_size = 192

[[data.eval]]
name = "oxford"
dir = "$shared/data/catdog/oxford_loc"

[model]
backbone = "efficientnet-lite0"
weights = "data/weights/efficientnet-lite0-57934424.pth"
head = "gap-linear"

[train]
epochs = 3
batch_size = 32
learning_rate = 1e-3

[[callbacks]]
kind = "cam"
layer = "head"
num_images = 8
localization_images = 60

[[callbacks]]
kind = "gradcam"
layer = "head"
num_images = 8
localization_images = 60
EOF
fi

# CONFIG with its runs under $work/$1: written to $work/$1.toml.
with_runs() {
  python3 - "$config" "$work/$1" > "$work/$1.toml" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
line = f'runs_dir = "{sys.argv[2]}"'
if re.search(r"(?m)^runs_dir\s*=", text):
    text = re.sub(r"(?m)^runs_dir\s*=.*$", line, text)
else:
    text = re.sub(r"(?m)^\[run\]\s*$", "[run]\n" + line, text, count=1)
print(text)
PY
  echo "$work/$1.toml"
}
# Seconds since the epoch, with decimals.
now() { date +%s.%N; }
# Fail: the message, the jobs' logs and the daemons' log tails (the trap then stops Slurm).
fail() {
  echo "SLURM CHECK FAILED: $*" >&2
  for f in "$work"/*.out "$work"/*.log "${SLURM_LOCAL_DIR:-/nonexistent}"/*.log; do
    [ -s "$f" ] && { echo "--- $f (tail)" >&2; tail -n 15 "$f" >&2; }
  done
  exit 1
}
# Wait (at most $DEADLINE s, default 900) for Slurm jobs $@ to leave the queue, then fail unless
# every task COMPLETED.
wait_jobs() {
  local until=$((SECONDS + ${DEADLINE:-900}))
  while [ -n "$(squeue --noheader --jobs="$(IFS=,; echo "$*")" 2>/dev/null)" ]; do
    [ "$SECONDS" -lt "$until" ] || { squeue >&2; scancel "$@" || true; fail "jobs $* still queued after ${DEADLINE:-900} s"; }
    sleep 0.5
  done
  local states
  states=$(for j in "$@"; do scontrol show job --oneliner "$j"; done | grep -o 'JobState=[A-Z_]*' | sort | uniq -c)
  echo "jobs $*: $(echo $states)"
  [ "$(echo "$states" | grep -c .)" = 1 ] && echo "$states" | grep -q 'JobState=COMPLETED$' \
    || fail "a job did not complete"
  local tasks
  tasks=$(for j in "$@"; do scontrol show job --oneliner "$j"; done | grep -c 'JobState=COMPLETED')
  [ "$tasks" -ge "$#" ] || fail "$tasks tasks of jobs $* on record (purged?)" 
}

echo "== reference run, without Slurm"
reference=$(with_runs reference)
"$train" --config "$reference" | grep -v "backbone images" | tee "$work/reference.log" | grep -E "^features:|best val"

echo "== single-node Slurm cluster"
env=$(scripts/slurm-local.sh start)
eval "$env"
sinfo

if [ "${TIME_SHARDS:-0}" = 1 ]; then
  echo "== timing: one process against a 4-shard array, each on a cold cache of the same images"
  one=$(with_runs one)
  t0=$(now)
  "$train" features --config "$one" > "$work/one.log"
  t1=$(now)
  timed=$(with_runs timed)
  job=$(sbatch --parsable --output="$work/slurm-%A_%a.out" --array=0-3 scripts/slurm/features.sbatch "$timed")
  wait_jobs "$job"
  t2=$(now)
  python3 - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
print(f"one process: {t1 - t0:.1f} s; 4-shard array (submit to last task done): {t2 - t1:.1f} s; "
      f"ratio {(t1 - t0) / (t2 - t1):.2f}x; {open('/proc/cpuinfo').read().count('processor')} CPUs")
PY
fi

echo "== 4 shards as a job array, shard 2 again while it runs, then train after the array"
sharded=$(with_runs sharded)
array=$(sbatch --parsable --output="$work/slurm-%A_%a.out" --array=0-3 scripts/slurm/features.sbatch "$sharded")
fit=$(sbatch --parsable --output="$work/slurm-train-%j.out" --cpus-per-task="$(nproc)" \
  --dependency="afterok:$array" scripts/slurm/train.sbatch "$sharded")
# Shard 2 a second time, outside Slurm, as soon as the array's task 2 runs (the node's CPUs are
# all the array's): two processes writing the same chunks at once.
until=$((SECONDS + ${DEADLINE:-900}))
until [ "$(squeue --noheader --jobs="${array}_2" --format=%T 2>/dev/null)" = RUNNING ]; do
  [ -n "$(squeue --noheader --jobs="${array}_2" 2>/dev/null)" ] || fail "task 2 ended before it was seen running"
  [ "$SECONDS" -lt "$until" ] || fail "task 2 not running after ${DEADLINE:-900} s"
  sleep 0.1
done
"$train" features --config "$sharded" --shard 2/4 > "$work/again.log" 2>&1 || fail "shard 2 again failed"
running=$(squeue --noheader --jobs="${array}_2" --format=%T 2>/dev/null || true)
echo "shard 2 again: $(grep '^features:' "$work/again.log") (task 2 at its end: ${running:-done})"
wait_jobs "$array" "$fit"
# Both runs of shard 2 did all of its work, between them computing or reading every image.
python3 - "$work/again.log" "$work/slurm-${array}_2.out" <<'PY' || fail "shard 2's two runs disagree"
import re, sys
counts = [tuple(map(int, re.search(r"^features: (\d+) computed, (\d+) cached", open(f).read(), re.M).groups()))
          for f in sys.argv[1:]]
totals = {c + k for c, k in counts}
assert len(totals) == 1 and min(totals) > 0, counts
PY
grep -h "^features:" "$work"/slurm-"$array"_*.out
log="$work/slurm-train-$fit.out"
grep -E "^features:" "$log"
grep -q "^features: 0 computed, [1-9][0-9]* cached" "$log" || fail "train computed features after the shards" 
python3 - "$work/reference" "$work/sharded" <<'PY'
import csv, glob, sys
def metrics(runs):
    [path] = glob.glob(f"{runs}/*/metrics.csv")
    rows = list(csv.DictReader(open(path)))
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]
a, b = metrics(sys.argv[1]), metrics(sys.argv[2])
if a != b:
    diff = [(i, k, r[k], s.get(k)) for i, (r, s) in enumerate(zip(a, b)) for k in r if r[k] != s.get(k)]
    sys.exit(f"SLURM CHECK FAILED: metrics.csv differs from the reference run's: {len(a)} vs "
             f"{len(b)} rows; (row, column, reference, sharded): {diff[:8]}")
print(f"metrics.csv equal to the reference run's: {len(a)} rows x {len(a[0])} columns (timing aside)")
PY
left=$(find "$work/sharded/.cache" -name '*.tmp' | wc -l)
[ "$left" = 0 ] || fail "$left temporary files left in the cache" 
echo "slurm check passed"
