#!/usr/bin/env python3
"""Writes a HiFi-GAN generator (our `.safetensors`: plain weights, config in the metadata) as an
ONNX graph built op by op with `onnx.helper`, so onnxruntime can be timed without PyTorch.

    pip install onnx onnxruntime safetensors numpy
    python3 scripts/onnx_hifigan.py --model models/hifigan_v1_universal.safetensors --out v1.onnx \
        [--check MEL.safetensors AUDIO.safetensors]

The graph is jik876/hifi-gan's `Generator.forward` (as `scripts/make_fixtures.py` writes it):
conv_pre → per upsampling: LeakyReLU, ConvTranspose1d, mean of the resblocks (ResBlock1 or 2) →
LeakyReLU(final slope) → conv_post → tanh. Weight norm is already folded in our files.
`--check` runs the graph on a mel (`mel` `[1, mels, frames]`) and prints the max abs difference
to a reference audio (`audio`, any shape with the same number of samples).
"""
import argparse
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors import safe_open
from safetensors.numpy import load_file


def padding(k, d=1):
    return (k * d - d) // 2


def build(model_path):
    with safe_open(model_path, "np") as f:
        cfg = json.loads(f.metadata()["config"])
    w = load_file(model_path)
    nodes, inits = [], []
    used = set()

    def init(name):
        used.add(name)
        if name not in [i.name for i in inits]:
            inits.append(numpy_helper.from_array(w[name].astype(np.float32), name))
        return name

    count = [0]

    def fresh(prefix):
        count[0] += 1
        return f"{prefix}_{count[0]}"

    def conv(x, name, dilation=1, pad=None):
        k = w[name + ".weight"].shape[2]
        p = padding(k, dilation) if pad is None else pad
        y = fresh("conv")
        nodes.append(helper.make_node("Conv", [x, init(name + ".weight"), init(name + ".bias")], [y],
                                      dilations=[dilation], pads=[p, p], strides=[1], kernel_shape=[k]))
        return y

    def lrelu(x, slope):
        y = fresh("lrelu")
        nodes.append(helper.make_node("LeakyRelu", [x], [y], alpha=float(slope)))
        return y

    def add(a, b):
        y = fresh("add")
        nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    slope = cfg.get("lrelu_slope", 0.1)
    final_slope = cfg.get("final_lrelu_slope", 0.01)
    final_slope = 0.01 if final_slope is None else final_slope
    kernels, dilations = cfg["resblock_kernel_sizes"], cfg["resblock_dilation_sizes"]
    x = conv("mel", "conv_pre", pad=3)
    for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"])):
        x = lrelu(x, slope)
        y = fresh("up")
        nodes.append(helper.make_node("ConvTranspose", [x, init(f"ups.{i}.weight"), init(f"ups.{i}.bias")], [y],
                                      strides=[u], pads=[(k - u) // 2, (k - u) // 2], kernel_shape=[k]))
        x = y
        total = None
        for j, d in enumerate(dilations):
            r = x
            name = f"resblocks.{i * len(kernels) + j}"
            for m, dil in enumerate(d):
                if cfg["resblock"] == "1":
                    t = conv(lrelu(r, slope), f"{name}.convs1.{m}", dilation=dil)
                    t = conv(lrelu(t, slope), f"{name}.convs2.{m}")
                else:
                    t = conv(lrelu(r, slope), f"{name}.convs.{m}", dilation=dil)
                r = add(t, r)
            total = r if total is None else add(total, r)
        scale = fresh("scale")
        inits.append(numpy_helper.from_array(np.array(1.0 / len(kernels), dtype=np.float32), scale))
        y = fresh("mean")
        nodes.append(helper.make_node("Mul", [total, scale], [y]))
        x = y
    x = conv(lrelu(x, final_slope), "conv_post", pad=3)
    nodes.append(helper.make_node("Tanh", [x], ["audio"]))
    missing = sorted(set(w) - used)
    if missing:
        raise SystemExit(f"weights the graph did not use (not a HiFi-GAN V1/V2/V3 file?): {missing[:5]}")
    graph = helper.make_graph(
        nodes, "hifigan",
        [helper.make_tensor_value_info("mel", TensorProto.FLOAT, [1, cfg["num_mels"], "frames"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, [1, 1, "samples"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--check", nargs=2, metavar=("MEL", "AUDIO"))
    args = ap.parse_args()
    onnx.save(build(args.model), args.out)
    if args.check:
        import onnxruntime as ort
        mel = load_file(args.check[0])["mel"]
        ref = load_file(args.check[1])["audio"].reshape(-1)
        sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
        out = sess.run(None, {"mel": mel})[0].reshape(-1)
        n = min(len(out), len(ref))
        print(json.dumps({"samples": [len(out), len(ref)], "max_abs_diff": float(np.abs(out[:n] - ref[:n]).max())}))


if __name__ == "__main__":
    main()
