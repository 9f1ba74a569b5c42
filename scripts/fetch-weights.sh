#!/usr/bin/env bash
# Download pretrained backbone weights into data/weights/ and verify them.
#   scripts/fetch-weights.sh vgg16   torchvision's VGG16 (ImageNet), vgg16-397923af.pth, 528 MB
# torchvision names its files after the first 8 hex digits of their SHA-256; the script checks them.
# Needs internet. Offline: copy the file into data/weights/ by hand and rerun to verify it.
set -euo pipefail
cd "$(dirname "$0")/.."
which="${1:-vgg16}"
case "$which" in
    vgg16)
        file="vgg16-397923af.pth"
        url="https://download.pytorch.org/models/$file"
        prefix="397923af"
        ;;
    *)
        echo "usage: scripts/fetch-weights.sh vgg16" >&2
        exit 2
        ;;
esac
mkdir -p data/weights
path="data/weights/$file"
if [ ! -f "$path" ]; then
    echo "downloading $url"
    if ! curl -fL --retry 3 -o "$path.part" "$url"; then
        rm -f "$path.part"
        echo "error: download failed (offline?). Put $file in data/weights/ and rerun to verify it." >&2
        exit 1
    fi
    mv "$path.part" "$path"
fi
sha=$(sha256sum "$path" | cut -d' ' -f1)
if [ "${sha:0:8}" != "$prefix" ]; then
    echo "error: $path has sha256 $sha, expected it to start with $prefix (corrupt download? delete and rerun)" >&2
    exit 1
fi
echo "ok: $path (sha256 $sha)"
