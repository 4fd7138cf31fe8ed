#!/usr/bin/env python3
"""Reference for the translator's speech front end (translator/src/fbank.rs).

Computes StreamSpeech's features exactly as its agent does: fairseq's `extract_fbank_features`
(waveform x 2^15, then `torchaudio.compliance.kaldi.fbank(waveform, num_mel_bins=80,
sample_frequency=16000)`, every other option at torchaudio's default) and the agent's global CMVN
(`(x - mean) / std` with `configs/es-en/gcmvn.npz`, in numpy f32). Writes
translator/tests/fixtures/fbank_ref.safetensors (`wave`, `fbank`, `cmvn`) and copies gcmvn.npz
beside it.

Run by hand (torch==2.4.1, torchaudio==2.4.1, numpy<2, safetensors; Python 3.11):
    python3 scripts/make_fbank_fixture.py --streamspeech PATH/TO/StreamSpeech
"""
import argparse
import shutil
import wave
from pathlib import Path

import numpy as np
import torch
import torchaudio.compliance.kaldi as ta_kaldi
from safetensors.numpy import save_file

ROOT = Path(__file__).resolve().parent.parent
CLIP = ROOT / "tests/data/es_picovoice_bat_test_es.wav"  # 16 kHz Spanish speech (tests/data/LICENSES.tsv)
OUT = ROOT / "translator/tests/fixtures"


def read_wav(path):
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1 and w.getframerate() == 16000
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path, help="a checkout of ictnlp/StreamSpeech")
    args = ap.parse_args()
    torch.backends.mkldnn.enabled = False
    x = read_wav(CLIP)
    # fairseq.examples.speech_to_text.data_utils.extract_fbank_features + audio_utils._get_torchaudio_fbank
    w = torch.from_numpy(x).unsqueeze(0) * (2 ** 15)
    fbank = ta_kaldi.fbank(w, num_mel_bins=80, sample_frequency=16000).numpy()
    # agent/speech_to_speech.streamspeech.agent.py OnlineFeatureExtractor.transform
    gcmvn = args.streamspeech / "configs/es-en/gcmvn.npz"
    stats = np.load(gcmvn)
    cmvn = np.divide(np.subtract(fbank, stats["mean"]), stats["std"]).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    save_file({"wave": x, "fbank": fbank.astype(np.float32), "cmvn": cmvn}, str(OUT / "fbank_ref.safetensors"))
    (OUT / "es-en-small").mkdir(exist_ok=True)
    shutil.copy(gcmvn, OUT / "es-en-small/gcmvn.npz")
    print(f"{len(x)} samples -> {fbank.shape[0]} frames; wrote {OUT}")


if __name__ == "__main__":
    main()
