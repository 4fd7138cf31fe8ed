#!/usr/bin/env python3
"""Reference for translator/src/encoder.rs: StreamSpeech's own ChunkS2TConformerEncoder
(researches/chunk_unity/models/s2t_conformer.py, with its chunk conformer layers and uni_unity's
ESPnet relative-position attention) built from an args Namespace like the training script's,
small widths (d 32, FFN 64, 4 heads, 2 layers, conv channels 64, depthwise kernel 31), seeded
random weights (BatchNorm running statistics randomised too, so eval BatchNorm matters), on the
CMVN features of translator/tests/fixtures/fbank_ref.safetensors; chunk sizes none and 8.

The upstream module files are loaded directly (their package __init__ files import the whole
model zoo); fairseq itself comes from PyPI `fairseq-fixed==0.12.3.1`.

Run by hand (Python 3.11, torch==2.4.1, fairseq-fixed==0.12.3.1, numpy<2, safetensors):
    python3 scripts/make_encoder_fixture.py --streamspeech PATH/TO/StreamSpeech
Writes translator/tests/fixtures/encoder_ref.safetensors.
"""
import argparse
import sys

import torch
from streamspeech_upstream import FIXTURES as FIX, load_module, streamspeech_checkout
from safetensors.torch import load_file, save_file

def main():
    repo = streamspeech_checkout()
    for dotted in ["chunk_unity.modules.chunk_causal_conv1d", "chunk_unity.modules.convolution",
                   "uni_unity.modules.multihead_attention", "uni_unity.modules.espnet_multihead_attention",
                   "chunk_unity.modules.conformer_layer", "chunk_unity.models.s2t_conformer"]:
        load_module(repo, dotted)
    Encoder = sys.modules["chunk_unity.models.s2t_conformer"].ChunkS2TConformerEncoder
    x = load_file(str(FIX / "fbank_ref.safetensors"))["cmvn"].unsqueeze(0)
    out = {}
    base = dict(encoder_freezing_updates=0, encoder_embed_dim=32, no_scale_embedding=False, conv_version="s2t_transformer",
                input_feat_per_channel=80, input_channels=1, conv_channels=64, conv_kernel_sizes="5,5", pos_enc_type="rel_pos",
                max_source_positions=6000, dropout=0.0, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                depthwise_conv_kernel_size=31, attn_type="espnet", fp16=False, encoder_layers=2)
    torch.manual_seed(19)
    reference = Encoder(argparse.Namespace(**base, chunk_size=8))
    with torch.no_grad():
        for name, p in reference.named_buffers():
            if name.endswith("running_mean"):
                p.copy_(torch.randn_like(p) * 0.1)
            elif name.endswith("running_var"):
                p.copy_(torch.rand_like(p) + 0.5)
        for name, p in reference.named_parameters():
            if "batch_norm" in name:
                p.copy_(torch.randn_like(p) * 0.1 + (1.0 if name.endswith("weight") else 0.0))
    state = reference.state_dict()
    for name, p in state.items():
        if not name.endswith("num_batches_tracked"):
            out[f"weights.{name}"] = p.contiguous().float()
    for chunk in [None, 8]:
        m = Encoder(argparse.Namespace(**base, chunk_size=chunk))
        m.load_state_dict(state)
        m.eval()
        with torch.no_grad():
            r = m(x, torch.tensor([x.shape[1]]), return_all_hiddens=True)
        for i, s in enumerate(r["encoder_states"]):
            out[f"state{i}.chunk{chunk or 0}"] = s[:, 0, :].contiguous()
        print(f"chunk {chunk}: {tuple(r['encoder_out'][0].shape)}")
    save_file(out, str(FIX / "encoder_ref.safetensors"))
    (FIX / "encoder_ref.safetensors").chmod(0o644)


if __name__ == "__main__":
    main()
