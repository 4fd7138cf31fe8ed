#!/usr/bin/env python3
"""Reference for translator/src/mt_decoder.rs: StreamSpeech's own first-pass MT decoder
(researches/ctc_unity/modules/transformer_decoder.py `TransformerDecoder`, arguments from
fairseq's `multitask_text_transformer_decoder_arch` as StreamSpeechModel.build_multitask_decoder
does) with small widths (d 32, FFN 64, 4 heads, 2 layers, 40-symbol dictionary, cross-attention
to a 24-d encoder), seeded random weights, on an encoder output of 77 frames.

Random weights give a degenerate arg-max (the tied embedding makes the decoder copy its input
token forever), so, deterministically: the tied embedding is scaled ×4, the final LayerNorm's
weight negated (an "anti-copy" decoder) and the layers' LayerNorm weights and biases drawn from
N(0, 1) (seed 22); the greedy decode then alternates with a position-dependent exception. Records teacher-forced logits for a fixed token sequence
and the greedy tokens (the decoder's own incremental decoding, from EOS, min length 1).

Run by hand (Python 3.11, torch==2.4.1, fairseq-fixed==0.12.3.1, safetensors):
    python3 scripts/make_mt_decoder_fixture.py --streamspeech PATH/TO/StreamSpeech
Writes translator/tests/fixtures/mt_decoder_ref.safetensors.
"""
import argparse

import torch
from fairseq.data import Dictionary
from fairseq.models.speech_to_speech.s2s_conformer_unity import multitask_text_transformer_decoder_arch
from fairseq.models.transformer import TransformerModelBase
from streamspeech_upstream import FIXTURES as FIX, load_module, streamspeech_checkout
from safetensors.torch import save_file

def main():
    repo = streamspeech_checkout()
    load_module(repo, "ctc_unity.modules.multihead_attention")
    load_module(repo, "ctc_unity.modules.transformer_layer")
    Decoder = load_module(repo, "ctc_unity.modules.transformer_decoder").TransformerDecoder
    d = Dictionary()
    for i in range(36):
        d.add_symbol(f"tok{i}")
    args = argparse.Namespace(dropout=0.0, encoder_embed_dim=24, decoder_ffn_embed_dim=64)
    multitask_text_transformer_decoder_arch(args, 2, 32, 4)
    torch.manual_seed(20)
    embed = TransformerModelBase.build_embedding(args, d, args.decoder_embed_dim)
    dec = Decoder(args, d, embed_tokens=embed)
    with torch.no_grad():
        embed.weight.mul_(4.0)
        dec.layer_norm.weight.mul_(-1.0)
        if True:
            g = torch.Generator().manual_seed(22)
            for layer in dec.layers:
                for ln in [layer.self_attn_layer_norm, layer.encoder_attn_layer_norm, layer.final_layer_norm]:
                    ln.weight.copy_(torch.randn(32, generator=g))
                    ln.bias.copy_(torch.randn(32, generator=g))
    dec.eval()
    enc = torch.randn(77, 1, 24, generator=torch.Generator().manual_seed(21))
    encoder_out = {"encoder_out": [enc], "encoder_padding_mask": []}
    tokens = torch.tensor([[2, 7, 11, 30, 4, 19, 25, 9]])
    with torch.no_grad():
        logits, _ = dec(tokens, encoder_out=encoder_out)
        # Greedy, incremental (how fairseq decodes), EOS = 2, at least one token.
        incremental = {}
        seq = [d.eos()]
        for step in range(30):
            lp, _ = dec(torch.tensor([seq]), encoder_out=encoder_out, incremental_state=incremental)
            lp = lp[0, -1].clone()
            if step == 0:
                lp[d.eos()] = float("-inf")
            nxt = int(lp.argmax())
            if nxt == d.eos():
                break
            seq.append(nxt)
    print(f"vocab {len(d)}; greedy {seq[1:]}")
    out = {f"weights.{k}": v.clone().contiguous() for k, v in dec.state_dict().items() if not k.endswith("_float_tensor")}
    out.update({"encoder_out": enc[:, 0, :].contiguous(), "tokens": tokens[0].to(torch.int64), "logits": logits[0].contiguous(),
                "greedy": torch.tensor(seq[1:], dtype=torch.int64)})
    save_file(out, str(FIX / "mt_decoder_ref.safetensors"))
    (FIX / "mt_decoder_ref.safetensors").chmod(0o644)


if __name__ == "__main__":
    main()
