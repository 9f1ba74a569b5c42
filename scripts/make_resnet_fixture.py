"""Reference fixtures for torchvision ResNets (loading their checkpoints, forward pass, CAMs).

One run builds a torchvision ResNet with torchvision's own state_dict key names (`conv1`,
`bn1`, `layer1.0.conv1`, …, `layerN.0.downsample.0/1`, `fc`), optionally with every channel
width divided by `--width-divisor` (stem 64/D, stage planes 64/D … 512/D, Bottleneck expansion
4 kept), gives it non-trivial BatchNorm statistics and a K-class head, runs it on a few photos
from `$SHARED/data/catdog` and writes the model and what pytorch-grad-cam 1.5.7 makes of it:

    .venv-torch/bin/python scripts/make_resnet_fixture.py --arch resnet18 --width-divisor 8 \\
        --seed 3 --classes 3 --size 160x224 --fixed-class 2 --maps-f16 \\
        --photos val/cat/cat.4021.jpg,oxford_loc/dog/boxer_143.jpg \\
        --out crates/train/tests/fixtures/resnet18-w8 [--shared /work/shared] [--no-legacy]

The two committed fixtures are crates/train/tests/fixtures/resnet18-w8 (the command above)
and crates/train/tests/fixtures/resnet50-w8 (`--arch resnet50 --width-divisor 8 --seed 4
--classes 4 --size 192x128 --fixed-class 1 --maps-f16 --photos val/dog/dog.4057.jpg,
oxford_loc/cat/Bengal_123.jpg --no-legacy --no-pth`); their meta.json holds the exact command line.
Full-width checks (torchvision's real shapes; ~140-290 MB each, kept out of git) are made the
same way with `--width-divisor 1` into /tmp and run through `train explain` by hand.

Files written into `--out`:
  resnet.safetensors   the whole state_dict (every key, `num_batches_tracked` int64 included)
  resnet.pth           the same with torch.save (zip format); resnet-legacy.pth with
                       `_use_new_zipfile_serialization=False` (skipped with --no-legacy)
  head.safetensors     {weight [K, C], bias [K]}: the fc
  expected.safetensors input [N,3,H,W] (float32; RGB, PIL bilinear resize, /255, ImageNet
                       mean/std), logits [N,K] (float32), with --activations layer3 and layer4
                       (module outputs), and CAMs [N,H,W] (float16 with --maps-f16) with
                       pytorch-grad-cam's default normalisation: gradcam_layer4,
                       gradcampp_layer4, layercam_layer4, hirescam_layer4, gradcam_layer3,
                       hirescam_layer3 for the predicted class (targets=None, the library's
                       argmax) and the same six with the suffix `_class` for
                       ClassifierOutputTarget(--fixed-class)
  meta.json            arguments, predicted classes, logits, versions, command line

How the weights are made: torch.manual_seed(seed), then the ResNet is built in torchvision's
order with torchvision's init (Kaiming-normal fan_out convs, nn.Linear's default fc); with
D = 1 the state_dict equals `torchvision.models.<arch>(num_classes=K)`'s under the same seed
(checked). Then every BatchNorm, in execution order on the photos, gets running_mean = μ +
0.2·σ·N(0,1), running_var = σ²·U(0.5, 2), weight ~ U(0.6, 1.4) (× 0.5 for the last BatchNorm
of each residual branch, bn2 / bn3), bias ~ N(0, 0.2), where μ, σ are the per-channel
statistics of that BatchNorm's input on the photos (earlier BatchNorms already set), so
activations stay O(1) (max |layer4| ~10) even through ResNet-152. Last, the fc: its init
direction less its part along the mean pooled feature f̄, scaled to a logit spread (std over
photos and classes) of 2.5, plus a positive part along f̄ so that every class's raw score w·f
is > 0 on every photo (GradCAM's layer4 gradients are uniform, so its maps are then never all
zero); bias = −w·f̄ + N(0, 0.3). If fewer than two classes are predicted, a top-1 margin is
under 0.1 or a CAM is all zero, the fc weight is redrawn (nn.Linear's init from a generator
seeded seed·1000 + try) and `fc_attempt` in meta.json says which draw was kept.

Sanity checks (the script fails otherwise): finite everything, maps in [0, 1] and not all
zero, at least two predicted classes, the library's argmax equals ours, and folding every
BatchNorm into its conv (w·γ/√(var+eps), β − mean·γ/√(var+eps), eps 1e-5) and running the
network in float64 reproduces the saved float32 logits to 1e-4 (max |diff| / max |logit|);
the files are read back and compared with the state_dict. Everything but resnet-legacy.pth is
byte-for-byte reproducible; the legacy format names its storages by memory address.

Note: with a GAP + linear head the gradient at layer4 is uniform in space, so hirescam_layer4
equals gradcam_layer4 (to float rounding); only a layer3 HiResCAM would tell them apart.
"""
import argparse
import copy
import json
import math
import os
import shlex
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from PIL import Image
from safetensors.torch import load_file, save_file
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

