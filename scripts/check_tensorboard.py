#!/usr/bin/env python3
"""Check log directories with TensorBoard's own reader.

Usage: check_tensorboard.py LOGDIR
       check_tensorboard.py --runs RUNS_DIR --epochs N

The second form checks training runs (every run directory below RUNS_DIR): scalars
loss/accuracy train/val at steps 1..N, per-image heatmap tags `<method>/<image>` and
`<method>/grid` at step 0 (before training) and every `every` epochs with decodable PNGs of the
stated size, one evolution strip per image at the end, the originals at step 0,
the config and caption texts, and HParams session info naming the run's methods.

LOGDIR is written by the tensorboard crate's tests (crates/tensorboard/tests/common/mod.rs,
`write_demo`): an HParams experiment in the root run, and runs `cam/` and `gradcam/` with
scalars, images, text and HParams session info. Every value is recomputed here and compared;
the script exits non-zero at the first mismatch, or when the reader finds nothing.
"""
import io
import json
import math
import tomllib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from PIL import Image
from tensorboard.backend.event_processing import data_provider, event_accumulator
from tensorboard.backend.event_processing import plugin_event_multiplexer
from tensorboard.plugins.hparams import plugin_data_pb2

RUNS = [("cam", "gap-linear", 0.001), ("gradcam", "gap-dense", 0.01)]
CONFIG = "# Run config\n\n| key | value |\n|---|---|\n| method | `cam` |"
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)
        print("FAIL:", message)


def load(path):
    acc = event_accumulator.EventAccumulator(
        path,
        size_guidance={
            event_accumulator.COMPRESSED_HISTOGRAMS: 0,
            event_accumulator.IMAGES: 0,
            event_accumulator.AUDIO: 0,
            event_accumulator.SCALARS: 0,
            event_accumulator.HISTOGRAMS: 0,
            event_accumulator.TENSORS: 0,
        },
    )
    acc.Reload()
    return acc


def demo_pixels(width, height, step, sample):
    """The demo image's RGB bytes: R = x, G = y, B = 40·step + 100·sample (mod 256)."""
    blue = (40 * step + 100 * sample) % 256
    return bytes(v for y in range(height) for x in range(width) for v in (x % 256, y % 256, blue))


def hparams_data(acc, tag):
    """HParams summaries carry no value, only plugin content (as PyTorch and TF write them);
    the hparams plugin reads them through PluginTagToContent, as here."""
    content = acc.PluginTagToContent("hparams")[tag]
    return plugin_data_pb2.HParamsPluginData.FromString(content)


def check_image_tensor(acc, method, tag, w, h, samples):
    """Modern image summaries are string tensors [width, height, png...] of the images plugin."""
    check(acc.SummaryMetadata(tag).plugin_data.plugin_name == "images", f"{method} {tag} plugin")
    events = acc.Tensors(tag)
    check([e.step for e in events] == [1, 2, 3], f"{method} {tag} steps {[e.step for e in events]}")
    for event in events:
        strings = event.tensor_proto.string_val
        check(len(strings) == 2 + samples, f"{method} {tag} holds {len(strings)} strings")
        check((int(strings[0]), int(strings[1])) == (w, h), f"{method} {tag} size {strings[:2]}")
        for sample, png_bytes in enumerate(strings[2:]):
            png = Image.open(io.BytesIO(png_bytes))
            check(png.format == "PNG" and png.size == (w, h), f"{method} {tag} decoded size {png.size}")
            check(png.convert("RGB").tobytes() == demo_pixels(w, h, event.step, sample),
                  f"{method} {tag} step {event.step} sample {sample}: pixels differ")


