#!/usr/bin/env python3
"""The README's first image: one validation image's overlays from a run, at chosen steps, in
one row, each labelled with its step (the run's own PNGs, `images/<method>/epoch-NNN/<image>.png`,
which carry the true and predicted class in their caption band).

Usage: readme_strip.py RUN_DIR METHOD IMAGE OUT.jpg [STEPS]   (STEPS: comma-separated, default 0,1,2,3,4,10)
Needs Pillow (in .venv: scripts/setup-venv.sh).
"""
import os
import sys

from PIL import Image, ImageDraw

if len(sys.argv) not in (5, 6):
    sys.exit(__doc__)
run, method, name, out = sys.argv[1:5]
steps = [int(s) for s in (sys.argv[5] if len(sys.argv) == 6 else "0,1,2,3,4,10").split(",")]
frames = []
for step in steps:
    path = os.path.join(run, "images", method, f"epoch-{step:03d}", f"{name}.png")
    if not os.path.isfile(path):
        sys.exit(f"no {path}")
    frames.append(Image.open(path).convert("RGB"))
w, h = frames[0].size
gap, label = 4, 16
strip = Image.new("RGB", (len(frames) * (w + gap) - gap, h + label), "white")
draw = ImageDraw.Draw(strip)
for i, (step, frame) in enumerate(zip(steps, frames)):
    x = i * (w + gap)
    strip.paste(frame, (x, 0))
    draw.text((x + 4, h + 3), "untrained (step 0)" if step == 0 else f"epoch {step}", fill="black")
strip.save(out, quality=88)
print(f"{out}: {strip.size[0]}x{strip.size[1]}, steps {steps}")
