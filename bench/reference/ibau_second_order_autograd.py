"""I-BAU's second-order products by PyTorch autograd, against ours (bench/reference/ibauSecondOrder.ts).

Reads the case the Node script wrote (the model's layers in graph order, weights in TensorFlow layouts, the
batch, delta, v and our products), rebuilds the network in float64 with the weights in those
layouts (so gradients come out in them too), and computes what the authors' hypergradient code
computes with torch.autograd.grad(..., create_graph=True):
  L_in(delta, theta) = penalty * ||delta||^2 - CE(f(clamp(x + unit * range * delta)), y)
  H v                = d/d delta <grad_delta L_in, v>
  mixed product      = d/d theta <grad_delta L_in, v>
Prints the relative error of each of our products (frozen pattern, finite differences) against
autograd's, overall and per variable. A check for the bench, never part of the test suite.
"""
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def tensor(values, shape=None):
    t = torch.tensor(values, dtype=torch.float64)
    return t.reshape(shape) if shape is not None else t


def build(layers):
    """The parameters (TF layouts, requiring grad) by TF variable name, and the forward on NHWC input."""
    params = {}
    for layer in layers:
        if layer["type"] == "conv":
            params[layer["name"] + "/kernel"] = tensor(layer["kernel"], layer["shape"]).requires_grad_()
            if layer["bias"] is not None:
                params[layer["name"] + "/bias"] = tensor(layer["bias"]).requires_grad_()
        elif layer["type"] == "bn":
            params[layer["name"] + "/gamma"] = tensor(layer["gamma"]).requires_grad_()
            params[layer["name"] + "/beta"] = tensor(layer["beta"]).requires_grad_()
        elif layer["type"] == "dense":
            params[layer["name"] + "/kernel"] = tensor(layer["kernel"], layer["shape"]).requires_grad_()
            params[layer["name"] + "/bias"] = tensor(layer["bias"]).requires_grad_()

    def same_padding(size, kernel, stride):
        """TensorFlow's 'same' padding (before, after) along one axis: the odd pixel goes after."""
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2

    def apply(layer, xs):
        kind = layer["type"]
        x = xs[0]
        if kind == "conv":
            kernel = params[layer["name"] + "/kernel"].permute(3, 2, 0, 1)  # HWIO -> OIHW
            stride = layer["strides"][0]
            if layer["padding"] == "same":
                top, bottom = same_padding(x.shape[2], kernel.shape[2], stride)
                left, right = same_padding(x.shape[3], kernel.shape[3], stride)
                x = F.pad(x, (left, right, top, bottom))
            return F.conv2d(x, kernel, params.get(layer["name"] + "/bias"), stride=stride)
        if kind == "bn":
            mean, var = tensor(layer["mean"]), tensor(layer["variance"])
            return F.batch_norm(x, mean, var, params[layer["name"] + "/gamma"], params[layer["name"] + "/beta"], training=False, eps=layer["epsilon"])
        if kind == "relu":
            return F.relu(x)
        if kind == "maxpool":
            return F.max_pool2d(x, layer["pool"])
        if kind == "flatten":
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # TF flattens NHWC
        if kind == "gap":
            return x.mean(dim=(2, 3))
        if kind == "add":
            return sum(xs[1:], xs[0])
        if kind == "dense":
            return x @ params[layer["name"] + "/kernel"] + params[layer["name"] + "/bias"]
        raise ValueError(f"unknown layer type {kind}")

    def forward(x_nhwc):
        outputs = {}
        for layer in layers:  # graph order
            if layer["type"] == "input":
                outputs[layer["name"]] = x_nhwc.permute(0, 3, 1, 2)  # NCHW
            else:
                outputs[layer["name"]] = apply(layer, [outputs[n] for n in layer["inputs"]])
        return outputs[layers[-1]["name"]]

    return params, forward


def relative_error(ours, reference):
    return (torch.linalg.norm(ours - reference) / torch.linalg.norm(reference)).item()


def main(path):
    with open(path) as f:
        case = json.load(f)
    params, forward = build(case["layers"])
    names = case["varNames"]
    assert set(names) == set(params), f"variables differ: {sorted(set(names) ^ set(params))}"
    x = tensor(case["x"], case["xShape"])
    y = torch.tensor(case["y"], dtype=torch.long)
    shape = [1] + case["xShape"][1:]
    delta = tensor(case["delta"], shape).requires_grad_()
    v = tensor(case["v"], shape)
    scale = case["deltaUnit"] * (case["high"] - case["low"])

    x_adv = torch.clamp(x + scale * delta, case["low"], case["high"])
    inner = case["penalty"] * (delta**2).sum() - F.cross_entropy(forward(x_adv), y)
    (g_delta,) = torch.autograd.grad(inner, delta, create_graph=True)
    directional = (g_delta * v).sum()
    grads = torch.autograd.grad(directional, [delta] + [params[n] for n in names])
    hv, mixed = grads[0], grads[1:]

    print(f"PyTorch {torch.__version__} autograd (float64), {case['arch']}, batch {x.shape[0]}; ||H v|| {torch.linalg.norm(hv).item():.4e}")
    for method, products in case["ours"].items():
        ours_hv = tensor(products["hv"], shape)
        ours_mixed = [tensor(m, params[n].shape) for n, m in zip(names, products["mixed"])]
        flat_ours = torch.cat([m.flatten() for m in ours_mixed])
        flat_ref = torch.cat([m.flatten() for m in mixed])
        per_var = [relative_error(o, r) for o, r in zip(ours_mixed, mixed)]
        worst = max(range(len(names)), key=lambda i: per_var[i])
        print(
            f"{method}: H v relative error {relative_error(ours_hv, hv):.2e}; mixed product {relative_error(flat_ours, flat_ref):.2e} "
            f"(per variable median {sorted(per_var)[len(per_var) // 2]:.2e}, worst {per_var[worst]:.2e} at {names[worst]})"
        )


if __name__ == "__main__":
    main(sys.argv[1])
