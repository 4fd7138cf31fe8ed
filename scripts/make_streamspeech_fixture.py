#!/usr/bin/env python3
"""A StreamSpeech checkpoint in the real format, built by StreamSpeech's own code.

Builds `StreamSpeechModel` through fairseq's task machinery exactly as fairseq-train does with the
es-en simultaneous training script's arguments (researches/ctc_unity/train_scripts/
train.simul-s2st.sh: task speech_to_speech_ctc, arch streamspeech, the multitask config with the
real 6000-piece dictionaries, 1000 units), and:
- `--small` (default): widths cut down (d 32, FFN 64, 4 heads, 2+2+2+2 layers, conv channels 64)
  so the file stays small; seeded weights in fp16 (the released models were trained with
  --fp16); saved as fairseq's trainer does (`{"args": None, "cfg": <container with argparse
  Namespaces>, "model": ..., "optimizer_history": ..., "last_optimizer_state": ...}`) with
  torch.save → translator/tests/fixtures/streamspeech/small.pt;
- the full-size es-en model's key/shape manifest (70.6 M parameters, no weights) →
  translator/tests/fixtures/streamspeech/manifest_es-en.json;
- every stage of the small model on real speech (the CMVN features of
  translator/tests/fixtures/fbank_ref.safetensors) → streamspeech/pipeline_ref.safetensors:
  encoder output, ASR and ST CTC logits and greedy pieces, the MT decoder's greedy tokens and
  final states, the T2U states, the unit logits and units. The stages are called as the agent
  calls them, on a whole utterance with the model's chunk size.

Random weights give degenerate arg-maxes (a decoder with tied embeddings copies its input token
forever). Deterministically, before saving: both decoders' embeddings are scaled ×4, their final
LayerNorm weights negated (an "anti-copy" decoder), and the CTC heads' weights scaled ×8, so
every stage emits a varied sequence.

Run by hand (Python 3.11, torch==2.4.1, fairseq-fixed==0.12.3.1):
    python3 scripts/make_streamspeech_fixture.py --streamspeech PATH/TO/StreamSpeech
"""
import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "translator/tests/fixtures/streamspeech"


def build(repo: Path, small: bool):
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    data = Path(tempfile.mkdtemp())
    (data / "config_gcmvn.yaml").write_text(
        f"global_cmvn:\n  stats_npz_path: {repo}/configs/es-en/gcmvn.npz\ninput_channels: 1\ninput_feat_per_channel: 80\n"
        "transforms:\n  '*':\n  - global_cmvn\n")
    mtl = (repo / "configs/es-en/config_mtl_asr_st_ctcst.yaml").read_text().replace("/data/zhangshaolei/StreamSpeech", str(repo))
    if small:
        mtl = mtl.replace("decoder_layers: 4", "decoder_layers: 2").replace("decoder_embed_dim: 512", "decoder_embed_dim: 32")
        mtl = mtl.replace("decoder_ffn_embed_dim: 2048", "decoder_ffn_embed_dim: 64").replace("decoder_attention_heads: 8", "decoder_attention_heads: 4")
    (data / "config_mtl_asr_st_ctcst.yaml").write_text(mtl)
    dims = (["--encoder-layers", "2", "--encoder-embed-dim", "32", "--encoder-ffn-embed-dim", "64", "--encoder-attention-heads", "4",
             "--translation-decoder-layers", "2", "--synthesizer-encoder-layers", "2",
             "--decoder-layers", "2", "--decoder-embed-dim", "32", "--decoder-ffn-embed-dim", "64", "--decoder-attention-heads", "4",
             "--conv-channels", "64"] if small else
            ["--encoder-layers", "12", "--encoder-embed-dim", "256", "--encoder-ffn-embed-dim", "2048", "--encoder-attention-heads", "4",
             "--translation-decoder-layers", "4", "--synthesizer-encoder-layers", "2",
             "--decoder-layers", "2", "--decoder-embed-dim", "512", "--decoder-ffn-embed-dim", "2048", "--decoder-attention-heads", "8"])
    argv = [str(data), "--user-dir", str(repo / "researches/ctc_unity"),
            "--config-yaml", "config_gcmvn.yaml", "--multitask-config-yaml", "config_mtl_asr_st_ctcst.yaml",
            "--task", "speech_to_speech_ctc", "--target-is-code", "--target-code-size", "1000", "--vocoder", "code_hifigan",
            "--criterion", "speech_to_unit_2pass_ctc_asr_st", "--label-smoothing", "0.1",
            "--arch", "streamspeech", "--share-decoder-input-output-embed", *dims,
            "--k1", "0", "--k2", "0", "--n1", "1", "--n2", "-1", "--chunk-size", "8", "--multichunk", "--uni-encoder",
            "--dropout", "0.1", "--attention-dropout", "0.1", "--relu-dropout", "0.1",
            "--ctc-upsample-rate", "25", "--max-target-positions", "1200", "--attn-type", "espnet", "--pos-enc-type", "rel_pos",
            "--optimizer", "adam", "--lr", "0.001", "--seed", "1", "--fp16"]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    cfg = convert_namespace_to_omegaconf(args)
    utils.import_user_module(cfg.common)
    task = tasks.setup_task(cfg.task)
    return cfg, task.build_model(cfg.model)


def ctc_greedy(logits, pad, unk, blank):
    lp = torch.log_softmax(logits.float(), dim=-1)
    lp[:, pad] = -math.inf
    lp[:, unk] = -math.inf
    best = lp.max(dim=-1)[1].tolist()
    dedup = [v for i, v in enumerate(best) if i == 0 or v != best[i - 1]]
    return [v for v in dedup if v != blank and v != pad]