import pytorch_grad_cam
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

ARCHS = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet34": (BasicBlock, [3, 4, 6, 3]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
    "resnet101": (Bottleneck, [3, 4, 23, 3]),
    "resnet152": (Bottleneck, [3, 8, 36, 3]),
}
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
METHODS = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus, "layercam": LayerCAM,
           "hirescam": HiResCAM}
LOGIT_STD, MIN_MARGIN, COMMON_BIAS_STD, FC_TRIES = 2.5, 0.1, 0.3, 50
# The last BatchNorm of each residual branch (bn2 / bn3) gets half the weight: with a gain of
# about 1 per branch, float32 rounding grows ~10x over ResNet-152's 50 blocks.
BRANCH_GAIN = 0.5


class NarrowResNet(ResNet):
    """torchvision's ResNet.__init__ step by step (same modules, same order, same init), with
    every width divided by `divisor`; `_make_layer` and `forward` are torchvision's."""

    def __init__(self, block, layers, num_classes, divisor):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = 64 // divisor
        self.dilation = 1
        self.groups = 1
        self.base_width = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64 // divisor, layers[0])
        self.layer2 = self._make_layer(block, 128 // divisor, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256 // divisor, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512 // divisor, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 // divisor * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def build(arch, divisor, classes, seed):
    block, layers = ARCHS[arch]
    if 64 % divisor:
        sys.exit(f"--width-divisor {divisor} does not divide 64")
    torch.manual_seed(seed)
    model = NarrowResNet(block, layers, classes, divisor)
    torch.manual_seed(seed)
    reference = getattr(torchvision.models, arch)(num_classes=classes)
    ours, theirs = model.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs), "state_dict keys differ from torchvision's"
    if divisor == 1:
        for k in ours:
            assert ours[k].shape == theirs[k].shape and torch.equal(ours[k], theirs[k]), k
    return model.eval()


def load_photos(shared, photos, size_hw):
    out = []
    for p in photos:
        img = Image.open(Path(shared) / "data/catdog" / p).convert("RGB")
        img = img.resize((size_hw[1], size_hw[0]), Image.BILINEAR)
        out.append(((np.asarray(img) / 255.0 - MEAN) / STD).transpose(2, 0, 1))
    # NCHW-contiguous: torch.tensor keeps numpy's strides (here channels-last), and torch 2.15's
    # CPU backward through the narrow ResNets crashes (double free) on a channels-last input.
    return torch.tensor(np.stack(out), dtype=torch.float32).contiguous()


