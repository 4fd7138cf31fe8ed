#!/usr/bin/env python3
"""Reference for translator/src/subsampler.rs: StreamSpeech's own Conv1dSubsampler
(researches/chunk_unity/modules/convolution.py, with ChunkCausalConv1d) on the CMVN'd features of
translator/tests/fixtures/fbank_ref.safetensors, with seeded random weights, small widths (80 →
64 → GLU → 32 → 2·16 → GLU → 16) and kernels 5,5; chunk sizes none, 8 and 3.

The two upstream files are loaded directly (their package __init__ imports fairseq, which this
module does not need). Writes translator/tests/fixtures/subsampler_ref.safetensors.

Run by hand (torch==2.4.1, safetensors; Python 3.11):
    python3 scripts/make_subsampler_fixture.py --streamspeech PATH/TO/StreamSpeech
"""
import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "translator/tests/fixtures"


def load_upstream(repo: Path):
    mods = repo / "researches/chunk_unity/modules"
    for pkg in ["chunk_unity", "chunk_unity.modules"]:
        sys.modules.setdefault(pkg, types.ModuleType(pkg))
    for name in ["chunk_causal_conv1d", "convolution"]:
        spec = importlib.util.spec_from_file_location(f"chunk_unity.modules.{name}", mods / f"{name}.py")
        m = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = m
        spec.loader.exec_module(m)
    return sys.modules["chunk_unity.modules.convolution"].Conv1dSubsampler


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    args = ap.parse_args()
    torch.backends.mkldnn.enabled = False
    Conv1dSubsampler = load_upstream(args.streamspeech)
    x = load_file(str(FIX / "fbank_ref.safetensors"))["cmvn"].unsqueeze(0)  # 1 x T x 80
    out = {"input": x[0].contiguous()}
    torch.manual_seed(19)
    reference = Conv1dSubsampler(80, 64, 16, [5, 5], chunk_size=None)
    for name, p in reference.state_dict().items():
        out[f"weights.{name}"] = p.contiguous()
    for chunk in [None, 8, 3]:
        m = Conv1dSubsampler(80, 64, 16, [5, 5], chunk_size=chunk)
        m.load_state_dict(reference.state_dict())
        m.eval()
        with torch.no_grad():
            y, lengths = m(x, torch.tensor([x.shape[1]]))
        out[f"output.chunk{chunk or 0}"] = y[:, 0, :].contiguous()  # T' x 16
        print(f"chunk {chunk}: {tuple(y.shape)}, lengths {lengths.tolist()}")
    save_file(out, str(FIX / "subsampler_ref.safetensors"))
    (FIX / "subsampler_ref.safetensors").chmod(0o644)


if __name__ == "__main__":
    main()
