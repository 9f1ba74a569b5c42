#!/usr/bin/env bash
# Download the seed blog's data set, cats_and_dogs_filtered (train 1000 cats + 1000 dogs,
# validation 500 + 500; a subset of Kaggle's Dogs vs. Cats), into data/.
# Needs internet. Offline: copy cats_and_dogs_filtered.zip into data/ by hand and rerun.
#
# Integrity: Google publishes no checksum for this zip and none could be verified from this
# project's (offline) machines, so the script checks the archive's CRCs (`unzip -t`) and the exact
# image counts, and prints the SHA-256 so you can pin it: EXPECTED_SHA256=<hex> scripts/fetch-data.sh
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in curl unzip sha256sum; do
    command -v "$tool" > /dev/null || { echo "error: $tool is not installed" >&2; exit 1; }
done
url="https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
zip="data/cats_and_dogs_filtered.zip"
mkdir -p data
if [ ! -f "$zip" ]; then
    echo "downloading $url"
    if ! curl -fL --retry 3 -o "$zip.part" "$url"; then
        rm -f "$zip.part"
        echo "error: download failed (offline?). Put cats_and_dogs_filtered.zip in data/ and rerun." >&2
        exit 1
    fi
    mv "$zip.part" "$zip"
fi
sha=$(sha256sum "$zip" | cut -d' ' -f1)
echo "sha256 $sha  $zip"
if [ -n "${EXPECTED_SHA256:-}" ] && [ "$sha" != "$EXPECTED_SHA256" ]; then
    echo "error: sha256 mismatch (expected $EXPECTED_SHA256)" >&2
    exit 1
fi
unzip -tq "$zip" > /dev/null || { echo "error: $zip is corrupt; delete it and rerun" >&2; exit 1; }
unzip -qo "$zip" -d data
for split_count in "train/cats 1000" "train/dogs 1000" "validation/cats 500" "validation/dogs 500"; do
    set -- $split_count
    n=$(find "data/cats_and_dogs_filtered/$1" -name '*.jpg' | wc -l)
    [ "$n" -eq "$2" ] || { echo "error: data/cats_and_dogs_filtered/$1 has $n images, expected $2" >&2; exit 1; }
done
echo "ok: data/cats_and_dogs_filtered (train 2000, validation 1000)"
