"""Grid of every method's overlay for the README (docs/methods-effnet-grid.jpg).

Run `train explain` once per method into OUT/<method>/, then:
    .venv/bin/python scripts/methods_grid.py OUT docs/methods-effnet-grid.jpg PHOTO_STEM [PHOTO_STEM…]
e.g. for m in cam gradcam … random guided-backprop guided-gradcam; do target/release/train explain --backbone efficientnet-lite0 \
  --weights data/weights/efficientnet-lite0-57934424.pth --head gap-linear \
  --head-weights runs/effnet-cam-…/head.safetensors --method $m --input photos/ --out-dir out/$m; done
"""
import sys

from PIL import Image, ImageDraw

METHODS = ("cam gradcam gradcam++ layercam hirescam xgradcam gradcam-elementwise eigencam "
           "eigengradcam scorecam ablationcam random guided-backprop guided-gradcam").split()
TILE, LABEL, PER_ROW = 224, 18, 7


def main(out_dir, target, stems):
    rows = len(stems) * ((len(METHODS) + PER_ROW - 1) // PER_ROW)
    grid = Image.new("RGB", (TILE * PER_ROW, (TILE + LABEL) * rows), "white")
    draw = ImageDraw.Draw(grid)
    for p, stem in enumerate(stems):
        for i, method in enumerate(METHODS):
            tile = Image.open(f"{out_dir}/{method}/{stem}.png").convert("RGB")
            if method.startswith("guided"):  # photo | gradient: keep the gradient
                tile = tile.crop((tile.width // 2, 0, tile.width, tile.height))
            tile = tile.resize((TILE, TILE))
            row = p * (len(METHODS) // PER_ROW) + i // PER_ROW
            x, y = (i % PER_ROW) * TILE, row * (TILE + LABEL)
            grid.paste(tile, (x, y + LABEL))
            draw.text((x + 4, y + 3), method, fill="black")
    grid.save(target, quality=85)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
