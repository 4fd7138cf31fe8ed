#!/usr/bin/env python3
"""Times the reference runtimes on the same weights and mel as `cargo xtask bench`.

    pip install torch safetensors onnx onnxruntime
    python3 scripts/bench_reference.py --model models/hifigan_v1_universal.safetensors \
        --mel target/bench/mel.safetensors

`cargo xtask bench --reference` writes the mel and runs this script itself, so its figures land
in the same table as ours. Prints JSON: {"torch": {"1": s, "2": s}, "onnxruntime": {...}} with the
best-of-3 wall time (seconds) of one forward over the whole mel at 1 and 2 intra-op threads.
A runtime that is not installed is reported as null. Not needed by CI.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Generator  # noqa: E402


def best_of(fn, n=3):
    fn()  # warm-up
    best = float("inf")
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--mel", required=True)
    args = ap.parse_args()
    with safe_open(args.model, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    model = Generator(cfg, wn=None)
    model.load_state_dict(load_file(args.model), strict=True)
    model.eval()
    mel = load_file(args.mel)["mel"]
    out = {"torch": {}, "onnxruntime": None, "mel_shape": list(mel.shape)}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        with torch.inference_mode():
            out["torch"][str(threads)] = best_of(lambda: model(mel))
        print(f"torch eager, {threads} threads: {out['torch'][str(threads)]:.3f} s", file=sys.stderr)
    try:
        import onnxruntime as ort
    except ImportError:
        print("onnxruntime not installed: skipped", file=sys.stderr)
    else:
        out["onnxruntime"] = {}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "v1.onnx")
            torch.onnx.export(model, (mel[:, :, :64],), path, input_names=["mel"], output_names=["audio"],
                              dynamic_axes={"mel": {2: "frames"}, "audio": {2: "samples"}}, opset_version=17,
                              dynamo=False)
            feed = {"mel": mel.numpy()}
            for threads in (1, 2):
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                out["onnxruntime"][str(threads)] = best_of(lambda: sess.run(None, feed))
                print(f"onnxruntime {ort.__version__}, {threads} threads: {out['onnxruntime'][str(threads)]:.3f} s",
                      file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
