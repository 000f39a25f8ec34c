"""PyTorch reference for bench/recipeCompare: standard training of the cpu tier's smallCnn on
the exact records ntml trains on, under a given recipe, then clean accuracy and ASR.

Like for like with core/train (trainClassifier + epochLoop + sgd) and core/models:
  - data: the records ntml's prepareData produced for this seed (the 20k class-stratified
    subset, BadNets-poisoned where asked), exported by bench/recipeCompare.ts as CIFAR-10
    binary batches; train.bin's sha256 is checked against meta.json before training;
  - model: pytorch_throughput.SmallCnn (conv 3x3 no bias + BN(momentum 0.1 = Keras 0.9,
    eps 1e-5) + ReLU, 32-32-pool-64-64-pool-128-128-GAP-linear); init as
    core/models/architectures.ts initialiseWeights: He-normal (fan-in) conv kernels, linear
    weight and bias uniform(+-1/sqrt(fan_in)) (PyTorch's own Linear default), BN 1/0;
  - inputs in [0, 1] (no mean/std normalisation), random crop after 4-pixel zero padding and
    horizontal flip per image (pytorch_throughput.assemble);
  - batches: a fresh shuffle per epoch, batch 128, the last batch partial; a trailing batch
    of one image is folded into the one before (as epochLoop does);
  - SGD with coupled L2 (weight_decay on every parameter, BN and biases included, as
    core/train/sgd.ts), momentum, optional Nesterov, learning rate set per step by the same
    schedule function as sgd.ts learningRateAt (learning_rate_at below);
  - cross-entropy, batch mean.
What differs: the random streams (initial weights, shuffles, crops) are PyTorch's, so runs
agree in distribution, not bit for bit; BN's running variance uses PyTorch's unbiased batch
variance where tfjs uses the biased one (a factor n/(n-1) with n >= 8,192 values per channel).

  python pytorch_recipe.py --data DIR --recipe '{"epochs":8,...}' --seed 1 --threads 2
prints one JSON object on stdout.
"""
import argparse
import hashlib
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# run as a script, Python puts this folder first on the import path
from pytorch_throughput import SmallCnn, assemble
from reference_run import predict, torch_facts

RECORD = 1 + 3 * 32 * 32
ONE_CYCLE_START_DIVISOR = 25
DEFAULT_WARMUP_FRACTION = 0.3


def read_batch(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A CIFAR-10 binary batch as uint8 NHWC images and int64 labels."""
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % RECORD:
        raise SystemExit(f"{path}: {raw.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records")
    records = raw.reshape(-1, RECORD)
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()
    return torch.from_numpy(images), torch.from_numpy(records[:, 0].astype(np.int64))


def learning_rate_at(recipe: dict, step: int, total: int) -> float:
    """core/train/sgd.ts learningRateAt."""
    peak, schedule = recipe["learningRate"], recipe["schedule"]
    if schedule == "constant" or total <= 0:
        return peak
    s = min(max(step, 0), total)

    def cosine(t: int, span: int) -> float:
        return 0.0 if span <= 0 else 0.5 * peak * (1 + math.cos(math.pi * min(t, span) / span))

    if schedule == "cosine":
        return cosine(s, total)
    if schedule != "oneCycle":
        raise SystemExit(f"recipe.schedule: unknown schedule {schedule!r}")
    fraction = recipe.get("warmupFraction")
    # Math.round, as sgd.ts (Python's round() sends halves to even)
    warmup = math.floor((DEFAULT_WARMUP_FRACTION if fraction is None else fraction) * total + 0.5)
    if s < warmup:
        start = peak / ONE_CYCLE_START_DIVISOR
        return start + (peak - start) * s / warmup
    return cosine(s - warmup, total - warmup)


def initialise(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        # nn.Linear keeps its default: uniform(+-1/sqrt(fan_in)) for weight and bias


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True, help="folder with meta.json, train.bin, test.bin (and triggered.bin)")
    p.add_argument("--recipe", required=True, help="the TrainRecipe as JSON (core/train/recipe.ts)")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--threads", type=int, required=True)
    a = p.parse_args()
    recipe = json.loads(a.recipe)
    for field in ("epochs", "batchSize", "learningRate", "momentum", "weightDecay", "schedule", "augment"):
        if field not in recipe:
            raise SystemExit(f"recipe.{field}: missing")
    if recipe.get("batchNorm", "train") != "train":
        raise SystemExit("recipe.batchNorm: only 'train' is mirrored here")
    aug = recipe["augment"]
    if aug.get("padding", 4) not in (0, 4):
        raise SystemExit(f"recipe.augment.padding: {aug['padding']}; the reference crops with 4-pixel padding or none")
    augment = aug.get("padding", 4) == 4 and aug.get("flip", True)
    if (aug.get("padding", 4) == 4) != bool(aug.get("flip", True)):
        raise SystemExit("recipe.augment: the reference does crop and flip together or neither")

    with open(os.path.join(a.data, "meta.json")) as f:
        meta = json.load(f)
    train_path = os.path.join(a.data, "train.bin")
    with open(train_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if digest != meta["train"]["sha256"]:
        raise SystemExit(f"{train_path}: sha256 {digest} is not meta.json's {meta['train']['sha256']}")

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    images, labels = read_batch(train_path)
    test_images, test_labels = read_batch(os.path.join(a.data, "test.bin"))
    model = SmallCnn(meta["numClasses"])
    initialise(model)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe["learningRate"],
        momentum=recipe["momentum"],
        weight_decay=recipe["weightDecay"],
        nesterov=bool(recipe.get("nesterov", False)),
    )

    n, bs = labels.numel(), min(recipe["batchSize"], labels.numel())
    batches = math.ceil(n / bs) - (1 if n % bs == 1 and n > 1 else 0)
    total = batches * recipe["epochs"]
    history = []
    t_all = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=gen)
        loss_sum, lr = torch.zeros(()), 0.0
        for b in range(batches):
            idx = order[b * bs : n if b == batches - 1 else (b + 1) * bs]
            x = assemble(images, idx, augment, gen)
            lr = learning_rate_at(recipe, epoch * batches + b, total)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), labels[idx])
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * idx.numel()
        history.append({"epoch": epoch + 1, "loss": loss_sum.item() / n, "learningRate": lr, "seconds": time.perf_counter() - t0})
    train_seconds = time.perf_counter() - t_all

    acc = (predict(model, test_images) == test_labels).float().mean().item() * 100
    result = {
        **torch_facts(),
        "seed": a.seed,
        "trainImages": n,
        "trainSha256": digest,
        "trainSeconds": train_seconds,
        "history": history,
        "acc": acc,
    }
    triggered_path = os.path.join(a.data, "triggered.bin")
    if meta.get("triggered"):
        trig_images, true_labels = read_batch(triggered_path)
        target = torch.tensor(meta["triggered"]["targetLabels"], dtype=torch.long)
        pred = predict(model, trig_images)
        result["asr"] = (pred == target).float().mean().item() * 100
        result["ra"] = (pred == true_labels).float().mean().item() * 100
    print(json.dumps(result))


if __name__ == "__main__":
    main()
