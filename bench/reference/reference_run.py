"""What the PyTorch reference scripts share around their own loops: prediction in batches of
uint8 NHWC images (as ntml's evaluation scales them, to [0, 1] without normalisation), timing
after one warm-up call, and the fields their JSON reports open and end with.
Imported by its neighbours (run as scripts, Python puts this folder first on the import path).
"""
import resource
import time
from typing import Callable

import torch
import torch.nn as nn


@torch.inference_mode()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """Predicted labels of uint8 NHWC images, in eval mode."""
    model.eval()
    out = torch.empty(images.shape[0], dtype=torch.long)
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].permute(0, 3, 1, 2).float().div_(255).contiguous()
        out[start : start + batch_size] = model(x).argmax(-1)
    return out


def timed(step: Callable[[], object], count: int) -> float:
    """Seconds for `count` calls of `step` after one untimed warm-up call (first-call allocations
    and thread start-up are not what is measured)."""
    step()
    t0 = time.perf_counter()
    for _ in range(count):
        step()
    return time.perf_counter() - t0


def torch_facts() -> dict:
    """The fields every report opens with: which implementation, torch version and threads."""
    return {"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads()}


def peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux: the process's peak over its whole life (one configuration)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
