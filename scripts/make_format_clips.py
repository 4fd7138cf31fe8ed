#!/usr/bin/env python3
"""Writes the small input-format clips the CLI tests read (tests/data/formats/), all cut from
tests/data/fr_cv_17299458.wav (Common Voice, CC0-1.0; see tests/data/LICENSES.tsv):

    fr_1s5_mono.flac      16 kHz mono FLAC, first 1.5 s
    fr_1s5_stereo.ogg     44.1 kHz stereo Ogg Vorbis (resampled; right = 0.5 x left)
    fr_1s5_mono.mp3       24 kHz mono MP3 (resampled)

    pip install soundfile librosa numpy; python3 scripts/make_format_clips.py
"""
import os

import librosa
import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "tests/data/fr_cv_17299458.wav")
OUT = os.path.join(ROOT, "tests/data/formats")


def main():
    os.makedirs(OUT, exist_ok=True)
    y, sr = sf.read(SRC, dtype="float32")
    y = y[: int(1.5 * sr)]
    sf.write(os.path.join(OUT, "fr_1s5_mono.flac"), y, sr, subtype="PCM_16")
    y44 = librosa.resample(y, orig_sr=sr, target_sr=44100)
    sf.write(os.path.join(OUT, "fr_1s5_stereo.ogg"), np.stack([y44, 0.5 * y44], axis=1), 44100, format="OGG", subtype="VORBIS")
    y24 = librosa.resample(y, orig_sr=sr, target_sr=24000)
    sf.write(os.path.join(OUT, "fr_1s5_mono.mp3"), y24, 24000, format="MP3")
    for f in sorted(os.listdir(OUT)):
        i = sf.info(os.path.join(OUT, f))
        print(f, i.samplerate, i.channels, round(i.duration, 3), os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
