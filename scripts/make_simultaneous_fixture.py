#!/usr/bin/env python3
"""Traces of upstream's simultaneous agent, the reference for translator/src/simultaneous.rs.

Runs StreamSpeech's own agent (`agent/speech_to_speech.streamspeech.agent.py`, class
`StreamSpeechS2STAgent`, with its SimulEval base classes) on the committed small real-format
checkpoint (translator/tests/fixtures/streamspeech/small.pt, seeded weights) and a tiny
1000-unit CodeHiFiGAN with a duration predictor (seeded here, built by the agent's own
`CodeHiFiGANModel`, hop 320 as the agent assumes), feeding real Spanish speech segment by segment
exactly as SimulEval's evaluator does (`ceil(segment_ms * rate / 1000)` samples per call, the
last, partial segment marked finished; one `policy()` per segment). Per segment it records the
action, both CTC lengths, the ASR ids, the committed translation ids, the MT decoder input, all
units, the new units and the emitted sample count.

Input rate: the agent treats its input as 48 kHz and resamples with sox. The trace is recorded
with the agent's sample rate set to 16 kHz (a 16 kHz clip, no resampling), so that it checks the
policy and the model rather than sox against our resampler.

Writes translator/tests/fixtures/simultaneous/{trace_160.json, trace_320.json, trace_640.json,
unit_vocoder_tiny.safetensors} (the vocoder as the agent ran it: weight norm removed, config in
the metadata).

    python3 scripts/make_simultaneous_fixture.py --streamspeech PATH/TO/StreamSpeech
(a checkout with researches/, agent/, SimulEval/ and configs/; Python 3.11, torch==2.4.1,
fairseq-fixed==0.12.3.1, soundfile, safetensors)
"""
import argparse
import importlib.util
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile
import torch

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "translator/tests/fixtures"
OUT = FIXTURES / "simultaneous"
CLIP = ROOT / "tests/data/es_picovoice_bat_test_es.wav"

VOCODER_CFG = {
    "resblock": "1", "upsample_rates": [5, 4, 4, 2, 2], "upsample_kernel_sizes": [11, 8, 8, 4, 4],
    "upsample_initial_channel": 64, "resblock_kernel_sizes": [3, 7], "resblock_dilation_sizes": [[1, 3, 5], [1, 3, 5]],
    "num_embeddings": 1000, "embedding_dim": 16, "model_in_dim": 16, "sampling_rate": 16000, "code_hop_size": 320,
    "dur_predictor_params": {"encoder_embed_dim": 16, "var_pred_hidden_dim": 16, "var_pred_kernel_size": 3, "var_pred_dropout": 0.5},
}


def data_dir(repo: Path) -> Path:
    """The agent's data-bin: the real CMVN and dictionaries, the small model's multitask config
    with absolute dictionary paths (fairseq opens them as given)."""
    d = Path(tempfile.mkdtemp())
    small = FIXTURES / "es-en-small"
    (d / "config_gcmvn.yaml").write_text(
        f"global_cmvn:\n  stats_npz_path: {small}/gcmvn.npz\ninput_channels: 1\ninput_feat_per_channel: 80\n"
        "transforms:\n  '*':\n  - global_cmvn\n"
        f"vocoder:\n  type: code_hifigan\n  config: {d}/vocoder.json\n  checkpoint: {d}/vocoder.pt\n")
    mtl = (small / "config_mtl_asr_st_ctcst.yaml").read_text().replace("./", f"{small}/")
    (d / "config_mtl_asr_st_ctcst.yaml").write_text(mtl)
    return d


