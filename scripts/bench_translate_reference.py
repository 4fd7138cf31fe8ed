#!/usr/bin/env python3
"""Upstream's side of the translator benchmark (cli/benches/translate.rs, `cargo xtask
bench-translate --reference`): StreamSpeech's own model code, run with fairseq and PyTorch on the
checkpoint, vocoder weights and waveform the Rust benchmark generated, timed the same way.

- The model is built by fairseq's task machinery with the es->en simultaneous training script's
  arguments (`make_streamspeech_fixture.build`), and the generated checkpoint (the real format,
  written by `translator::synthetic`) is read with `torch.load` and loaded strictly.
- Features: fairseq's `extract_fbank_features` (torchaudio Kaldi fbank) and global CMVN.
- The stages are called as the fixture script calls them (whole utterance, the model's chunk
  size 8 = the agent's at 320 ms): encoder, CTC heads with the agent's greedy decoding, the MT
  decoder greedily (EOS barred: exactly --max-tokens pieces, as the Rust side), the T2U encoder, the unit
  decoder with CTC greedy decoding.
- Vocoder: fairseq's `CodeGenerator` (weight norm removed, as CodeHiFiGANVocoder does) with the
  generated weights: the durations it predicts for the units (compared with ours), and the timed
  run on as many seconds of units as came in (the units cycled, no duration prediction).

Prints one JSON line with the same fields as the Rust child. oneDNN is off (its ConvTranspose1d is
~1000x slower on this CPU). Needs Python 3.11, torch==2.4.1, torchaudio==2.4.1,
fairseq-fixed==0.12.3.1, safetensors, and a StreamSpeech checkout (`--streamspeech`).
"""
import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--vocoder", required=True)
    ap.add_argument("--audio", required=True)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-tokens", type=int, default=200)
    a = ap.parse_args()
    torch.backends.mkldnn.enabled = False
    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(a.streamspeech / "researches"))
    import soundfile
    import torchaudio.compliance.kaldi as ta_kaldi
    from safetensors import safe_open
    from safetensors.torch import load_file
    from fairseq.models.text_to_speech.codehifigan import CodeGenerator
    from make_streamspeech_fixture import build, ctc_greedy

    _, model = build(a.streamspeech, small=False)
    t = time.time()
    state = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"], strict=True)
    del state
    model = model.float().eval()
    with safe_open(a.vocoder, "pt") as f:
        vcfg = json.loads(f.metadata()["config"])
    gen = CodeGenerator(vcfg)
    gen.remove_weight_norm()
    gen.load_state_dict(load_file(a.vocoder), strict=True)
    gen.eval()
    load_s = time.time() - t

    wave, rate = soundfile.read(a.audio, dtype="float32")
    assert rate == 16000
    with torch.no_grad():
        t = time.time()
        fbank = ta_kaldi.fbank(torch.from_numpy(wave).unsqueeze(0) * 32768, num_mel_bins=80, sample_frequency=16000).numpy()
        stats = np.load(a.data / "gcmvn.npz")
        x = torch.from_numpy(np.divide(np.subtract(fbank, stats["mean"]), stats["std"]).astype(np.float32)).unsqueeze(0)
        fbank_s = time.time() - t

        stages = {}
        t = time.time()
        lap = [t]

        def mark(name):
            now = time.time()
            stages[name] = now - lap[0]
            lap[0] = now

        enc = model.encoder(x, torch.tensor([x.shape[1]]))
        eo = enc["encoder_out"][0]
        mark("encoder")
        asr = ctc_greedy(model.source_unigram_decoder(eo)["encoder_out"][:, 0], 1, 3, 0)
        st = ctc_greedy(model.ctc_target_unigram_decoder(eo)["encoder_out"][:, 0], 1, 3, 0)
        mark("ctc")
        mt = model.target_unigram_decoder
        seq = [2]
        # Incremental decoding, as fairseq's SequenceGenerator runs the decoder.
        incremental = {}
        for step in range(a.max_tokens):
            lp, _ = mt(torch.tensor([seq]), encoder_out=enc, incremental_state=incremental)
            lp = lp[0, -1].clone()
            if step < a.max_tokens:  # exactly --max-tokens pieces (fairseq's --min-len)
                lp[2] = -float("inf")
            nxt = int(lp.argmax())
            if nxt == 2:
                break
            seq.append(nxt)
        _, extra = mt(torch.tensor([seq]), encoder_out=enc)
        states = mt.layer_norm(extra["inner_states"][-1])
        mark("mt_decoder")
        t2u = model.synthesizer_encoder(states, None)
        mark("t2u_encoder")
        logits, _ = model.decoder(None, encoder_out=t2u)
        d = model.decoder.dictionary
        unit_ids = ctc_greedy(logits[0], d.pad(), d.unk(), d.blank_index)
        units = [u - 4 for u in unit_ids if 4 <= u < 1004]
        mark("unit_decoder")
        translate_s = time.time() - t

        code = torch.tensor([units], dtype=torch.long)
        emb = gen.dict(code).transpose(1, 2)
        log_dur = gen.dur_predictor(emb.transpose(1, 2))
        durations = torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1).view(-1).tolist()
        # Timed as the Rust side: as much speech out as came in (50 unit frames per second, the
        # units cycled, no duration prediction).
        frames_out = round(len(wave) / 16000 * 50)
        realistic = (units * (frames_out // max(len(units), 1) + 1))[:frames_out]
        t = time.time()
        audio = gen(code=torch.tensor([realistic], dtype=torch.long), dur_prediction=False)
        vocoder_s = time.time() - t

    print(json.dumps({
        "threads": a.threads, "speech_s": len(wave) / 16000, "load_s": load_s, "fbank_s": fbank_s,
        "translate_s": translate_s, "vocoder_s": vocoder_s, "output_s": audio.numel() / 16000, "frames": int(x.shape[1]), "stages": stages,
        "asr_tokens": asr, "st_tokens": st, "mt_tokens": seq[1:], "units": units, "durations": durations,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
