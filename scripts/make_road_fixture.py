"""Reference fixture for ROAD (Rong et al. 2022), made with pytorch-grad-cam 1.5.7 itself.

    .venv-torch/bin/python scripts/make_road_fixture.py

Writes crates/callbacks/tests/fixtures/road/{road.safetensors,meta.json} (~0.6 MB), checked by
crates/callbacks/tests/road.rs. It uses the library's own `NoisyLinearImputer`,
`RemoveMostRelevantFirst`, `RemoveLeastRelevantFirst`, `PerturbationConfidenceMetric` and
`AveragerAcrossThresholds`, with the imputer's noise set to 0 (`NoisyLinearImputer(noise=0.0)`;
the library's default is 0.01 Gaussian noise, which no other implementation can reproduce).

(a) Imputation, on 3x24x32 images (values in the ImageNet-normalised range):
  - percentile cases: an image, a map, and for percentiles 10, 50, 90 and both orders the keep
    mask the library thresholded (`map < np.percentile(map, p)`, `1 - map` for LeRF; captured
    from inside the imputer) and the imputed image. Cases: `smooth` (random smooth image and map),
    `photo` (a crop of a real photo with its Grad-CAM map, which has ties at 0), `ties` (a map
    quantised to 4 levels), `border` (a radial map: MoRF removes the border ring, LeRF the centre).
  - mask cases, straight into the imputer: `single_interior`, `single_corner` (one removed pixel),
    `edge_strip` (the first row and column removed), `one_known` (everything but one pixel
    removed: the answer is that pixel's value everywhere), `all_removed` (no known pixel: the
    system is singular and its right-hand side 0; scipy 1.17.1's spsolve gives no warning and
    returns -0.0 everywhere, since in floating point the matrix's pivots are roundoff, not 0).
(b) Full-model ROAD on the VGG16/16 gap-linear ("cam") network of make_methods_fixture.py,
    loaded from crates/callbacks/tests/fixtures/vgg16-w16-methods (its 2 photos at 96x128, its
    `scorecam` and `gradcam` maps). Target: the probability of the class each image is predicted
    as, sigmoid(sign * logit) with sign = +1 when the original logit >= 0 (dog) else -1 (the
    single-logit head's `Signed` target of make_methods_fixture.py, through a sigmoid). Stored per
    map set: MoRF and LeRF score differences [2, 9] for percentiles 10..90, the combined score
    (LeRF_avg - MoRF_avg) / 2 computed as `ROADCombined` does, and the MoRF-10 imputed images of
    the `scorecam` set. Grad-CAM's map of photo 1 is 0 on more than 10 % of its pixels, so its
    10th percentile is 0 and MoRF-10 removes every pixel: the library imputes 0 everywhere there
    (the `all_removed` case).
"""
import json
import warnings
from pathlib import Path

import numpy as np
import scipy
import scipy.ndimage
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

import pytorch_grad_cam
from pytorch_grad_cam.metrics.perturbation_confidence import (AveragerAcrossThresholds,
                                                              PerturbationConfidenceMetric,
                                                              RemoveLeastRelevantFirst,
                                                              RemoveMostRelevantFirst)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer

# The fixture network's definition (its weights are loaded from that fixture's files).
from make_methods_fixture import Net, features

ROOT = Path(__file__).resolve().parent.parent
METHODS = ROOT / "crates/callbacks/tests/fixtures/vgg16-w16-methods"
OUT = ROOT / "crates/callbacks/tests/fixtures/road"
SEED, C, H, W = 11, 3, 24, 32
PERCENTILES = [10, 50, 90]
MODEL_PERCENTILES = [10, 20, 30, 40, 50, 60, 70, 80, 90]


class Capturing(NoisyLinearImputer):
    """The library's imputer, noise 0, remembering the mask it was given (1 = keep)."""

    def __init__(self):
        super().__init__(noise=0.0)
        self.masks = []

    def __call__(self, img, mask):
        self.masks.append(mask.numpy().astype(np.uint8))
        return super().__call__(img, mask)


def smooth(rng, shape, sigma):
    x = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
    return x / np.abs(x).max()


class SignedProbability:
    """Probability of the predicted class of a 1-logit head: sigmoid(sign * logit)."""

    def __init__(self, sign):
        self.sign = sign

    def __call__(self, out):
        return torch.sigmoid(self.sign * out[..., 0])


