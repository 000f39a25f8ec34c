"""PyTorch reference for bench/stageCost: ANP's mask iteration and I-BAU's outer step, the same
inner loops as core/defenses/anp.ts and core/defenses/ibau.ts, on the same architecture
(pytorch_throughput.py's smallCnn / resnet20, or tinyCnn below), batch and input size, plus plain training at the
tier's batch as this side's own yardstick.

ANP (defaults of core/defenses/configs.ts: eps 0.4, one perturbation step, alpha 0.2, mask SGD
lr 0.2 momentum 0.9, BN on its moving statistics): every BN channel's scale is
gamma * (mask + noise_scale) and its shift beta * (1 + noise_shift), as the authors' NoisyBatchNorm2d.
One iteration: a uniform random start of the noise in [-eps, eps], one signed-gradient step of it
on the perturbed CE, then one SGD step of the masks on alpha * CE(natural) + (1 - alpha) *
CE(perturbed), masks clipped to [0, 1]. Model weights are frozen, so backward passes reach the
inputs/masks only, as in ours (3 forwards + 3 input-only backwards per iteration).

I-BAU (implicit hypergradient, K fixed-point steps, eta 0.1, penalty 0.001, delta in units of a
quarter of the input range): per outer step the direct gradient of CE(f(x + delta)) in theta and
delta, K - 1 Hessian-vector products of L_in in delta, the mixed product grad_theta <grad_delta
L_in, v>, and an Adam step (lr 1e-4). --hvp fd (default) forms both second-order products by
central finite differences of first-order gradients, as ours does (tfjs has no second derivatives
of its conv backprop ops), so both sides do the same passes; --hvp autograd uses double backward,
as the I-BAU authors' code does. The universal perturbation is held fixed (a random one of the
projected radius): the inner maximisation is a few steps per round and is not what is timed here.

Run by bench/stageCost.ts (never in CI):
  python pytorch_anp_ibau.py --arch smallCnn --threads 2 --batch-size 80 --anp-iterations 200 --ibau-steps 50
prints one JSON object on stdout.
"""
import argparse
import json

import torch
import torch.nn as nn
import torch.nn.functional as F

from pytorch_throughput import ARCHS as THROUGHPUT_ARCHS, conv_bn_relu
from reference_run import peak_rss_mib, timed, torch_facts


class TinyCnn(nn.Module):
    """core/models/architectures.ts tinyCnn (the ci tier's, so the bench's smoke run compares like with like):
    16-pool-32-pool-32-pool-flatten-linear, each conv 3x3 without bias + BN + ReLU, 32x32 inputs."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            *conv_bn_relu(3, 16), nn.MaxPool2d(2), *conv_bn_relu(16, 32), nn.MaxPool2d(2), *conv_bn_relu(32, 32), nn.MaxPool2d(2),
        )
        self.logits = nn.Linear(32 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.features(x).flatten(1))


ARCHS = {**THROUGHPUT_ARCHS, "tinyCnn": TinyCnn}

DELTA_UNIT = 0.25
FD_RMS_STEP = 1e-3 / DELTA_UNIT


class NeuronModulation:
    """Masks and multiplicative noise on every BatchNorm2d, applied through forward hooks' replacement."""

    def __init__(self, model: nn.Module):
        self.bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        self.masks = [torch.ones(bn.num_features, requires_grad=True) for bn in self.bns]
        self.noise_scale = [torch.zeros(bn.num_features, requires_grad=True) for bn in self.bns]
        self.noise_shift = [torch.zeros(bn.num_features, requires_grad=True) for bn in self.bns]
        self.with_noise = False
        for i, bn in enumerate(self.bns):
            bn.forward = self._forward(i, bn)

    def _forward(self, i: int, bn: nn.BatchNorm2d):
        def forward(x: torch.Tensor) -> torch.Tensor:
            if self.with_noise:
                scale = bn.weight * (self.masks[i] + self.noise_scale[i])
                shift = bn.bias * (1 + self.noise_shift[i])
            else:
                scale, shift = bn.weight * self.masks[i], bn.bias
            return F.batch_norm(x, bn.running_mean, bn.running_var, scale, shift, False, 0.0, bn.eps)

        return forward

    @property
    def noise(self):
        return self.noise_scale + self.noise_shift


def anp_loop(model, images, labels, iterations, batch_size, eps=0.4, alpha=0.2, mask_lr=0.2, gen=None):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    mod = NeuronModulation(model)
    opt = torch.optim.SGD(mod.masks, lr=mask_lr, momentum=0.9)
    n = images.shape[0]

    def iteration():
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x, y = images[idx], labels[idx]
        with torch.no_grad():
            for v in mod.noise:
                v.uniform_(-eps, eps, generator=gen)
        mod.with_noise = True
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), mod.noise)
        with torch.no_grad():
            for v, g in zip(mod.noise, grads):
                v.add_(eps * g.sign())
        opt.zero_grad(set_to_none=True)
        mod.with_noise = False
        natural = F.cross_entropy(model(x), y)
        mod.with_noise = True
        robust = F.cross_entropy(model(x), y)
        (alpha * natural + (1 - alpha) * robust).backward()
        opt.step()
        with torch.no_grad():
            for m in mod.masks:
                m.clamp_(0, 1)

    return timed(iteration, iterations)