def check_data_provider(logdir):
    """What the web UI reads: TensorBoard's data provider over the whole log directory."""
    multiplexer = plugin_event_multiplexer.EventMultiplexer(
        size_guidance={event_accumulator.IMAGES: 0, event_accumulator.TENSORS: 0,
                       event_accumulator.SCALARS: 0})
    multiplexer.AddRunsFromDirectory(logdir)
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, logdir)
    ctx = None
    try:
        from tensorboard import context
        ctx = context.RequestContext()
    except ImportError:
        pass
    blobs = provider.list_blob_sequences(ctx, experiment_id="", plugin_name="images")
    print("data provider image runs:", {run: sorted(tags) for run, tags in blobs.items()})
    for method, _, _ in RUNS:
        check(set(blobs.get(method, {})) == {"cam/val_00", "shape/w64_h32", "cam/pair"},
              f"data provider: {method} image tags {sorted(blobs.get(method, {}))}")
    seqs = provider.read_blob_sequences(ctx, experiment_id="", plugin_name="images",
                                        downsample=1000,
                                        run_tag_filter=_filter(["cam"], ["shape/w64_h32"]))
    series = seqs["cam"]["shape/w64_h32"]
    check([d.step for d in series] == [1, 2, 3], "data provider: shape/w64_h32 steps")
    for datum in series:
        keys = [b.blob_key for b in datum.values]
        check(len(keys) == 3, f"data provider: blob count {len(keys)}")
        width, height = provider.read_blob(ctx, blob_key=keys[0]), provider.read_blob(ctx, blob_key=keys[1])
        check((width, height) == (b"64", b"32"), f"data provider: size {(width, height)}")
        png = Image.open(io.BytesIO(provider.read_blob(ctx, blob_key=keys[2])))
        check(png.size == (64, 32) and png.convert("RGB").tobytes() == demo_pixels(64, 32, datum.step, 0),
              f"data provider: pixels at step {datum.step}")
    hparams = multiplexer.PluginRunToTagToContent("hparams")
    print("hparams plugin runs:", {run: sorted(tags) for run, tags in hparams.items()})
    check("_hparams_/experiment" in hparams.get(".", {}), "hparams plugin: no experiment in the root run")
    for method, _, _ in RUNS:
        check({"_hparams_/session_start_info", "_hparams_/session_end_info"} <= set(hparams.get(method, {})),
              f"hparams plugin: {method} lacks session info")


class Served:
    """The real TensorBoard server on `logdir`, started with scripts/tensorboard.sh (the flags
    users get); `get` reads its HTTP API as the web UI does. Always stopped on exit."""

    def __init__(self, logdir):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tensorboard.sh")
        self.server = subprocess.Popen([script, logdir], env={**os.environ, "PORT": str(port)},
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        os.killpg(self.server.pid, signal.SIGTERM)
        try:
            self.server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.server.pid, signal.SIGKILL)
            self.server.wait()


def check_server(logdir):
    """Read images and HParams of the demo log over the real server's HTTP API."""
    with Served(logdir) as served:
        check_demo_server(served.get)


def check_demo_server(get):
    """The demo log's images and HParams, as the server serves them."""
    deadline = time.time() + 90
    tags = {}
    while time.time() < deadline:
        try:
            tags = json.loads(get("/data/plugin/images/tags"))
            if all(len(tags.get(m, {})) == 3 for m, _, _ in RUNS):
                break
        except OSError:
            pass
        time.sleep(1)
    check(all(len(tags.get(m, {})) == 3 for m, _, _ in RUNS), f"server: image tags {tags}")
    for tag, (w, h), sample in [("shape/w64_h32", (64, 32), 0), ("cam/pair", (48, 40), 1)]:
        query = urllib.parse.urlencode({"run": "gradcam", "tag": tag, "sample": sample})
        entries = json.loads(get(f"/data/plugin/images/images?{query}"))
        check([e["step"] for e in entries] == [1, 2, 3], f"server: {tag} sample {sample} steps {entries}")
        for entry in entries:
            png = Image.open(io.BytesIO(get(f"/data/plugin/images/individualImage?{entry['query']}")))
            check(png.size == (w, h) and png.convert("RGB").tobytes()
                  == demo_pixels(w, h, entry["step"], sample),
                  f"server: {tag} sample {sample} step {entry['step']} pixels")
    groups = json.loads(get("/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_SUCCESS"], "colParams": [],
        "startIndex": 0, "sliceSize": 10}))["sessionGroups"]
    served = {g["hparams"]["method"]: g for g in groups}
    check(sorted(served) == ["cam", "gradcam"], f"server: hparams session groups {sorted(served)}")
    for i, (method, head, lr) in enumerate(RUNS):
        group = served.get(method, {"hparams": {}, "metricValues": []})
        check(group["hparams"].get("head") == head and group["hparams"].get("learning_rate") == lr,
              f"server: {method} hparams {group['hparams']}")
        metrics = {m["name"]["tag"]: m["value"] for m in group["metricValues"]}
        check(abs(metrics.get("val/accuracy", -1) - (0.9 + 0.01 * i)) < 1e-6,
              f"server: {method} metric columns {metrics}")
    print("server: images and hparams served")


def _filter(runs, tags):
    from tensorboard.data import provider as provider_module
    return provider_module.RunTagFilter(runs=runs, tags=tags)