def pipeline(model):
    from safetensors.torch import load_file, save_file

    x = load_file(str(ROOT / "translator/tests/fixtures/fbank_ref.safetensors"))["cmvn"].unsqueeze(0)
    out = {}
    with torch.no_grad():
        enc = model.encoder(x, torch.tensor([x.shape[1]]))
        eo = enc["encoder_out"][0]  # T x 1 x C
        out["encoder_out"] = eo[:, 0].contiguous()
        for name, head in [("asr", model.source_unigram_decoder), ("st", model.ctc_target_unigram_decoder)]:
            logits = head(eo)["encoder_out"][:, 0]
            out[f"{name}_logits"] = logits[:12].contiguous()  # the first frames (the file stays small)
            # agent/ctc_decoder.py: pad 1 and unk 3 masked, blank 0 and pad dropped
            out[f"{name}_tokens"] = torch.tensor(ctc_greedy(logits, 1, 3, 0), dtype=torch.int64)
        mt = model.target_unigram_decoder
        seq = [2]
        for step in range(40):
            lp, extra = mt(torch.tensor([seq]), encoder_out=enc)
            lp = lp[0, -1].clone()
            if step == 0:
                lp[2] = -math.inf
            nxt = int(lp.argmax())
            if nxt == 2:
                break
            seq.append(nxt)
        out["mt_tokens"] = torch.tensor(seq[1:], dtype=torch.int64)
        _, extra = mt(torch.tensor([seq]), encoder_out=enc)
        states = mt.layer_norm(extra["inner_states"][-1])  # as StreamSpeechModel.forward
        out["mt_states"] = states[:, 0].contiguous()
        t2u = model.synthesizer_encoder(states, None)
        out["t2u_states"] = t2u["encoder_out"][0][:, 0].contiguous()
        logits, _ = model.decoder(None, encoder_out=t2u)
        out["unit_logits"] = logits[0, :60].contiguous()
        d = model.decoder.dictionary
        out["units"] = torch.tensor(ctc_greedy(logits[0], d.pad(), d.unk(), d.blank_index), dtype=torch.int64)
    # Text as the agent writes it: pieces joined, "▁" and "<unk>" as spaces.
    def text(dictionary, ids):
        return " ".join("".join(dictionary[i] for i in ids).replace("\u2581", " ").replace("<unk>", " ").split())
    texts = {"asr": text(model.source_unigram_decoder.dictionary, out["asr_tokens"].tolist()),
             "st": text(model.ctc_target_unigram_decoder.dictionary, out["st_tokens"].tolist()),
             "mt": text(model.target_unigram_decoder.dictionary, out["mt_tokens"].tolist())}
    (OUT / "pipeline_text.json").write_text(json.dumps(texts, ensure_ascii=False, indent=1))
    for k in ["asr_tokens", "st_tokens", "mt_tokens", "units"]:
        print(k, out[k].tolist()[:30], len(out[k]))
    save_file(out, str(OUT / "pipeline_ref.safetensors"))
    (OUT / "pipeline_ref.safetensors").chmod(0o644)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    a = ap.parse_args()
    torch.backends.mkldnn.enabled = False
    sys.path.insert(0, str(a.streamspeech / "researches"))
    from omegaconf import OmegaConf
    OUT.mkdir(parents=True, exist_ok=True)

    cfg, full = build(a.streamspeech, small=False)
    manifest = {k: list(v.shape) for k, v in full.state_dict().items()}
    (OUT / "manifest_es-en.json").write_text(json.dumps(manifest, indent=0, sort_keys=True))
    print(f"full size: {sum(p.numel() for p in full.parameters())} parameters, {len(manifest)} keys")
    del full

    torch.manual_seed(25)
    cfg, model = build(a.streamspeech, small=True)
    with torch.no_grad():
        for dec in [model.target_unigram_decoder, model.decoder]:
            dec.embed_tokens.weight.mul_(4.0)
            dec.layer_norm.weight.mul_(-1.0)
        for head in [model.source_unigram_decoder, model.ctc_target_unigram_decoder]:
            head.proj.weight.mul_(8.0)
    model = model.half()
    params = list(model.parameters())
    state = {
        "args": None,
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        "model": model.state_dict(),
        "criterion": None,
        "optimizer_history": [{"criterion_name": "SpeechToUnit2passCTCASRSTMultitaskTaskCriterion", "optimizer_name": "FP16Optimizer",
                               "lr_scheduler_state": {"best": None}, "num_updates": 1000}],
        "task_state": {},
        "extra_state": {"epoch": 1, "previous_best": None},
        # Adam moments of the first parameters, as an optimizer state holds (f32).
        "last_optimizer_state": {"state": {i: {"exp_avg": torch.zeros_like(p, dtype=torch.float32), "exp_avg_sq": torch.zeros_like(p, dtype=torch.float32)}
                                           for i, p in enumerate(params[:4])},
                                 "param_groups": [{"lr": 0.001, "params": list(range(4))}]},
    }
    torch.save(state, OUT / "small.pt")
    (OUT / "small.pt").chmod(0o644)
    pipeline(model.float().eval())
    print(f"small: {sum(p.numel() for p in params)} parameters; cfg.model is {type(state['cfg']['model']).__name__}")


if __name__ == "__main__":
    main()
