#!/usr/bin/env python3
"""Check a W&B offline run written by scripts/wandb_sync.py against our run (the tests use it).

    check_wandb.py RUN_DIR WANDB_RUN_DIR

Reads the offline run's `run-*.wandb` log back (leveldb-log framing: 32 KiB blocks of records
with a crc32, length and type; each record a `wandb_internal_pb2.Record`) and asserts that every
scalar of the run's TensorBoard events is in the W&B history at its step with its value, every
image tag at every step has its image files under `files/media`, the config is there, and the
text and caption tables came along. Prints the counts; exits 1 with what is missing.
"""
import json
import os
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wandb_sync import Events  # noqa: E402

BLOCK = 32768
HEADER = 7  # crc32 (4), length (2), type (1)


def records(path):
    """The protobuf records of a `.wandb` file."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = open(path, "rb").read()
    ident, magic, _ = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run log")
    pos, buf = 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # the block's zero padding
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if (crc, length, kind) == (0, 0, 0):
            pos += left
            continue
        chunk = data[pos + HEADER:pos + HEADER + length]
        if zlib.crc32(bytes([kind]) + chunk) & 0xFFFFFFFF != crc:
            raise ValueError(f"{path}: bad checksum at byte {pos}")
        pos += HEADER + length
        buf = chunk if kind in (1, 2) else buf + chunk  # full, first | middle, last
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(buf)
            yield record


def history(path):
    """{step: {key: value}}; a media value is a dict (`_type`, `path`, `caption`, …)."""
    rows = {}
    config = {}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        # wandb.init(config=…) arrives with the run record; later changes as config records.
        updates = {"config": lambda: r.config.update, "run": lambda: r.run.config.update}
        for item in updates.get(kind, lambda: [])():
            config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        if kind != "history":
            continue
        row = rows.setdefault(r.history.step.num, {})
        for item in r.history.item:
            keys = [item.key] if item.key else list(item.nested_key)
            d = row
            for k in keys[:-1]:
                d = d.setdefault(k, {})
            d[keys[-1]] = json.loads(item.value_json)
    return rows, config


def media_paths(value):
    """The media files a logged value refers to (an image, or a list of them)."""
    if isinstance(value, dict):
        if value.get("_type") == "images/separated":
            return [f"media/images/{name}" for name in value.get("filenames", [])]
        return [value["path"]] if "path" in value else []
    return []


def main():
    run_dir, wandb_dir = sys.argv[1:3]
    [log] = [f for f in os.listdir(wandb_dir) if f.endswith(".wandb")]
    rows, config = history(os.path.join(wandb_dir, log))
    steps = Events(run_dir).reload()
    missing, scalars, images = [], 0, 0
    for step, records in sorted(steps.items()):
        row = rows.get(step, {})
        for tag, value in records["scalars"].items():
            got = row.get(tag)
            if not isinstance(got, (int, float)) or abs(got - value) > 1e-6 * max(1, abs(value)):
                missing.append(f"scalar {tag} at step {step}: {got!r}, expected {value}")
            scalars += 1
        for tag, pngs in records["images"].items():
            paths = media_paths(row.get(tag))
            files = [p for p in paths if os.path.isfile(os.path.join(wandb_dir, "files", p))]
            if len(files) != len(pngs):
                missing.append(f"image {tag} at step {step}: {len(files)} files of {len(pngs)}")
            images += 1
        for tag in records["text"]:
            if not isinstance(row.get(tag), dict):
                missing.append(f"text {tag} at step {step}")
    if scalars == 0 or images == 0:
        missing.append(f"nothing to check: {scalars} scalars and {images} image tags in {run_dir}")
    if "run" not in config or "model" not in config:
        missing.append(f"config: {sorted(config)}")
    print(f"check_wandb: {scalars} scalars and {images} image tags over {len(steps)} steps; "
          f"{len(missing)} missing")
    if missing:
        print("\n".join(missing[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