@torch.no_grad()
def set_batchnorms(model, x, seed):
    """Per-channel statistics of each BatchNorm's input on x, perturbed (see the docstring);
    the last BatchNorm of every residual branch gets BRANCH_GAIN times the weight."""
    g = torch.Generator().manual_seed(seed)

    def pre_hook(bn, inputs):
        h = inputs[0].double()
        mu, var = h.mean((0, 2, 3)), h.var((0, 2, 3), unbiased=False).clamp_min(1e-4)
        c = bn.num_features
        noise = torch.randn(c, generator=g, dtype=torch.float64)
        bn.running_mean.copy_(mu + 0.2 * var.sqrt() * noise)
        bn.running_var.copy_(var * (0.5 + 1.5 * torch.rand(c, generator=g, dtype=torch.float64)))
        gain = BRANCH_GAIN if bn in last else 1.0
        bn.weight.copy_((0.6 + 0.8 * torch.rand(c, generator=g)) * gain)
        bn.bias.copy_(0.2 * torch.randn(c, generator=g))

    stages = (model.layer1, model.layer2, model.layer3, model.layer4)
    last = set(blk.bn3 if isinstance(blk, Bottleneck) else blk.bn2
               for layer in stages for blk in layer)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    handles = [bn.register_forward_pre_hook(pre_hook) for bn in bns]
    model(x)
    for h in handles:
        h.remove()
    return len(bns)


def set_head(model, x, seed, fixed_class):
    """Sets the fc (see the docstring) and returns (attempt, CAMs of the final model)."""
    pooled = {}
    handle = model.avgpool.register_forward_hook(lambda m, i, o: pooled.__setitem__("f", o))
    with torch.no_grad():
        model(x)
    handle.remove()
    feats = torch.flatten(pooled["f"], 1).double()
    mean = feats.mean(0)
    unit = mean / mean.norm()
    fc = model.fc
    g = torch.Generator().manual_seed(seed * 1000)
    why = "no try"
    for attempt in range(FC_TRIES):
        with torch.no_grad():
            if attempt:  # nn.Linear.reset_parameters' weight init, from our generator
                g.manual_seed(seed * 1000 + attempt)
                bound = 1.0 / math.sqrt(fc.in_features)
                fc.weight.copy_((torch.rand(fc.weight.shape, generator=g) * 2 - 1) * bound)
            w = fc.weight.double()
            w = w - (w @ unit)[:, None] * unit  # the direction without its mean-feature part
            w = w * LOGIT_STD / ((feats - mean) @ w.T).std()
            # A positive mean-feature part so every class's raw score w·f > 0 on every photo
            # (then GradCAM/HiResCAM at layer4, whose gradients are uniform, are never all 0).
            common = 2.0 * ((feats - mean) @ w.T).abs().amax(0) + 0.5
            w = w + common[:, None] * unit / mean.norm()
            fc.weight.copy_(w.float())
            fc.bias.copy_((-(mean @ w.T) + COMMON_BIAS_STD * torch.randn(
                fc.out_features, generator=g, dtype=torch.float64)).float())
            logits = model(x)
        top2 = logits.topk(2, dim=1).values
        if len(set(logits.argmax(1).tolist())) < 2:
            why = "one predicted class"
            continue
        if (top2[:, 0] - top2[:, 1]).min() < MIN_MARGIN:
            why = "a top-1 margin under %g" % MIN_MARGIN
            continue
        maps = cams(model, x, fixed_class)
        zero = [f"{k}[{i}]" for k, v in maps.items() for i, m in enumerate(v) if m.max() <= 0]
        if zero:
            why = "all-zero maps " + ", ".join(zero)
            continue
        return attempt, maps
    sys.exit(f"no fc draw in {FC_TRIES} worked; the last had {why}")


def fold(conv, bn):
    s = bn.weight.double() / (bn.running_var.double() + bn.eps).sqrt()
    return (conv.weight.double() * s[:, None, None, None],
            bn.bias.double() - bn.running_mean.double() * s)


@torch.no_grad()
def folded_logits(model, x):
    """The network again in float64 with every BatchNorm folded into the conv before it."""
    def conv(c, bn, h):
        w, b = fold(c, bn)
        return F.conv2d(h, w, b, stride=c.stride, padding=c.padding)

    h = F.relu(conv(model.conv1, model.bn1, x.double()))
    h = F.max_pool2d(h, 3, 2, 1)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        for blk in layer:
            out = F.relu(conv(blk.conv1, blk.bn1, h))
            if isinstance(blk, Bottleneck):
                out = F.relu(conv(blk.conv2, blk.bn2, out))
                out = conv(blk.conv3, blk.bn3, out)
            else:
                out = conv(blk.conv2, blk.bn2, out)
            idn = h if blk.downsample is None else conv(blk.downsample[0], blk.downsample[1], h)
            h = F.relu(out + idn)
    return h.mean((2, 3)) @ model.fc.weight.double().T + model.fc.bias.double()