def main(logdir):
    root = load(logdir)
    tags = root.Tags()
    print("root tags:", {k: v for k, v in tags.items() if v})
    try:
        has_experiment = "_hparams_/experiment" in root.PluginTagToContent("hparams")
    except KeyError:  # no hparams plugin data at all
        has_experiment = False
    check(has_experiment, "root run has no _hparams_/experiment")
    if has_experiment:
        exp = hparams_data(root, "_hparams_/experiment").experiment
        names = [(h.name, h.type) for h in exp.hparam_infos]
        check(names == [("method", 1), ("head", 1), ("learning_rate", 3), ("freeze_backbone", 2)],
              f"experiment hparams {names}")
        check([v.string_value for v in exp.hparam_infos[0].domain_discrete.values] == ["cam", "gradcam"],
              "method domain")
        interval = exp.hparam_infos[2].domain_interval
        check((interval.min_value, interval.max_value) == (1e-5, 1.0), "learning_rate interval")
        check([m.name.tag for m in exp.metric_infos] == ["val/accuracy", "train/loss"], "metric infos")

    found = 0
    for i, (method, head, lr) in enumerate(RUNS):
        acc = load(os.path.join(logdir, method))
        tags = acc.Tags()
        print(f"run {method} tags:", {k: v for k, v in tags.items() if v})
        found += sum(len(v) for v in tags.values() if isinstance(v, list))

        loss = [(e.step, e.value) for e in acc.Scalars("train/loss")]
        check(loss == [(s, pytest_f32(1.0 / (s + 1))) for s in range(5)], f"{method} train/loss {loss}")
        accuracy = [(e.step, e.value) for e in acc.Scalars("val/accuracy")]
        expected = [(s, pytest_f32(0.5 + 0.1 * s + 0.01 * i)) for s in range(5)]
        check(all(a[0] == b[0] and abs(a[1] - b[1]) < 1e-6 for a, b in zip(accuracy, expected))
              and len(accuracy) == 5, f"{method} val/accuracy {accuracy}")
        nan = acc.Scalars("weird/nan")
        check(len(nan) == 1 and math.isnan(nan[0].value), f"{method} NaN scalar {nan}")

        for tag, (w, h), samples in [("cam/val_00", (224, 224), 1), ("shape/w64_h32", (64, 32), 1),
                                      ("cam/pair", (48, 40), 2)]:
            check_image_tensor(acc, method, tag, w, h, samples)

        text = acc.Tensors("config")
        check(len(text) == 1 and text[0].tensor_proto.string_val[0].decode() == CONFIG, f"{method} text")
        check(acc.SummaryMetadata("config").plugin_data.plugin_name == "text", f"{method} text plugin")

        start = hparams_data(acc, "_hparams_/session_start_info").session_start_info
        hp = start.hparams
        check(hp["method"].string_value == method and hp["head"].string_value == head
              and hp["learning_rate"].number_value == lr and hp["freeze_backbone"].bool_value is True,
              f"{method} session hparams {dict(hp)}")
        check(start.start_time_secs == 1_700_000_100.0, f"{method} start time")
        end = hparams_data(acc, "_hparams_/session_end_info").session_end_info
        check(end.status == 1 and end.end_time_secs == 1_700_000_200.0, f"{method} session end")

    check(found > 0, "the reader found no data at all")
    check_data_provider(logdir)
    check_server(logdir)
    if failures:
        print(f"{len(failures)} CHECKS FAILED")
        return 1
    print("ALL CHECKS PASSED")
    return 0


def pytest_f32(x):
    """Round a Python float to float32, as the event file stores scalars."""
    import struct
    return struct.unpack("f", struct.pack("f", x))[0]


def check_png_tensor(acc, run, tag, steps):
    events = acc.Tensors(tag)
    check([e.step for e in events] == steps, f"{run} {tag}: steps {[e.step for e in events]}, expected {steps}")
    for event in events:
        strings = event.tensor_proto.string_val
        w, h = int(strings[0]), int(strings[1])
        for png_bytes in strings[2:]:
            png = Image.open(io.BytesIO(png_bytes))
            check(png.format == "PNG" and png.size == (w, h), f"{run} {tag} step {event.step}: PNG {png.size} vs {(w, h)}")


