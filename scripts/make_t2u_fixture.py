#!/usr/bin/env python3
"""Reference for translator/src/t2u.rs: StreamSpeech's own T2U encoder
(researches/ctc_unity/modules/transformer_encoder.py `UniTransformerEncoderNoEmb`, built as
StreamSpeechModel.build_text_encoder does, `--uni-encoder`) and CTC unit decoder
(ctc_transformer_unit_decoder.py `CTCTransformerUnitDecoder` with a StackedEmbedding, as
build_decoder does), small widths (d 32, FFN 64, 4 heads, 2 + 2 layers, 24 units + specials +
blank, upsample rate 5), seeded weights, on 6 random "MT decoder states".

Random weights give a degenerate arg-max; deterministically the tied embedding is scaled ×4 and
the decoder's final LayerNorm weight negated, so the greedy CTC decode emits several units.

Run by hand (Python 3.11, torch==2.4.1, fairseq-fixed==0.12.3.1, safetensors):
    python3 scripts/make_t2u_fixture.py --streamspeech PATH/TO/StreamSpeech
Writes translator/tests/fixtures/t2u_ref.safetensors.
"""
import argparse
import math

import torch
from fairseq.data import Dictionary
from fairseq.models.speech_to_speech.modules.stacked_embedding import StackedEmbedding
from fairseq.models.speech_to_speech.s2s_transformer import base_multitask_text_transformer_decoder_arch
from streamspeech_upstream import FIXTURES as FIX, load_module, streamspeech_checkout
from safetensors.torch import save_file

def main():
    repo = streamspeech_checkout()
    for m in ["ctc_unity.modules.multihead_attention", "ctc_unity.modules.transformer_layer", "ctc_unity.modules.transformer_decoder"]:
        load_module(repo, m)
    Encoder = load_module(repo, "ctc_unity.modules.transformer_encoder").UniTransformerEncoderNoEmb
    UnitDecoder = load_module(repo, "ctc_unity.modules.ctc_transformer_unit_decoder").CTCTransformerUnitDecoder
    units = Dictionary()
    for i in range(24):
        units.add_symbol(str(i))
    units.blank_index = units.add_symbol("<blank>")
    enc_args = argparse.Namespace(encoder_layers=2, encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=4,
                                  encoder_normalize_before=True, uni_encoder=True, dropout=0.0)
    dec_args = argparse.Namespace(decoder_layers=2, decoder_embed_dim=32, decoder_ffn_embed_dim=64, decoder_attention_heads=4,
                                  encoder_embed_dim=32, dropout=0.0, n_frames_per_step=1, ctc_upsample_rate=5)
    base_multitask_text_transformer_decoder_arch(dec_args)
    torch.manual_seed(23)
    encoder = Encoder(enc_args)
    embed = StackedEmbedding(len(units), 32, units.pad(), num_stacked=1)
    decoder = UnitDecoder(dec_args, units, embed)
    with torch.no_grad():
        embed.weight.mul_(4.0)
        decoder.layer_norm.weight.mul_(-1.0)
    encoder.eval()
    decoder.eval()
    x = torch.randn(6, 1, 32, generator=torch.Generator().manual_seed(24))
    with torch.no_grad():
        t2u = encoder(x, None)
        logits, _ = decoder(None, encoder_out=t2u)
        lprobs = torch.log_softmax(logits.float(), dim=-1)
        lprobs[:, :, units.pad()] = -math.inf
        lprobs[:, :, units.unk()] = -math.inf
        best = lprobs.max(dim=2)[1][0].tolist()
    dedup = [v for i, v in enumerate(best) if i == 0 or v != best[i - 1]]
    hyp = [v for v in dedup if v != units.blank_index and v != units.pad()]
    print(f"vocab {len(units)}, blank {units.blank_index}; units {hyp}")
    out = {f"encoder.{k}": v.clone().contiguous() for k, v in encoder.state_dict().items()}
    out.update({f"decoder.{k}": v.clone().contiguous() for k, v in decoder.state_dict().items() if not k.endswith("_float_tensor")})
    out.update({"mt_states": x[:, 0].contiguous(), "t2u_states": t2u["encoder_out"][0][:, 0].contiguous(), "logits": logits[0].contiguous(),
                "units": torch.tensor(hyp, dtype=torch.int64)})
    save_file(out, str(FIX / "t2u_ref.safetensors"))
    (FIX / "t2u_ref.safetensors").chmod(0o644)


if __name__ == "__main__":
    main()