def cams(model, x, fixed_class):
    out = {}
    for suffix, targets in [("", None), ("_class", [ClassifierOutputTarget(fixed_class)] * len(x))]:
        for name, cls, layer in [(n, c, "layer4") for n, c in METHODS.items()] + [
                ("gradcam", GradCAM, "layer3"), ("hirescam", HiResCAM, "layer3")]:
            with cls(model=model, target_layers=[getattr(model, layer)]) as cam:
                out[f"{name}_{layer}{suffix}"] = torch.tensor(
                    cam(input_tensor=x, targets=targets), dtype=torch.float32)
                if targets is None:
                    assert cam.outputs.argmax(1).tolist() == model(x).argmax(1).tolist()
    return out


def relu_margin(model, x):
    """The smallest |input| of a ReLU in layer4 (float64), relative to the largest: Grad-CAM at
    layer3 differs between two float32 implementations when a ReLU input lies within rounding of
    0 (the gradient takes another route), so a fixture keeps a margin (see --min-margin)."""
    net = copy.deepcopy(model).double().eval()
    inputs = []
    hooks = [blk.relu.register_forward_pre_hook(lambda m, i: inputs.append(i[0].detach().abs()))
             for blk in net.layer4]
    with torch.no_grad():
        net(x.double())
    for h in hooks:
        h.remove()
    return min(float(z.min() / z.max()) for z in inputs)


