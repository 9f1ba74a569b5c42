#!/usr/bin/env python3
"""Send one of our runs to Weights & Biases as one W&B run, with the official `wandb` SDK.

    scripts/wandb_sync.py RUN_DIR [--project P] [--name N] [--follow]

- config.toml goes to `wandb.config` (the hparams are config values);
- every scalar is logged at its epoch as the step, under our tag (`cam/pointing_game`, …);
- every image tag becomes a `wandb.Image` at its step, captioned with the image's name, its
  true and predicted class and the method (from the run's caption tables), as do the grids,
  the evolution strips and the confusion matrices;
- the caption tables go in as `wandb.Table`s, other text (the config, the strips' notes) as
  `wandb.Html`; the summary holds each scalar's last value and the best validation accuracy.

`--follow` tails a live run: a step is sent once the next one has begun (W&B takes no earlier
step later) and the rest when the run writes its `finished` file, so the maps appear in W&B
while it trains; it gives up (sending what it has) after `--idle-timeout` seconds in which the
event files did not grow. Each invocation makes a new W&B run.

Offline (`WANDB_MODE=offline`) it writes a local run under `./wandb` (or `$WANDB_DIR`) that
`wandb sync` uploads later. Needs `wandb` and `tensorboard` (scripts/setup-venv.sh installs both
into .venv). A missing or malformed run dir is an error (exit 2) saying what is wrong.
"""
import argparse
import glob
import html
import io
import os
import sys
import time
import tomllib


