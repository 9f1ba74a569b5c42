"""Reference figures for the WSOL localization scores (crates/callbacks/tests/fixtures/wsol/).

MaxBoxAcc (multi-contour, V2 levels 0.3/0.5/0.7) and PxAP computed the way
clovaai/wsolevaluation's evaluation.py does (cv2.threshold / cv2.findContours(RETR_TREE,
CHAIN_APPROX_SIMPLE) / cv2.boundingRect, its IoU and its PxAP formula), on small hand-made
maps: blobs, a ring with a hole, noise, regions touching the border, values on bin edges.

    .venv-torch/bin/pip install opencv-python-headless numpy
    .venv-torch/bin/python scripts/make_wsol_fixture.py
"""
import json
from pathlib import Path

import cv2
import numpy as np

OUT = Path(__file__).resolve().parent.parent / "crates/callbacks/tests/fixtures/wsol/expected.json"
W, H = 56, 40
THRESHOLDS = np.arange(0, 1, 0.01)
LEVELS = (0.3, 0.5, 0.7)


def boxes_at(scoremap, threshold):
    image = np.expand_dims((scoremap * 255).astype(np.uint8), 2)
    _, binary = cv2.threshold(src=image, thresh=int(threshold * np.max(image)), maxval=255,
                              type=cv2.THRESH_BINARY)
    contours = cv2.findContours(image=binary, mode=cv2.RETR_TREE,
                                method=cv2.CHAIN_APPROX_SIMPLE)[0]
    if len(contours) == 0:
        return [[0, 0, 0, 0]]
    boxes = []
    for c in contours:
        x, y, w, h = cv2.boundingRect(c)
        boxes.append([x, y, min(x + w, W - 1), min(y + h, H - 1)])
    return boxes


def iou(a, b):
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return 0.0 if union <= 0 else inter / union


def pxap(maps, masks):
    edges = np.append(THRESHOLDS, [1.0, 2.0, 3.0])
    pos, neg = np.zeros(len(edges) - 1), np.zeros(len(edges) - 1)
    for m, k in zip(maps, masks):
        pos += np.histogram(m[k == 1], bins=edges)[0]
        neg += np.histogram(m[k == 0], bins=edges)[0]
    tp, fp = pos[::-1].cumsum(), neg[::-1].cumsum()
    fn = pos.sum() - tp
    nonzero = (tp + fp) != 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision, recall = tp / (tp + fp), tp / (tp + fn)
    return float((precision[1:] * np.diff(recall))[nonzero[1:]].sum())


def gaussian(cx, cy, sx, sy):
    y, x = np.mgrid[0:H, 0:W]
    return np.exp(-((x - cx) ** 2 / (2 * sx ** 2) + (y - cy) ** 2 / (2 * sy ** 2)))


def normalise(m):
    m = m - m.min()
    return (m / m.max()).astype(np.float32) if m.max() > 0 else m.astype(np.float32)


def main():
    rng = np.random.default_rng(3)
    ring = gaussian(20, 20, 9, 9) - 1.2 * gaussian(20, 20, 3, 3)
    maps = [
        normalise(gaussian(28, 20, 8, 6)),
        normalise(gaussian(10, 10, 4, 4) + gaussian(45, 30, 5, 4)),
        normalise(ring),
        normalise(rng.random((H, W)) ** 3),
        normalise(gaussian(0, 39, 10, 8) + 0.5 * gaussian(55, 0, 6, 6)),
        (np.round(rng.random((H, W)) * 100) / 100).astype(np.float32),
        np.zeros((H, W), np.float32),
    ]
    truths = [[[20, 14, 36, 26]], [[40, 25, 52, 36], [5, 5, 15, 15]], [[11, 11, 29, 29]],
              [[0, 0, 55, 39]], [[0, 30, 12, 39]], [[10, 10, 30, 30]], [[5, 5, 20, 20]]]
    masks = []
    for t in truths:
        k = np.zeros((H, W), np.uint8)
        x0, y0, x1, y1 = t[0]
        k[y0:y1 + 1, x0:x1 + 1] = 1
        masks.append(k)
    best = [[max(iou(b, t) for b in boxes_at(m, th) for t in truth) for th in THRESHOLDS]
            for m, truth in zip(maps, truths)]
    maxboxacc = [max(sum(row[i] >= level for row in best) for i in range(len(THRESHOLDS)))
                 / len(maps) for level in LEVELS]
    fixture = {
        "width": W, "height": H,
        "maps": [[float(v) for v in m.ravel()] for m in maps],
        "boxes": truths,
        "masks": [[int(v) for v in k.ravel()] for k in masks],
        "best_iou_per_threshold": best,
        "maxboxacc": maxboxacc,
        "pxap": pxap(maps, masks),
        "opencv": cv2.__version__,
    }
    OUT.write_text(json.dumps(fixture) + "\n")
    print(cv2.__version__, maxboxacc, fixture["pxap"])


if __name__ == "__main__":
    main()
