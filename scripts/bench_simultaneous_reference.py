#!/usr/bin/env python3
"""Upstream's side of the simultaneous benchmark (cli/benches/simultaneous.rs, `cargo xtask
bench-simultaneous --reference`): StreamSpeech's own agent (`StreamSpeechS2STAgent`, with its
SimulEval base classes) on the checkpoint, vocoder weights and waveform the Rust benchmark
generated, fed segment by segment as SimulEval's evaluator does (one `pushpop` per segment of
`ceil(segment_ms * 16)` samples, the last marked finished), each call timed.

- The agent loads the generated full-size checkpoint (the real format) itself.
- Its vocoder is built by the agent from a placeholder checkpoint, then given the generated
  weights (weight norm already removed there, as the agent removes it).
- Input at 16 kHz, the agent's resampling off (as `make_simultaneous_fixture.py` does).
- `--pieces-per-second R`: as the Rust policy's `emulate_pieces_per_second`, the ST CTC
  hypothesis is cut to R pieces per second of source read, and the MT generator's `min_len` is set
  to each call's length cap (it writes exactly the target length), since generated weights emit
  about 20 ST pieces per second and end a sentence at once.

Prints one JSON line: per segment the compute (s), the action, the committed translation length
and the new units; the units are compared with ours by the benchmark. oneDNN is off. Needs
Python 3.11, torch==2.4.1, torchaudio==2.4.1, fairseq-fixed==0.12.3.1, soundfile, safetensors,
libsox, and a StreamSpeech checkout (`--streamspeech`).
"""
import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

import soundfile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--vocoder", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--segment-ms", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pieces-per-second", type=float)
    a = ap.parse_args()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(a.threads)
    repo = a.streamspeech
    sys.path.insert(0, str(repo / "SimulEval"))
    sys.path.insert(0, str(repo / "researches"))
    sys.path.insert(0, str(repo))
    import fairseq.examples

    sys.modules["examples"] = fairseq.examples  # SimulEval/ has an examples/ of its own
    from safetensors import safe_open
    from safetensors.torch import load_file
    from simuleval.data.segments import SpeechSegment
    from agent.tts.codehifigan import CodeGenerator as CodeHiFiGANModel
    from make_simultaneous_fixture import load_agent_class

    with safe_open(a.vocoder, "pt") as f:
        vcfg = json.loads(f.metadata()["config"])
    d = Path(tempfile.mkdtemp())
    (d / "vocoder.json").write_text(json.dumps(vcfg))
    torch.save({"generator": CodeHiFiGANModel(vcfg).state_dict()}, d / "vocoder.pt")
    (d / "config_gcmvn.yaml").write_text(
        f"global_cmvn:\n  stats_npz_path: {a.data}/gcmvn.npz\ninput_channels: 1\ninput_feat_per_channel: 80\n"
        "transforms:\n  '*':\n  - global_cmvn\n"
        f"vocoder:\n  type: code_hifigan\n  config: {d}/vocoder.json\n  checkpoint: {d}/vocoder.pt\n")
    (d / "config_mtl_asr_st_ctcst.yaml").write_text((a.data / "config_mtl_asr_st_ctcst.yaml").read_text().replace("./", f"{a.data}/"))

    t = time.time()
    Agent = load_agent_class(repo).StreamSpeechS2STAgent
    ap2 = argparse.ArgumentParser()
    Agent.add_args(ap2)
    args = ap2.parse_args([
        "--model-path", a.checkpoint, "--data-bin", str(d),
        "--config-yaml", "config_gcmvn.yaml", "--multitask-config-yaml", "config_mtl_asr_st_ctcst.yaml",
        "--user-dir", str(repo / "researches/ctc_unity"), "--agent-dir", str(repo / "agent"),
        "--vocoder", str(d / "vocoder.pt"), "--vocoder-cfg", str(d / "vocoder.json"), "--dur-prediction",
        "--segment-size", str(a.segment_ms), "--sample-rate", "16000",
    ])
    args.source_segment_size = a.segment_ms
    args.device = "cpu"
    args.computation_aware = False
    agent = Agent(args)
    agent.vocoder.model.load_state_dict(load_file(a.vocoder), strict=True)
    fe = agent.feature_extractor
    plain_call = type(fe).__call__
    fe.__class__.__call__ = lambda self, samples, sr=16000: plain_call(self, samples, sr=16000)
    if a.pieces_per_second:
        st_generate = agent.st_ctc_generator.generate

        def st_cut(*p, **k):
            out = st_generate(*p, **k)
            cap = math.ceil(a.pieces_per_second * len(agent.states.source) / 16000)
            out[0][0]["tokens"] = out[0][0]["tokens"][:cap]
            return out
        agent.st_ctc_generator.generate = st_cut
        gen = agent.generator_mt
        original = gen.generate_decoder

        def forced(*p, max_new_tokens=-1, **k):
            prefix = p[4] if len(p) > 4 else k.get("prefix_tokens")
            start = prefix.size(-1) if prefix is not None else 0
            gen.min_len = start + max_new_tokens if max_new_tokens != -1 else 1
            try:
                return original(*p, max_new_tokens=max_new_tokens, **k)
            finally:
                gen.min_len = 1
        gen.generate_decoder = forced
    load_s = time.time() - t

    wave, rate = soundfile.read(a.audio, dtype="float32")
    assert rate == 16000, rate
    per_call = math.ceil(a.segment_ms / 1000 * 16000)
    segments = []
    pos = 0
    final_units = []
    reset = agent.reset

    def keep_then_reset():
        final_units.extend(list(agent.unit) if agent.unit is not None else [])
        reset()
    agent.reset = keep_then_reset
    while pos < len(wave):
        chunk = wave[pos:pos + per_call]
        finished = pos + per_call >= len(wave)
        pos = min(pos + per_call, len(wave))
        before = list(agent.unit) if agent.unit is not None else []
        t = time.time()
        out = agent.pushpop(SpeechSegment(index=0, content=chunk.tolist(), sample_rate=16000, finished=finished))
        compute = time.time() - t
        wrote = getattr(out, "content", None) is not None and not out.is_empty
        units = final_units if final_units else (list(agent.unit) if agent.unit is not None else [])
        tgt = agent.tgt_subwords_indices
        segments.append({
            "compute_s": compute,
            "action": "WRITE" if wrote else "READ",
            "translation_len": int(tgt.size(-1)) if tgt is not None else 0,
            "new_units": units[len(before):] if wrote else [],
        })
        print(len(segments), segments[-1]["action"], f"{compute:.2f}", file=sys.stderr, flush=True)
    print(json.dumps({
        "threads": a.threads, "segment_ms": a.segment_ms, "speech_s": len(wave) / 16000, "load_s": load_s,
        "segments": segments, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
