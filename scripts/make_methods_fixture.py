"""A second reference fixture for the second wave of methods, made with pytorch-grad-cam itself.

`../shared/fixtures/vgg16-w8-methods` covers VGG16 / 8 on 3 photos at 160x224. This one is
another width, size, seed and photos — VGG16 / 16, 2 photos at 96x128, seed 5 — and is small
enough to live in the repository: crates/callbacks/tests/fixtures/vgg16-w16-methods/.

    .venv-torch/bin/pip install --no-deps grad-cam==1.5.7 ttach opencv-python-headless …
    .venv-torch/bin/python scripts/make_methods_fixture.py SHARED_DIR

For the principal-component methods the library keeps whatever sign LAPACK returns; here
`get_2d_projection` is wrapped to give both signs: `_pos` with our rule (negate when |min| >
|max|) and `_neg` the other one, so the Rust test checks the rule exactly.
"""
import copy
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from safetensors.torch import save_file

import pytorch_grad_cam
import pytorch_grad_cam.base_cam as base_cam
import pytorch_grad_cam.eigen_cam as eigen_cam
import pytorch_grad_cam.eigen_grad_cam as eigen_grad_cam
import pytorch_grad_cam.grad_cam_elementwise as grad_cam_elementwise
from pytorch_grad_cam import (AblationCAM, EigenCAM, EigenGradCAM, GradCAM, GradCAMElementWise,
                              ScoreCAM)
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUasModule
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

DIVISOR, SIZE_HW, SEED = 16, (96, 128), 5
PHOTOS = ["val/cat/cat.4010.jpg", "val/dog/dog.4012.jpg"]
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
OUT = Path(__file__).resolve().parent.parent / "crates/callbacks/tests/fixtures/vgg16-w16-methods"


def features():
    layers, c = [], 3
    for v in CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            conv = nn.Conv2d(c, v // DIVISOR, 3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU(inplace=False)]
            c = v // DIVISOR
    return nn.Sequential(*layers), c


class Net(nn.Module):
    """Backbone to block5_conv3 (gap-linear) or block5_pool (gap-dense), GAP, head."""

    def __init__(self, feats, head, upto):
        super().__init__()
        self.features, self.head, self.upto = feats, head, upto

    def forward(self, x):
        return self.head(self.features[: self.upto](x).mean((2, 3)))


class Signed:
    """±logit of the predicted class of a 1-logit head."""

    def __init__(self, sign):
        self.sign = sign

    def __call__(self, out):
        return self.sign * out[..., 0]


def with_sign(negate):
    def projection(batch):
        out = get_2d_projection(batch)
        for i, p in enumerate(out):
            flip = abs(p.min()) > abs(p.max())
            out[i] = -p if flip != negate else p
        return out
    return projection


def main(shared):
    torch.manual_seed(SEED)
    feats, c = features()
    dense = nn.Sequential(nn.Linear(c, 64), nn.ReLU(inplace=False), nn.Linear(64, 1))
    linear = nn.Linear(c, 1)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    photos = []
    for p in PHOTOS:
        img = Image.open(Path(shared) / "data/catdog" / p).convert("RGB")
        img = img.resize((SIZE_HW[1], SIZE_HW[0]), Image.BILINEAR)
        photos.append(((np.asarray(img) / 255.0 - mean) / std).transpose(2, 0, 1))
    x = torch.tensor(np.stack(photos), dtype=torch.float32)
    models = {"dense": Net(feats, dense, 31).eval(), "cam": Net(feats, linear, 30).eval()}
    # Logits O(1) with both classes (Ablation-CAM divides by the score).
    with torch.no_grad():
        for name, model in models.items():
            last = model.head[-1] if name == "dense" else model.head
            last.weight /= model(x)[:, 0].std() + 1e-6
            last.bias.zero_()
            last.bias -= model(x)[:, 0].mean()
    expected = {"input": x}
    for name, model in models.items():
        with torch.no_grad():
            expected[f"{name}_model_logit"] = model(x)
    logits = expected["dense_model_logit"][:, 0]
    targets = [Signed(1.0 if v >= 0 else -1.0) for v in logits]
    model, layer = models["dense"], [feats[29]]
    plain = {"scorecam": ScoreCAM, "ablationcam": AblationCAM,
             "gradcamelementwise": GradCAMElementWise, "gradcam": GradCAM}
    for key, cls in plain.items():
        with cls(model=model, target_layers=layer) as cam:
            expected[key] = torch.tensor(cam(input_tensor=x, targets=targets))
    with GradCAM(model=model, target_layers=[feats[22]]) as cam:
        expected["gradcam_block4_conv3"] = torch.tensor(cam(input_tensor=x, targets=targets))
    with GradCAM(model=model, target_layers=layer) as cam:
        expected["gradcam_aug_smooth"] = torch.tensor(
            cam(input_tensor=x, targets=targets, aug_smooth=True))
    # Guided backprop as the library's GuidedBackpropReLUModel, but backpropagating every
    # image's ±logit (the library's wrapper backpropagates image 0 only).
    guided = copy.deepcopy(model)
    for parent in guided.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, GuidedBackpropReLUasModule())
    x_grad = x.clone().requires_grad_(True)
    signs = torch.tensor([1.0 if v >= 0 else -1.0 for v in logits])
    (guided(x_grad)[:, 0] * signs).sum().backward()
    expected["guided_backprop"] = x_grad.grad.detach()
    expected["guided_gradcam"] = x_grad.grad.detach() * expected["gradcam"][:, None]
    for negate, suffix in [(False, "pos"), (True, "neg")]:
        for module in (base_cam, eigen_cam, eigen_grad_cam, grad_cam_elementwise):
            module.get_2d_projection = with_sign(negate)
        for key, cls, kwargs in [("eigencam", EigenCAM, {}), ("eigengradcam", EigenGradCAM, {}),
                                 ("gradcam_eigen_smooth", GradCAM, {"eigen_smooth": True})]:
            with cls(model=model, target_layers=layer) as cam:
                expected[f"{key}_{suffix}"] = torch.tensor(
                    cam(input_tensor=x, targets=targets, **kwargs))
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().float() for k, v in expected.items()}, OUT / "expected.safetensors")
    convs = {f"features.{i}.{p}": getattr(m, p).detach().contiguous()
             for i, m in enumerate(feats) if isinstance(m, nn.Conv2d) for p in ("weight", "bias")}
    save_file(convs, OUT / "vgg16_features.safetensors")
    save_file({"fc1.weight": dense[0].weight.detach().contiguous(), "fc1.bias": dense[0].bias.detach(),
               "fc2.weight": dense[2].weight.detach().contiguous(), "fc2.bias": dense[2].bias.detach()},
              OUT / "dense_head.safetensors")
    save_file({"weight": linear.weight.detach().contiguous(), "bias": linear.bias.detach()},
              OUT / "cam_head.safetensors")
    meta = {"seed": SEED, "width_divisor": DIVISOR, "size_hw": SIZE_HW, "images": PHOTOS,
            "dense_logits": logits.tolist(), "torch": torch.__version__,
            "pytorch_grad_cam": getattr(pytorch_grad_cam, "__version__", "1.5.7"),
            "eigen_sign_rule": "_pos: negated when |min| > |max|; _neg: the other sign"}
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared")