def load_agent_class(repo: Path):
    spec = importlib.util.spec_from_file_location("streamspeech_agent", repo / "agent/speech_to_speech.streamspeech.agent.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_vocoder(repo: Path, d: Path):
    sys.path.insert(0, str(repo))
    from agent.tts.codehifigan import CodeGenerator as CodeHiFiGANModel

    torch.manual_seed(7)
    model = CodeHiFiGANModel(VOCODER_CFG)
    with torch.no_grad():
        # Durations of a random predictor cluster at the minimum; shift them so units last 1-4 frames.
        model.dur_predictor.proj.bias.add_(1.0)
    torch.save({"generator": model.state_dict()}, d / "vocoder.pt")
    (d / "vocoder.json").write_text(json.dumps(VOCODER_CFG))


def trace(module, repo: Path, d: Path, segment_ms: int, wave: np.ndarray):
    Agent = module.StreamSpeechS2STAgent
    ap = argparse.ArgumentParser()
    Agent.add_args(ap)
    args = ap.parse_args([
        "--model-path", str(FIXTURES / "streamspeech/small.pt"), "--data-bin", str(d),
        "--config-yaml", "config_gcmvn.yaml", "--multitask-config-yaml", "config_mtl_asr_st_ctcst.yaml",
        "--user-dir", str(repo / "researches/ctc_unity"), "--agent-dir", str(repo / "agent"),
        "--vocoder", str(d / "vocoder.pt"), "--vocoder-cfg", str(d / "vocoder.json"), "--dur-prediction",
        "--segment-size", str(segment_ms), "--sample-rate", "16000",
    ])
    args.source_segment_size = segment_ms
    args.device = "cpu"
    args.computation_aware = False
    agent = Agent(args)
    fe = agent.feature_extractor
    # 16 kHz in, no resampling (see the module doc).
    plain_call = type(fe).__call__
    fe.__class__.__call__ = lambda self, samples, sr=16000: plain_call(self, samples, sr=16000)

    record = {}
    for name in ["asr_ctc_generator", "st_ctc_generator"]:
        gen = getattr(agent, name)
        original = gen.generate

        def wrapped(*a, _original=original, _name=name, **k):
            out = _original(*a, **k)
            record[_name] = out[0][0]["tokens"].int().tolist()
            return out
        gen.generate = wrapped
    voc_call = agent.vocoder.forward

    def vocoder(x, dur_prediction=False):
        wav, dur = voc_call(x, dur_prediction)
        record["durations"] = dur.view(-1).tolist()
        return wav, dur
    agent.vocoder.forward = vocoder
    reset = agent.reset

    def snapshot_then_reset():
        record["final"] = (agent.tgt_subwords_indices, agent.unit)
        reset()
    agent.reset = snapshot_then_reset

    from simuleval.data.segments import SpeechSegment

    per_call = math.ceil(segment_ms / 1000 * 16000)
    segments = []
    pos = 0
    while pos < len(wave):
        chunk = wave[pos:pos + per_call]
        finished = pos + per_call >= len(wave)
        pos = min(pos + per_call, len(wave))
        record.clear()
        units_before = list(agent.unit) if agent.unit is not None else []
        out = agent.pushpop(SpeechSegment(index=0, content=chunk.tolist(), sample_rate=16000, finished=finished))
        content = getattr(out, "content", None)
        wrote = content is not None and not out.is_empty
        tgt, units = record.get("final", (agent.tgt_subwords_indices, agent.unit))
        units = list(units) if units is not None else []
        segments.append({
            "index": len(segments),
            "input_samples": pos,
            "finished": finished,
            "action": "WRITE" if wrote else "READ",
            "asr_ctc_len": len(record.get("asr_ctc_generator", [])),
            "st_ctc_len": len(record.get("st_ctc_generator", [])),
            "asr_ids": record.get("asr_ctc_generator", []),
            "translation_ids": tgt[0].tolist() if tgt is not None else [],
            "mt_input": agent.prev_output_tokens_mt[0].tolist() if agent.prev_output_tokens_mt is not None and "final" not in record else None,
            "units": units,
            "new_units": units[len(units_before):] if wrote else [],
            "durations": record.get("durations"),
            "emitted_samples": len(content) if wrote else 0,
        })
        print(segment_ms, segments[-1]["index"], segments[-1]["action"], segments[-1]["asr_ctc_len"], segments[-1]["st_ctc_len"],
              len(segments[-1]["translation_ids"]), len(segments[-1]["new_units"]), segments[-1]["emitted_samples"])
    return {"segment_ms": segment_ms, "sample_rate": 16000, "clip": CLIP.name, "segments": segments}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    a = ap.parse_args()
    repo = a.streamspeech
    torch.backends.mkldnn.enabled = False
    sys.path.insert(0, str(repo / "SimulEval"))
    sys.path.insert(0, str(repo / "researches"))
    import fairseq.examples

    sys.modules["examples"] = fairseq.examples  # SimulEval/ has an examples/ of its own
    OUT.mkdir(parents=True, exist_ok=True)
    d = data_dir(repo)
    make_vocoder(repo, d)
    module = load_agent_class(repo)
    wave, rate = soundfile.read(CLIP, dtype="float32")
    assert rate == 16000, rate
    for segment_ms in [160, 320, 640]:
        t = trace(module, repo, d, segment_ms, wave)
        (OUT / f"trace_{segment_ms}.json").write_text(json.dumps(t, indent=0))
    # The vocoder as the agent ran it (weight norm removed), for the Rust side.
    from safetensors.torch import save_file

    ckpt = torch.load(d / "vocoder.pt")["generator"]
    sys.path.insert(0, str(repo))
    from agent.tts.codehifigan import CodeGenerator as CodeHiFiGANModel

    m = CodeHiFiGANModel(VOCODER_CFG)
    m.load_state_dict(ckpt)
    m.remove_weight_norm()
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(OUT / "unit_vocoder_tiny.safetensors"),
              metadata={"config": json.dumps(VOCODER_CFG)})
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
