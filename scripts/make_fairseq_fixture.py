#!/usr/bin/env python3
"""A small checkpoint in fairseq's training-checkpoint layout, written by torch.save itself.

fairseq 0.12 saves `{"args": None, "cfg": {..., "model": Namespace, "task": Namespace},
"model": OrderedDict (fp16 when trained with --fp16), "optimizer_history": [...],
"last_optimizer_state": {...}, "extra_state": {...}}`. StreamSpeech's released checkpoints have
this layout (with `cfg["model"]`/`cfg["task"]` as argparse Namespaces). This fixture has the same
structure with tiny tensors, in the zip format and the legacy format, for the loader's tests:
`vocoder/tests/fixtures/fairseq/{zip,legacy}.pt`.

Run by hand (torch==2.4.1): python3 scripts/make_fairseq_fixture.py
"""
from argparse import Namespace
from collections import OrderedDict
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "vocoder/tests/fixtures/fairseq"


def main():
    g = torch.Generator().manual_seed(18)
    model = OrderedDict()
    model["encoder.layers.0.fc1.weight"] = torch.randn(8, 4, generator=g).half()
    model["encoder.layers.0.fc1.bias"] = torch.randn(8, generator=g).half()
    model["decoder.embed_tokens.weight"] = torch.randn(6, 4, generator=g).half()
    # Tied output projection: the same storage under a second name, as fairseq saves it.
    model["decoder.output_projection.weight"] = model["decoder.embed_tokens.weight"]
    model["encoder.subsample.conv.0.weight"] = torch.randn(4, 2, 5, generator=g).to(torch.bfloat16)
    model["encoder.layers.0.norm.running_mean"] = torch.zeros(4)
    model["encoder.layers.0.norm.num_batches_tracked"] = torch.tensor(7)
    cfg_model = Namespace(arch="streamspeech", encoder_layers=12, encoder_embed_dim=256, encoder_attention_heads=4,
                          dropout=0.1, share_decoder_input_output_embed=True, chunk_size=None, fp16=True, conv_kernel_sizes="5,5")
    cfg_task = Namespace(_name="speech_to_speech_ctc", data="configs/es-en", target_is_code=True, target_code_size=1000)
    ckpt = {
        "args": None,
        "cfg": {"_name": None, "common": {"fp16": True, "seed": 1}, "model": cfg_model, "task": cfg_task},
        "model": model,
        "criterion": None,
        "optimizer_history": [{"criterion_name": "SpeechToUnit2passCTCASRSTMultitaskTaskCriterion", "optimizer_name": "FP16Optimizer",
                               "lr_scheduler_state": {"best": 3.25}, "num_updates": 100}],
        "last_optimizer_state": {"state": {0: {"step": 100, "exp_avg": torch.randn(64, 64, generator=g), "exp_avg_sq": torch.rand(64, 64, generator=g)}},
                                 "param_groups": [{"lr": 0.001, "betas": (0.9, 0.98), "params": [0]}]},
        "extra_state": {"epoch": 3, "previous_best": 3.25},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, OUT / "zip.pt")
    torch.save(ckpt, OUT / "legacy.pt", _use_new_zipfile_serialization=False)
    for f in sorted(OUT.iterdir()):
        f.chmod(0o644)
        print(f, f.stat().st_size)


if __name__ == "__main__":
    main()
