"""PyTorch reference for bench/throughput: the same work as the project's training loop.

Architectures, optimiser and data sizes mirror core/models/architectures.ts and core/train:
  - smallCnn: 32-32-pool-64-64-pool-128-128-GAP-linear, each conv 3x3 without bias + BN + ReLU;
  - resnet20: He et al. CIFAR ResNet-20 (3 stages x 3 basic blocks, 16/32/64 filters, 1x1 conv + BN
    projection shortcuts where the shape changes);
  - BN momentum 0.1 (= tfjs momentum 0.9), eps 1e-5; SGD momentum 0.9, weight decay 5e-4 on every
    parameter (PyTorch semantics, as core/train/sgd.ts), constant learning rate, cross-entropy;
  - random uint8 32x32x3 images; per batch: gather, scale to [0, 1] and (optionally) random crop
    after 4-pixel zero padding + horizontal flip, on the host as the project does.
One difference that does not change the work: TensorFlow's 'same' padding at stride 2 pads
(0, 1) where PyTorch's padding=1 pads (1, 1); both give 16x16 from 32x32 with the same FLOPs.

Run by bench/throughput.ts (never in CI):
  python pytorch_throughput.py --arch resnet20 --images 2560 --epochs 2 --threads 2 --augment 1
prints one JSON object on stdout.
"""
import argparse
import json
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from reference_run import peak_rss_mib, predict, timed, torch_facts


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
        nn.ReLU(inplace=True),
    ]


class SmallCnn(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(3, 32), *conv_bn_relu(32, 32), nn.MaxPool2d(2),
            *conv_bn_relu(32, 64), *conv_bn_relu(64, 64), nn.MaxPool2d(2),
            *conv_bn_relu(64, 128), *conv_bn_relu(128, 128),
        )
        self.logits = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x).mean(dim=(2, 3)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.a = nn.Sequential(*conv_bn_relu(cin, cout, stride))
        self.b_conv = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.b_bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
        self.proj = None
        if stride != 1 or cin != cout:
            self.proj = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b_bn(self.b_conv(self.a(x)))
        return F.relu(y + (x if self.proj is None else self.proj(x)))


class ResNet20(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(*conv_bn_relu(3, 16))
        blocks, cin = [], 16
        for s, filters in enumerate([16, 32, 64]):
            for b in range(3):
                blocks.append(BasicBlock(cin, filters, 2 if s > 0 and b == 0 else 1))
                cin = filters
        self.blocks = nn.Sequential(*blocks)
        self.logits = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.blocks(self.stem(x)).mean(dim=(2, 3)))


ARCHS = {"smallCnn": SmallCnn, "resnet20": ResNet20}


def assemble(images: torch.Tensor, idx: torch.Tensor, augment: bool, gen: torch.Generator) -> torch.Tensor:
    """uint8 NHWC images[idx] -> float NCHW in [0, 1], random crop (pad 4) + flip when augmenting."""
    x = images[idx].permute(0, 3, 1, 2).float().div_(255)
    if not augment:
        return x.contiguous()
    n, _, h, w = x.shape
    pad = 4
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = dy[:, None] + torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    batch = torch.arange(n)[:, None, None]
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return crops.permute(0, 3, 1, 2).contiguous()


def train(model, opt, images, labels, indices, epochs, batch_size, augment, gen):
    """Returns (seconds, data seconds, per-epoch seconds, final loss)."""
    model.train()
    n = indices.numel()
    data_seconds, epoch_seconds, loss = 0.0, [], float("nan")
    t_all = time.perf_counter()
    for _ in range(epochs):
        t0 = time.perf_counter()
        order = indices[torch.randperm(n, generator=gen)]
        loss_sum = torch.zeros(())
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            td = time.perf_counter()
            x = assemble(images, idx, augment, gen)
            y = labels[idx]
            data_seconds += time.perf_counter() - td
            opt.zero_grad(set_to_none=True)
            batch_loss = F.cross_entropy(model(x), y)
            batch_loss.backward()
            opt.step()
            loss_sum += batch_loss.detach() * idx.numel()
        loss = loss_sum.item() / n
        epoch_seconds.append(time.perf_counter() - t0)
    return time.perf_counter() - t_all, data_seconds, epoch_seconds, loss


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=sorted(ARCHS), required=True)
    p.add_argument("--images", type=int, default=2560)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--inference-batch-size", type=int, default=None, help="default: --batch-size")
    p.add_argument("--warmup-images", type=int, default=512)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--augment", type=int, choices=[0, 1], default=1)
    p.add_argument("--learning-rate", type=float, default=0.05)
    a = p.parse_args()
    inference_batch = a.inference_batch_size or a.batch_size

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (a.images, 32, 32, 3), dtype=torch.uint8, generator=gen)
    labels = torch.randint(0, 10, (a.images,), generator=gen)
    model = ARCHS[a.arch]()
    parameters = sum(p.numel() for p in model.parameters())

    def optimizer():
        return torch.optim.SGD(model.parameters(), lr=a.learning_rate, momentum=0.9, weight_decay=5e-4)

    t0 = time.perf_counter()
    warm = torch.arange(min(a.warmup_images, a.images))
    train(model, optimizer(), images, labels, warm, 1, a.batch_size, bool(a.augment), gen)
    warmup_seconds = time.perf_counter() - t0

    cpu0 = time.process_time()
    seconds, data_seconds, epoch_seconds, loss = train(
        model, optimizer(), images, labels, torch.arange(a.images), a.epochs, a.batch_size, bool(a.augment), gen
    )
    cores_busy = (time.process_time() - cpu0) / seconds

    inference_seconds = timed(lambda: predict(model, images, inference_batch), 1)

    print(json.dumps({
        **torch_facts(),
        "arch": a.arch,
        "augmentation": bool(a.augment),
        "batchSize": a.batch_size,
        "images": a.images,
        "epochs": a.epochs,
        "parameters": parameters,
        "warmupSeconds": warmup_seconds,
        "trainSeconds": seconds,
        "trainImagesPerSecond": a.images * a.epochs / seconds,
        "epochImagesPerSecond": [a.images / s for s in epoch_seconds],
        "dataShare": data_seconds / seconds,
        "trainCoresBusy": cores_busy,
        "inferenceBatchSize": inference_batch,
        "inferenceSeconds": inference_seconds,
        "inferenceImagesPerSecond": a.images / inference_seconds,
        "finalLoss": loss,
        "peakRssMiB": peak_rss_mib(),
    }))


if __name__ == "__main__":
    main()