def check_score_scalars(acc, run, metrics_csv, methods):
    """Every per-method score column of metrics.csv (localization, faithfulness) is the scalar
    `<method>/<score>`, every agreement column `<a>_vs_<b>_<measure>` the scalar
    `agreement/<a>_vs_<b>/<measure>`, at every epoch and with the same value."""
    import csv
    rows = list(csv.DictReader(open(metrics_csv)))
    scalars = set(acc.Tags()["scalars"])
    checked = 0
    for column in rows[0].keys():
        tag = None
        for measure in ("spearman", "top20_iou"):
            if "_vs_" in column and column.endswith("_" + measure):
                tag = f"agreement/{column[:-len(measure) - 1]}/{measure}"
        for method in sorted(methods, key=len, reverse=True):
            if tag is None and column.startswith(method + "_"):
                tag = f"{method}/{column[len(method) + 1:]}"
        if tag is None:
            continue
        got = {e.step: e.value for e in acc.Scalars(tag)} if tag in scalars else {}
        # An empty cell: the logger did not run that epoch (`every` > 1), so no scalar either.
        scored = [int(r["epoch"]) for r in rows if r[column] != ""]
        check(scored and sorted(got) == scored, f"{run} scalar {tag}: steps {sorted(got)}, CSV {scored}")
        for row in (r for r in rows if int(r["epoch"]) in scored):
            want = float(row[column])
            have = got.get(int(row["epoch"]))
            same = have is not None and (have == pytest_f32(want) or (math.isnan(have) and math.isnan(want)))
            check(same,
                  f"{run} scalar {tag} epoch {row['epoch']}: {have} != {want}")
        checked += 1
    print(f"  {checked} score scalars match metrics.csv")