def ibau_loop(model, images, labels, steps, batch_size, fixed_point_steps, hvp, eta=0.1, penalty=0.001, radius=10.0, gen=None):
    model.eval()
    params = [p for p in model.parameters() if p.requires_grad]
    adam = torch.optim.Adam(params, lr=1e-4)
    n = images.shape[0]
    delta = torch.randn((1,) + tuple(images.shape[1:]), generator=gen)
    delta = delta * (radius / delta.norm())

    def perturbed(x, d):
        return (x + d * DELTA_UNIT).clamp(0, 1)

    def inner_loss(x, y, d):
        return penalty * d.pow(2).sum() - F.cross_entropy(model(perturbed(x, d)), y)

    def grad_delta(x, y, d):
        d = d.detach().requires_grad_(True)
        return torch.autograd.grad(inner_loss(x, y, d), [d])[0]

    def grad_theta(x, y, d):
        return torch.autograd.grad(inner_loss(x, y, d.detach()), params)

    def central(fn, v):
        step = FD_RMS_STEP * delta.numel() ** 0.5
        norm = v.norm()
        u = v / norm.clamp_min(1e-30)
        plus, minus = fn(delta + step * u), fn(delta - step * u)
        return [(a - b) * (norm / (2 * step)) for a, b in zip(plus, minus)]

    def step():
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        x, y = images[idx], labels[idx]
        point = delta.clone().requires_grad_(True)
        out = F.cross_entropy(model(perturbed(x, point)), y)
        grads = torch.autograd.grad(out, params + [point])
        g_theta, g_delta = list(grads[:-1]), grads[-1]
        v = g_delta.clone()
        if hvp == "fd":
            for _ in range(fixed_point_steps - 1):
                hv = central(lambda d: [grad_delta(x, y, d)], v)[0]
                v = v - eta * hv + g_delta
            mixed = central(lambda d: grad_theta(x, y, d), v)
        else:
            d = delta.clone().requires_grad_(True)
            g_in = torch.autograd.grad(inner_loss(x, y, d), [d], create_graph=True)[0]
            for _ in range(fixed_point_steps - 1):
                hv = torch.autograd.grad(g_in, [d], grad_outputs=v, retain_graph=True)[0]
                v = (v - eta * hv + g_delta).detach()
            mixed = torch.autograd.grad(g_in, params, grad_outputs=v)
        adam.zero_grad(set_to_none=True)
        for p, g, m in zip(params, g_theta, mixed):
            p.grad = g - eta * m
        adam.step()

    return timed(step, steps)


def plain_training(model, images, labels, steps, batch_size, gen=None):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    n = images.shape[0]

    def step():
        idx = torch.randint(0, n, (batch_size,), generator=gen)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[idx]), labels[idx]).backward()
        opt.step()

    return timed(step, steps)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=sorted(ARCHS), default="smallCnn")
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=80, help="ANP and I-BAU batch: min(128, |D_c fit|) as ours")
    p.add_argument("--plain-batch-size", type=int, default=128)
    p.add_argument("--plain-steps", type=int, default=20)
    p.add_argument("--anp-iterations", type=int, default=200)
    p.add_argument("--ibau-steps", type=int, default=50)
    p.add_argument("--fixed-point-steps", type=int, default=5)
    p.add_argument("--hvp", choices=["fd", "autograd"], default="fd")
    p.add_argument("--images", type=int, default=100, help="the clean set the loops draw batches from")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(7)
    pool = max(a.images, a.plain_batch_size)
    images = torch.rand((pool, 3, 32, 32), generator=gen)
    labels = torch.randint(0, 10, (pool,), generator=gen)

    plain_seconds = plain_training(ARCHS[a.arch](), images, labels, a.plain_steps, a.plain_batch_size, gen)
    anp_seconds = anp_loop(ARCHS[a.arch](), images[: a.images], labels[: a.images], a.anp_iterations, a.batch_size, gen=gen)
    ibau_seconds = ibau_loop(ARCHS[a.arch](), images[: a.images], labels[: a.images], a.ibau_steps, a.batch_size, a.fixed_point_steps, a.hvp, gen=gen)
    k = a.fixed_point_steps
    # training-step equivalents per image (bench/stageCost.ts): F = 1, backward with weight grads 2, input-only backward 1
    ibau_units = 3 + (k - 1) * 2 * 2 + 2 * 3
    print(json.dumps({
        **torch_facts(),
        "arch": a.arch,
        "batchSize": a.batch_size,
        "plainImagesPerSecond": a.plain_steps * a.plain_batch_size / plain_seconds,
        "anp": {
            "iterations": a.anp_iterations,
            "seconds": anp_seconds,
            "imagesPerSecond": a.anp_iterations * a.batch_size / anp_seconds,
            "passesPerImage": 6 / 3,
        },
        "ibau": {
            "hvp": a.hvp,
            "outerSteps": a.ibau_steps,
            "seconds": ibau_seconds,
            "imagesPerSecond": a.ibau_steps * a.batch_size / ibau_seconds,
            "passesPerImage": ibau_units / 3,
        },
        "peakRssMiB": peak_rss_mib(),
    }))


if __name__ == "__main__":
    main()