def imputation_cases(rng, out, meta):
    photo = load_file(METHODS / "expected.safetensors")
    yy, xx = np.mgrid[0:H, 0:W]
    radial = np.hypot(yy - (H - 1) / 2, xx - (W - 1) / 2)
    base = smooth(rng, (H, W), 3.0) * 0.5 + 0.5
    cases = {
        "smooth": (smooth(rng, (C, H, W), (0, 2, 2)) * 2.0, smooth(rng, (H, W), 2.5) * 0.5 + 0.5),
        "photo": (photo["input"][0, :, 30:54, 40:72].numpy(), photo["gradcam"][0, 30:54, 40:72].numpy()),
        "ties": (smooth(rng, (C, H, W), (0, 1.5, 1.5)) * 2.0, np.floor(base * 4) / 4),
        "border": (smooth(rng, (C, H, W), (0, 2, 2)) * 2.0, radial / radial.max()),
    }
    meta["percentile_cases"] = list(cases)
    for name, (image, cam) in cases.items():
        image = torch.tensor(np.float32(image))
        cam = np.float32(cam)
        out[f"{name}/image"], out[f"{name}/map"] = image, torch.tensor(cam)
        for order, cls in [("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)]:
            for p in PERCENTILES:
                imputer = Capturing()
                imputed = cls(p, imputer)(image, torch.from_numpy(cam))
                out[f"{name}/{order}_{p}/keep"] = torch.tensor(imputer.masks[0])
                out[f"{name}/{order}_{p}/imputed"] = imputed.float()
    image = torch.tensor(np.float32(smooth(rng, (C, H, W), (0, 2, 2)) * 2.0))
    out["masks/image"] = image
    masks = {}
    for name in ["single_interior", "single_corner", "edge_strip", "one_known", "all_removed"]:
        keep = np.ones((H, W), np.float32)
        if name == "single_interior":
            keep[10, 15] = 0
        elif name == "single_corner":
            keep[0, 0] = 0
        elif name == "edge_strip":
            keep[0, :], keep[:, 0] = 0, 0
        elif name == "one_known":
            keep[:], keep[7, 9] = 0, 1
        else:
            keep[:] = 0
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            imputed = NoisyLinearImputer(noise=0.0)(image, torch.from_numpy(keep))
        out[f"masks/{name}/keep"] = torch.tensor(keep.astype(np.uint8))
        out[f"masks/{name}/imputed"] = imputed.float()
        masks[name] = {"scipy_warnings": [f"{w.category.__name__}: {w.message}" for w in caught
                                          if not issubclass(w.category, DeprecationWarning)],
                       "nan_values": int(torch.isnan(imputed).sum())}
    meta["mask_cases"] = masks


def model_cases(out, meta):
    fixture = load_file(METHODS / "expected.safetensors")
    feats, c = features()
    feats.load_state_dict({k.removeprefix("features."): v
                           for k, v in load_file(METHODS / "vgg16_features.safetensors").items()})
    head = nn.Linear(c, 1)
    head.load_state_dict(load_file(METHODS / "cam_head.safetensors"))
    model = Net(feats, head, 30).eval()  # gap-linear: block5_conv3 (ReLU'd), GAP, linear
    x = fixture["input"]
    with torch.no_grad():
        logits = model(x)[:, 0]
    assert torch.allclose(logits, fixture["cam_model_logit"][:, 0], atol=1e-5), "not the same net"
    targets = [SignedProbability(1.0 if v >= 0 else -1.0) for v in logits]
    with torch.no_grad():
        out["model/logit"] = model(x)[:, 0].contiguous()
        out["model/probability"] = torch.stack([t(o) for t, o in zip(targets, model(x))])
    meta["model"] = {"map_sets": ["scorecam", "gradcam"], "percentiles": MODEL_PERCENTILES,
                     "target": "sigmoid(sign * logit), sign = +1 if the original logit >= 0 else -1",
                     "images": "input of vgg16-w16-methods", "maps": "that fixture's maps"}

    def metric(cls):
        return lambda p: PerturbationConfidenceMetric(cls(p, NoisyLinearImputer(noise=0.0)))

    for name in ["scorecam", "gradcam"]:
        cams = fixture[name].numpy()
        for order, cls in [("morf", RemoveMostRelevantFirst), ("lerf", RemoveLeastRelevantFirst)]:
            rows = [metric(cls)(p)(x, cams, targets, model) for p in MODEL_PERCENTILES]
            out[f"model/{name}/{order}"] = torch.tensor(np.stack(rows, axis=1))
        lerf = AveragerAcrossThresholds(metric(RemoveLeastRelevantFirst), MODEL_PERCENTILES)
        morf = AveragerAcrossThresholds(metric(RemoveMostRelevantFirst), MODEL_PERCENTILES)
        combined = (lerf(x, cams, targets, model) - morf(x, cams, targets, model)) / 2
        out[f"model/{name}/combined"] = torch.tensor(combined)
        meta["model"][f"{name}_combined"] = [float(v) for v in combined]
    _, imputed = PerturbationConfidenceMetric(
        RemoveMostRelevantFirst(10, NoisyLinearImputer(noise=0.0)))(
        x, fixture["scorecam"].numpy(), targets, model, return_visualization=True)
    out["model/scorecam/morf_10_imputed"] = imputed.float()


def main():
    torch.manual_seed(SEED)
    rng = np.random.default_rng(SEED)
    out, meta = {}, {"seed": SEED, "size_chw": [C, H, W], "percentiles": PERCENTILES,
                     "noise": 0.0, "torch": torch.__version__, "scipy": scipy.__version__,
                     "numpy": np.__version__,
                     "pytorch_grad_cam": getattr(pytorch_grad_cam, "__version__", "1.5.7")}
    imputation_cases(rng, out, meta)
    model_cases(out, meta)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "road.safetensors")
    (OUT / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
