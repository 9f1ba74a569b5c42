#!/usr/bin/env bash
# Lay out a three-class set for configs/effnet-3class.toml in data/three-class (offline):
#   train/{cat,dog}, val/{cat,dog}  links to the shared Kaggle photos (300 + 300, 100 + 100; nothing
#                                   is copied)
#   train/drawing, val/drawing      300 + 100 synthetic animals (`train synth`, seed 7, 224 px): a
#                                   third class that is neither a photo of a cat nor of a dog
#   scripts/make-3class-data.sh [DEST]     (default data/three-class; needs the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${SHARED_DIR:-$(cd .. && pwd)/shared}"
dest="${1:-data/three-class}"
for split in train val; do
    for class in cat dog; do
        [ -d "$shared/data/catdog/$split/$class" ] || { echo "error: no $shared/data/catdog/$split/$class (set SHARED_DIR)" >&2; exit 1; }
    done
done
rm -rf "$dest"
mkdir -p "$dest/train" "$dest/val"
for split in train val; do
    for class in cat dog; do
        ln -s "$(cd "$shared/data/catdog/$split/$class" && pwd)" "$dest/$split/$class"
    done
done
synth=$(mktemp -d)
trap 'rm -rf "$synth"' EXIT
./target/release/train synth --out "$synth" --train 300 --val 100 --size 224 --seed 7 > /dev/null
for split in train val; do
    mkdir -p "$dest/$split/drawing"
    # Named drawing_NNNNN (the synthetic set numbers its images across both of its classes).
    for file in "$synth/$split"/cat/*.png "$synth/$split"/dog/*.png; do
        name=$(basename "$file")
        mv "$file" "$dest/$split/drawing/drawing_${name#*_}"
    done
done
echo "wrote $dest: cat, dog (links to $shared/data/catdog) and drawing (synthetic), train and val"
