#!/usr/bin/env python3
"""Times the reference runtimes on the same weights and mel as `cargo xtask bench`.

    pip install safetensors numpy onnx onnxruntime [torch]
    python3 scripts/bench_reference.py --model models/hifigan_v1_universal.safetensors \
        --mel target/bench/mel.safetensors [--threads 1,2]

`cargo xtask bench --reference` writes the mel and runs this script itself, so its figures land
in the same table as ours. Prints JSON: {"torch": {"1": s, "2": s}, "onnxruntime": {...}} with the
best-of-`--repeats` (3) wall time (seconds) of one forward over the whole mel (after a short
warm-up) at 1 and 2 intra-op threads.
A runtime that is not installed is reported as null. onnxruntime runs the graph that
`scripts/onnx_hifigan.py` builds from the same file (equal to PyTorch's generator within 5e-8 on
the tiny fixtures), so it needs no PyTorch. Not needed by CI.
"""
import argparse
import json
import os
import sys
import tempfile
import time

from safetensors.numpy import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def best_of(fn, n=3, warm_up=None):
    (warm_up or fn)()
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
    ap.add_argument("--threads", default="1,2", help="intra-op thread counts, comma-separated")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per case (the best is kept)")
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",")]
    mel = load_file(args.mel)["mel"]
    out = {"torch": None, "onnxruntime": None, "mel_shape": list(mel.shape)}
    try:
        import torch
        from make_fixtures import Generator
        from safetensors import safe_open
        from safetensors.torch import load_file as load_torch
    except ImportError:
        print("torch not installed: skipped", file=sys.stderr)
    else:
        torch.backends.mkldnn.enabled = False  # its ConvTranspose1d is ~1000x slower on this CPU
        with safe_open(args.model, "pt") as f:
            cfg = json.loads(f.metadata()["config"])
        model = Generator(cfg, wn=None)
        model.load_state_dict(load_torch(args.model), strict=True)
        model.eval()
        mel_t = torch.from_numpy(mel)
        out["torch"] = {}
        for threads in thread_counts:
            torch.set_num_threads(threads)
            with torch.inference_mode():
                out["torch"][str(threads)] = best_of(lambda: model(mel_t), args.repeats, lambda: model(mel_t[:, :, :64]))
            print(f"torch eager, {threads} threads: {out['torch'][str(threads)]:.3f} s", file=sys.stderr)
    try:
        import onnxruntime as ort
        from onnx_hifigan import build
        import onnx
    except ImportError:
        print("onnxruntime/onnx not installed: skipped", file=sys.stderr)
    else:
        out["onnxruntime"] = {}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "v1.onnx")
            onnx.save(build(args.model), path)
            feed = {"mel": mel}
            for threads in thread_counts:
                so = ort.SessionOptions()
                so.intra_op_num_threads = threads
                so.inter_op_num_threads = 1
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
                out["onnxruntime"][str(threads)] = best_of(lambda: sess.run(None, feed), args.repeats,
                                                           lambda: sess.run(None, {"mel": mel[:, :, :64]}))
                print(f"onnxruntime {ort.__version__}, {threads} threads: {out['onnxruntime'][str(threads)]:.3f} s",
                      file=sys.stderr)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