def fail(message):
    print(f"wandb_sync: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_run_dir(run_dir, wait=0.0):
    """The run's config, or exit 2 saying why RUN_DIR is not a run. A run just started has no
    event file until its backbone pass is done: wait up to `wait` seconds for it."""
    if not os.path.isdir(run_dir):
        fail(f"{run_dir} is not a directory")
    config_path = os.path.join(run_dir, "config.toml")
    if not os.path.isfile(config_path):
        fail(f"{run_dir} has no config.toml: not a run directory of `train`")
    try:
        with open(config_path, "rb") as f:
            config = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        fail(f"{config_path} is not valid TOML: {e}")
    deadline = time.monotonic() + wait
    while not glob.glob(os.path.join(run_dir, "events.out.tfevents.*")):
        if time.monotonic() >= deadline:
            fail(f"{run_dir} has no TensorBoard event file ([logging] tensorboard = false?)")
        time.sleep(0.2)
    return config


class Events:
    """The run's TensorBoard records by step: scalars, images (PNG bytes) and text."""

    def __init__(self, run_dir):
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        self.accumulator = EventAccumulator(
            run_dir, size_guidance={"scalars": 0, "tensors": 0, "images": 0}
        )

    def reload(self):
        """Everything written so far: {step: {"scalars": {}, "images": {}, "text": {}}}."""
        try:
            self.accumulator.Reload()
        except Exception as e:  # a record being written, a cut-back event file
            print(f"wandb_sync: warning: reading events: {e}", file=sys.stderr)
        steps = {}

        def at(step):
            return steps.setdefault(step, {"scalars": {}, "images": {}, "text": {}})

        tags = self.accumulator.Tags()
        for tag in tags.get("scalars", []):
            for e in self.accumulator.Scalars(tag):
                at(e.step)["scalars"][tag] = e.value
        for tag in tags.get("tensors", []):
            plugin = self.accumulator.SummaryMetadata(tag).plugin_data.plugin_name
            for e in self.accumulator.Tensors(tag):
                values = e.tensor_proto.string_val
                if plugin == "images":
                    at(e.step)["images"][tag] = list(values[2:])  # width, height, PNGs…
                elif plugin == "text" and values:
                    at(e.step)["text"][tag] = values[0].decode("utf-8", "replace")
        return steps


def caption_tables(texts):
    """{method: {image name: (true, predicted, p)}} from the `<method>/captions` tables."""
    tables = {}
    for tag, markdown in texts.items():
        if not tag.endswith("/captions"):
            continue
        rows = {}
        for line in markdown.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 4 and cells[0] not in ("image", "---"):
                rows[cells[0]] = tuple(cells[1:])
        tables[tag.rsplit("/", 1)[0]] = rows
    return tables


def caption(tag, index, count, tables):
    """`cat_00600: true cat, predicted dog 0.83 (cam)` for an overlay; the tag otherwise."""
    method, _, name = tag.partition("/")
    name = name.rsplit("/", 1)[-1]
    known = tables.get(method, {}).get(name)
    suffix = f" [{index + 1}/{count}]" if count > 1 else ""
    if known:
        true, predicted, p = known
        return f"{name}: true {true}, predicted {predicted} {p} ({method}){suffix}"
    return f"{tag}{suffix}"


def log_step(wandb, step, records):
    """One step's scalars, images and text as one W&B history row at `step`."""
    from PIL import Image

    row = dict(records["scalars"])
    tables = caption_tables(records["text"])
    for tag, pngs in records["images"].items():
        images = [
            wandb.Image(Image.open(io.BytesIO(png)), caption=caption(tag, i, len(pngs), tables))
            for i, png in enumerate(pngs)
        ]
        row[tag] = images[0] if len(images) == 1 else images
    for tag, markdown in records["text"].items():
        if tag.endswith("/captions"):
            rows = caption_tables({tag: markdown})[tag.rsplit("/", 1)[0]]
            data = [[name, *values] for name, values in rows.items()]
            row[tag] = wandb.Table(columns=["image", "true", "predicted", "p"], data=data)
        else:
            row[tag] = wandb.Html(f"<pre>{html.escape(markdown)}</pre>")
    wandb.log(row, step=step)


def summary(run, steps):
    """Each scalar's last value, and the best validation accuracy with its epoch."""
    best = None
    for step in sorted(steps):
        for tag, value in steps[step]["scalars"].items():
            run.summary[tag] = value
            if tag == "accuracy/val" and (best is None or value > best[1]):
                best = (step, value)
    if best:
        run.summary["best/val_accuracy"] = best[1]
        run.summary["best/epoch"] = best[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory of `train` (runs/<name>-<time>)")
    parser.add_argument("--project", default="catdog-cam", help="W&B project (default catdog-cam)")
    parser.add_argument("--name", help="W&B run name (default: the run directory's name)")
    parser.add_argument("--follow", action="store_true", help="tail a live run until it finishes")
    parser.add_argument("--poll", type=float, default=2.0, help="seconds between looks (--follow)")
    parser.add_argument("--idle-timeout", type=float, default=600.0,
                        help="--follow gives up after this many seconds without a new step")
    args = parser.parse_args()
    run_dir = os.path.abspath(args.run_dir)
    config = check_run_dir(run_dir, wait=args.idle_timeout if args.follow else 0.0)
    import wandb

    name = args.name or os.path.basename(run_dir.rstrip("/"))
    run = wandb.init(project=args.project, name=name, config=config,
                     tags=["catdog-cam"], notes=f"synced from {run_dir}")
    events = Events(run_dir)
    sent, last_change, last_size = -1, time.monotonic(), 0
    while True:
        finished = os.path.exists(os.path.join(run_dir, "finished"))
        steps = events.reload()
        # Without --follow, or once the run finished, every step is complete; otherwise the
        # newest step may still be written.
        complete = sorted(steps) if (finished or not args.follow) else sorted(steps)[:-1]
        for step in (s for s in complete if s > sent):
            log_step(wandb, step, steps[step])
            sent, last_change = step, time.monotonic()
            live = " (run in progress)" if not finished else ""
            print(f"wandb_sync: step {step} sent{live}", flush=True)
        if not steps and not args.follow:
            run.finish(exit_code=1)
            fail(f"{run_dir}: no record could be read from its event files")
        if not args.follow or finished:
            break
        # A long epoch still grows the event file: that is activity too.
        size = sum(os.path.getsize(f) for f in glob.glob(os.path.join(run_dir, "events.out.tfevents.*")))
        if size != last_size:
            last_size, last_change = size, time.monotonic()
        if time.monotonic() - last_change > args.idle_timeout:
            for step in (s for s in sorted(steps) if s > sent):
                log_step(wandb, step, steps[step])
                sent = step
            summary(run, steps)
            run.finish(exit_code=1)
            fail(f"nothing written for {args.idle_timeout:.0f} s and no `finished` file: "
                 f"the run stopped? (steps 0..{sent} sent)")
        time.sleep(args.poll)
    summary(run, steps)
    run.finish()
    print(f"wandb_sync: {run_dir} -> W&B run {name} ({sent + 1} steps)")


if __name__ == "__main__":
    main()
