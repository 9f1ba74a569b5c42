#!/usr/bin/env python3
"""PyTorch's side of `train bench --pytorch PYTHON`: times one figure the same way the bench
times ours and prints one JSON line.

    python scripts/bench_pytorch.py FIGURE --batch B --size S --repeats R --threads T

FIGURE is one of:
  vgg16_block5_conv3   VGG16 features up to block5_conv3 + ReLU (torchvision's features[:30]), forward
  effnet_lite0         EfficientNet-Lite0 (lukemelas layout, BN folded as in ours: conv + bias),
                       stem to head conv + ReLU6, forward
  effnet_top_step      the fine-tuning step: block14..block16 + head conv + GAP + Linear(1280, 1)
                       on cached 192x7x7 inputs, forward, BCE-with-logits, backward, Adam step
                       (backbone lr 1e-4, head lr 1e-3; BN frozen, as ours)
  resnet50_layer4      torchvision's ResNet-50 (random weights) from the image to layer4, BN fused into
                       the convs (torch.fx's fuse, as ours folds it), forward (needs torchvision)
  resnet50_top_step    the fine-tuning step with train_from = "layer4": layer4 (BN frozen, eval mode) +
                       GAP + Linear(2048, 1) on cached 1024x14x14 inputs, forward, BCE-with-logits,
                       backward, Adam step (backbone lr 1e-4, head lr 1e-3)

Same statistic as ours: one warm-up call, then the best of R calls, with random weights and
inputs (they cost what real ones cost), float32, eval mode, `torch.set_num_threads(T)`.
Output: {"figure", "seconds", "batch", "torch", "threads", "mkldnn"}.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# (depthwise kernel, stride, in, out, expand ratio): the 16 blocks, as crates/model/src/efficientnet/mod.rs.
BLOCKS = [
    (3, 1, 32, 16, 1), (3, 2, 16, 24, 6), (3, 1, 24, 24, 6), (5, 2, 24, 40, 6), (5, 1, 40, 40, 6),
    (3, 2, 40, 80, 6), (3, 1, 80, 80, 6), (3, 1, 80, 80, 6), (5, 1, 80, 112, 6), (5, 1, 112, 112, 6),
    (5, 1, 112, 112, 6), (5, 2, 112, 192, 6), (5, 1, 192, 192, 6), (5, 1, 192, 192, 6),
    (5, 1, 192, 192, 6), (3, 1, 192, 320, 6),
]


def same_pad(x, k, s):
    """TensorFlow "SAME" padding, the smaller half before (as ours)."""
    h, w = x.shape[-2:]
    ph = max((-(-h // s) - 1) * s + k - h, 0)
    pw = max((-(-w // s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class MbConv(nn.Module):
    def __init__(self, k, s, c_in, c_out, ratio):
        super().__init__()
        mid = c_in * ratio
        self.expand = nn.Conv2d(c_in, mid, 1) if ratio != 1 else None
        self.depthwise = nn.Conv2d(mid, mid, k, s, groups=mid)
        self.project = nn.Conv2d(mid, c_out, 1)
        self.k, self.s, self.residual = k, s, s == 1 and c_in == c_out

    def forward(self, x):
        y = F.relu6(self.expand(x)) if self.expand is not None else x
        y = F.relu6(self.depthwise(same_pad(y, self.k, self.s)))
        y = self.project(y)
        return y + x if self.residual else y


class EffnetLite0(nn.Module):
    def __init__(self, first_block=0):
        super().__init__()
        self.first_block = first_block
        self.stem = nn.Conv2d(3, 32, 3, 2) if first_block == 0 else None
        self.blocks = nn.ModuleList(MbConv(*b) for b in BLOCKS[first_block:])
        self.head = nn.Conv2d(320, 1280, 1)

    def forward(self, x):
        if self.stem is not None:
            x = F.relu6(self.stem(same_pad(x, 3, 2)))
        for block in self.blocks:
            x = block(x)
        return F.relu6(self.head(x))


def vgg16_to_block5_conv3():
    layers, c = [], 3
    for i, v in enumerate([64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512]):
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=True)]
            c = v
    return nn.Sequential(*layers)


def best_seconds(repeats, f):
    f()
    best = float("inf")
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        f()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("figure", choices=["vgg16_block5_conv3", "effnet_lite0", "effnet_top_step",
                                           "resnet50_layer4", "resnet50_top_step"])
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    if args.figure == "effnet_top_step":
        top = EffnetLite0(first_block=13)
        fc = nn.Linear(1280, 1)
        optimizer = torch.optim.Adam([
            {"params": top.parameters(), "lr": 1e-4},
            {"params": fc.parameters(), "lr": 1e-3},
        ])
        x = torch.randn(args.batch, 192, 7, 7)
        y = (torch.rand(args.batch, 1) > 0.5).float()

        def step():
            optimizer.zero_grad()
            logits = fc(top(x).mean(dim=(2, 3)))
            F.binary_cross_entropy_with_logits(logits, y).backward()
            optimizer.step()

        seconds = best_seconds(args.repeats, step)
    elif args.figure == "resnet50_top_step":
        import torchvision
        layer4 = torchvision.models.resnet50().layer4.eval()
        for m in layer4.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.requires_grad_(False)
                m.bias.requires_grad_(False)
        fc = nn.Linear(2048, 1)
        optimizer = torch.optim.Adam([
            {"params": [p for p in layer4.parameters() if p.requires_grad], "lr": 1e-4},
            {"params": fc.parameters(), "lr": 1e-3},
        ])
        x = torch.rand(args.batch, 1024, 14, 14) * 2
        y = (torch.rand(args.batch, 1) > 0.5).float()

        def step():
            optimizer.zero_grad()
            logits = fc(layer4(x).mean(dim=(2, 3)))
            F.binary_cross_entropy_with_logits(logits, y).backward()
            optimizer.step()

        seconds = best_seconds(args.repeats, step)
    elif args.figure == "resnet50_layer4":
        import torchvision
        from torch.fx.experimental.optimization import fuse
        resnet = torchvision.models.resnet50().eval()
        trunk = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool,
                              resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4)
        net = fuse(trunk)
        x = torch.randn(args.batch, 3, args.size, args.size)
        with torch.inference_mode():
            seconds = best_seconds(args.repeats, lambda: net(x))
    else:
        net = vgg16_to_block5_conv3() if args.figure == "vgg16_block5_conv3" else EffnetLite0()
        net.eval()
        x = torch.randn(args.batch, 3, args.size, args.size)
        with torch.inference_mode():
            seconds = best_seconds(args.repeats, lambda: net(x))
    print(json.dumps({
        "figure": args.figure,
        "seconds": seconds,
        "batch": args.batch,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "mkldnn": torch.backends.mkldnn.is_available(),
    }))


if __name__ == "__main__":
    main()
