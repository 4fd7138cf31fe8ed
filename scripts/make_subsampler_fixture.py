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
import torch
from safetensors.torch import load_file, save_file
from streamspeech_upstream import FIXTURES as FIX, load_module, streamspeech_checkout


def main():
    repo = streamspeech_checkout()
    load_module(repo, "chunk_unity.modules.chunk_causal_conv1d")
    Conv1dSubsampler = load_module(repo, "chunk_unity.modules.convolution").Conv1dSubsampler
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