def check_runs_server(get, runs):
    """What a user sees of training runs, read through the real server: one run per run (the
    baselines are tags of the run, not runs), each localization score charted with its
    baselines (custom scalars), evolution strips served with frames of at least 112 px, and
    HParams trial names that differ in the ~15 characters the table's first column shows."""
    deadline, listed, scalars = time.time() + 90, [], {}
    while time.time() < deadline:
        try:
            listed = json.loads(get("/data/runs"))
            scalars = json.loads(get("/data/plugin/scalars/tags"))
            if sorted(listed) == sorted(runs) and all(r in scalars for r in runs):
                break
        except OSError:
            pass
        time.sleep(1)
    check(sorted(listed) == sorted(runs), f"server: runs {listed}, expected one per run {runs}")
    layout = json.loads(get("/data/plugin/custom_scalars/layout"))
    charts = [c for cat in layout.get("category", []) for c in cat["chart"]]
    scored = strips = 0
    for run in runs:
        tags = scalars.get(run, {})
        baselines = [t for t in tags if t.startswith("baseline_")]
        for tag in baselines:
            score = tag.split("/", 1)[1]
            for method_tag in (t for t in tags if t.endswith("/" + score) and not t.startswith("baseline_")):
                chart = [c for c in charts if c["title"] == method_tag]
                check(len(chart) >= 1, f"server: no custom scalars chart for {method_tag}")
                drawn = set()
                for regex in (chart[0]["multiline"]["tag"] if chart else []):
                    query = urllib.parse.urlencode({"run": run, "tag": regex})
                    answer = json.loads(get(f"/data/plugin/custom_scalars/scalars?{query}"))
                    drawn |= {t for t, events in answer["tag_to_events"].items() if events}
                check({method_tag, tag} <= drawn, f"server: {run} chart {method_tag} draws {sorted(drawn)}")
                scored += 1
        check(not baselines or scored > 0, f"server: {run} has baselines but no chart drew one")
        images = json.loads(get("/data/plugin/images/tags")).get(run, {})
        evolution = [t for t in images if "/evolution/" in t]
        check(len(evolution) > 0 or not any("/" in t for t in images),
              f"server: {run} serves no evolution strip")
        for tag in evolution:
            query = urllib.parse.urlencode({"run": run, "tag": tag, "sample": 0})
            entry = json.loads(get(f"/data/plugin/images/images?{query}"))[-1]
            png = Image.open(io.BytesIO(get(f"/data/plugin/images/individualImage?{entry['query']}")))
            # Frames of side f, up to STRIP_COLUMNS (3) a row, 4-px gaps (callbacks' grid.rs).
            frames = frames_in_strip(get, run, tag)
            columns = min(3, frames)
            rows = -(-frames // columns)
            frame = min((png.size[0] - 4 * (columns - 1)) / columns, (png.size[1] - 4 * (rows - 1)) / rows)
            check(frame >= 112, f"server: {run} {tag}: {png.size} strip of {frames} has frames of {frame:.0f} px")
            strips += 1
    groups = json.loads(get("/data/plugin/hparams/session_groups", {
        "experimentName": "", "allowedStatuses": ["STATUS_SUCCESS", "STATUS_UNKNOWN"], "colParams": [],
        "startIndex": 0, "sliceSize": 1000}))["sessionGroups"]
    shown = [g["name"][:15] for g in groups]
    check(len(groups) == len(runs) and len(set(shown)) == len(shown),
          f"server: HParams trial names {[g['name'] for g in groups]} (one per run, first 15 characters distinct)")
    print(f"server: {len(runs)} runs listed, {scored} score charts with their baselines, {strips} strips "
          f"and HParams names {shown} checked")


def frames_in_strip(get, run, strip_tag):
    """How many frames a method's evolution strips hold: the steps its `<method>/evolution`
    text lists ("... steps 0, 1, 2 left to right ...")."""
    import re
    method = strip_tag.split("/", 1)[0]
    query = urllib.parse.urlencode({"run": run, "tag": f"{method}/evolution"})
    texts = json.loads(get(f"/data/plugin/text/text?{query}"))
    found = re.search(r"steps ([0-9, ]+) left to right", texts[-1]["text"]) if texts else None
    check(found is not None, f"server: {run} {method}/evolution text does not list the steps")
    return len(found.group(1).split(",")) if found else 1


def check_runs(runs_dir, epochs):
    runs = sorted(d for d in os.listdir(runs_dir)
                  if os.path.isdir(os.path.join(runs_dir, d)) and not d.startswith(".")
                  and any(f.startswith("events.out.tfevents.") for f in os.listdir(os.path.join(runs_dir, d))))
    check(len(runs) > 0, f"no runs with event files in {runs_dir}")
    steps = list(range(1, epochs + 1))
    experiments = 0
    for run in runs:
        acc = load(os.path.join(runs_dir, run))
        tags = acc.Tags()
        print(f"run {run}: {len(tags['scalars'])} scalar tags, {len(tags['tensors'])} tensor tags")
        for tag in ["loss/train", "loss/val", "accuracy/train", "accuracy/val"]:
            got = [e.step for e in acc.Scalars(tag)] if tag in tags["scalars"] else []
            check(got == steps, f"{run} scalar {tag}: steps {got}")
        try:
            hp = acc.PluginTagToContent("hparams")
        except KeyError:
            hp = {}
        check("_hparams_/session_start_info" in hp and "_hparams_/session_end_info" in hp, f"{run}: HParams session info")
        experiments += "_hparams_/experiment" in hp
        methods = []
        if "_hparams_/session_start_info" in hp:
            start = plugin_data_pb2.HParamsPluginData.FromString(hp["_hparams_/session_start_info"]).session_start_info
            # Methods are joined with "+"; "gradcam++" contains two of them.
            joined = start.hparams["method"].string_value.replace("gradcam++", "GRADCAMPP")
            methods = [m.replace("GRADCAMPP", "gradcam++") for m in joined.split("+")]
            print(f"  hparams: { {k: (v.string_value or v.number_value) for k, v in start.hparams.items()} }")
        check("config" in tags["tensors"], f"{run}: no config text")
        originals = [t for t in tags["tensors"] if t.startswith("originals/")]
        check(len(originals) > 0, f"{run}: no original images")
        for tag in originals:
            check_png_tensor(acc, run, tag, [0])
        # Each method renders every `every` epochs (its [[callbacks]] entry in the run's config).
        with open(os.path.join(runs_dir, run, "config.toml"), "rb") as f:
            every = {c["kind"]: c.get("every", 1) for c in tomllib.load(f).get("callbacks", [])}
        for method in methods:
            evolution = [t for t in tags["tensors"] if t.startswith(method + "/evolution/")]
            per_image = [t for t in tags["tensors"] if t.startswith(method + "/") and t not in evolution
                         and t not in (f"{method}/grid", f"{method}/captions", f"{method}/evolution")]
            check(len(per_image) > 0, f"{run}: no per-image {method} tags")
            # Step 0: the maps before the first update; then every `every` epochs.
            rendered = [0] + [s for s in steps if s % every.get(method, 1) == 0]
            print(f"  {method}: {len(per_image)} per-image tags, grid, captions at steps {rendered}")
            for tag in per_image + [f"{method}/grid"]:
                check_png_tensor(acc, run, tag, rendered)
            check(f"{method}/captions" in tags["tensors"], f"{run}: no {method}/captions text")
            # One evolution strip per image, written once at the end (the last drawn step).
            check(len(evolution) == len(per_image), f"{run}: {len(evolution)} {method} evolution strips for {len(per_image)} images")
            for tag in evolution:
                check_png_tensor(acc, run, tag, [rendered[-1]])
        check_score_scalars(acc, run, os.path.join(runs_dir, run, "metrics.csv"), methods)
    check(experiments == len(runs), "every run carries the HParams experiment")
    with Served(runs_dir) as served:
        check_runs_server(served.get, runs)
    if failures:
        print(f"{len(failures)} CHECKS FAILED")
        return 1
    print("ALL CHECKS PASSED")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--runs" and sys.argv[3] == "--epochs":
        sys.exit(check_runs(sys.argv[2], int(sys.argv[4])))
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