def check(expected, model, x, out_dir, fixed_class):
    for k, v in expected.items():
        assert torch.isfinite(v).all(), f"{k} has NaN/inf"
    for k, v in expected.items():
        if k.startswith(("gradcam", "gradcampp", "layercam", "hirescam")):
            assert v.min() >= 0 and v.max() <= 1, f"{k} outside [0, 1]"
            for i, m in enumerate(v):
                assert m.max() > 0, f"{k}[{i}] is all zero"
    logits = expected["logits"]
    assert len(set(logits.argmax(1).tolist())) >= 2, "every photo predicts the same class"
    folded = folded_logits(model, x)
    rel = ((folded - logits.double()).abs().max() / logits.double().abs().max()).item()
    assert rel <= 1e-4, f"folded logits differ by {rel:.2e} relative"
    # The files read back to the same state_dict.
    sd = model.state_dict()
    files = [out_dir / "resnet.safetensors"] + (
        [out_dir / "resnet.pth"] if (out_dir / "resnet.pth").exists() else []) + (
        [out_dir / "resnet-legacy.pth"] if (out_dir / "resnet-legacy.pth").exists() else [])
    for f in files:
        back = load_file(f) if f.suffix == ".safetensors" else torch.load(f, weights_only=True)
        # torch.save keeps the state_dict's order; safetensors stores its keys sorted.
        same = list(back) == list(sd) if f.suffix == ".pth" else sorted(back) == sorted(sd)
        assert same, f"{f.name}: keys differ"
        for k in sd:
            assert back[k].dtype == sd[k].dtype and torch.equal(back[k], sd[k]), f"{f.name}: {k}"
    return rel


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--width-divisor", type=int, default=1)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--classes", type=int, required=True)
    ap.add_argument("--size", required=True, help="HxW, e.g. 160x224 (H 160, W 224)")
    ap.add_argument("--photos", required=True,
                    help="comma-separated, relative to SHARED/data/catdog")
    ap.add_argument("--fixed-class", type=int, required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--shared", default=os.environ.get("SHARED_DIR")
                    or str(Path(__file__).resolve().parent.parent.parent / "shared"))
    ap.add_argument("--no-legacy", action="store_true", help="do not write resnet-legacy.pth")
    ap.add_argument("--no-pth", action="store_true", help="do not write resnet.pth")
    ap.add_argument("--min-margin", type=float, default=0.0,
                    help="refuse a fixture whose smallest layer4 ReLU input (relative) is below")
    ap.add_argument("--activations", action="store_true",
                    help="also store the layer3 and layer4 activations in expected.safetensors")
    ap.add_argument("--maps-f16", action="store_true",
                    help="store the maps as float16 (the committed fixtures do)")
    a = ap.parse_args()
    size_hw = [int(v) for v in a.size.lower().split("x")]
    photos = [p for p in a.photos.split(",") if p]
    assert len(size_hw) == 2 and 0 <= a.fixed_class < a.classes and a.classes >= 2 and photos

    torch.use_deterministic_algorithms(True)
    model = build(a.arch, a.width_divisor, a.classes, a.seed)
    x = load_photos(a.shared, photos, size_hw)
    n_bn = set_batchnorms(model, x, a.seed)
    fc_attempt, maps = set_head(model, x, a.seed, a.fixed_class)
    model.eval()

    acts = {}
    hooks = [getattr(model, n).register_forward_hook(
        lambda m, i, o, n=n: acts.__setitem__(n, o.detach().clone())) for n in ("layer3", "layer4")]
    with torch.no_grad():
        logits = model(x)
    for h in hooks:
        h.remove()
    if a.activations:
        expected = {"input": x, "logits": logits, "layer3": acts["layer3"], "layer4": acts["layer4"]}
    else:
        expected = {"input": x, "logits": logits}
    expected.update(maps)
    expected = {k: v.detach().float().contiguous() for k, v in expected.items()}

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, out / "resnet.safetensors")
    if a.no_pth:
        (out / "resnet.pth").unlink(missing_ok=True)
    else:
        torch.save(sd, out / "resnet.pth")
    legacy = out / "resnet-legacy.pth"
    if a.no_legacy:
        legacy.unlink(missing_ok=True)
    else:
        torch.save(sd, legacy, _use_new_zipfile_serialization=False)
    save_file({"weight": model.fc.weight.detach().contiguous(),
               "bias": model.fc.bias.detach().contiguous()}, out / "head.safetensors")
    # Maps in [0, 1] as float16 (error ≤ 2.5e-4, an eighth of the 2e-3 tolerance) keep the
    # fixtures small enough for the repository; the input and logits stay float32.
    stored = {k: v.half() if k not in ("input", "logits") and a.maps_f16 else v
              for k, v in expected.items()}
    save_file(stored, out / "expected.safetensors")
    rel = check(expected, model, x, out, a.fixed_class)
    margin = relu_margin(model, x)
    assert margin >= a.min_margin, (
        f"a ReLU input in layer4 is {margin:.1e} of the largest (< --min-margin "
        f"{a.min_margin:.0e}): try another seed")

    predicted = logits.argmax(1).tolist()
    meta = {
        "arch": a.arch, "width_divisor": a.width_divisor, "seed": a.seed, "classes": a.classes,
        "size": size_hw, "photos": photos, "predicted": predicted, "fixed_class": a.fixed_class,
        "logits": [[round(v, 6) for v in row] for row in logits.tolist()],
        "fc_in_features": model.fc.in_features, "batchnorms": n_bn, "fc_attempt": fc_attempt,
        "folded_logits_rel_err": rel,
        "layer4_relu_margin": margin,
        "expected_shapes": {k: list(v.shape) for k, v in expected.items()},
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "pytorch_grad_cam": getattr(pytorch_grad_cam, "__version__", None) or _dist_version(),
        "command": " ".join([".venv-torch/bin/python"] + [shlex.quote(s) for s in sys.argv]),
    }
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in meta.items()]
    (out / "meta.json").write_text("{\n" + ",\n".join(lines) + "\n}\n")
    print(json.dumps({k: meta[k] for k in ("arch", "width_divisor", "predicted", "logits",
                                            "folded_logits_rel_err", "fc_attempt")}))


def _dist_version():
    from importlib.metadata import version
    return version("grad-cam")


if __name__ == "__main__":
    main()
