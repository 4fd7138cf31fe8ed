#!/usr/bin/env python3
"""Distils the default "Modified" model: a GRC-MRF generator (the vocoder-core issue's keys and
forward) trained as a student of the HiFi-GAN V1 universal teacher.

    pip install torch numpy librosa safetensors soundfile     (+ apt install espeak-ng)
    python3 scripts/train_grc.py --teacher models/hifigan_v1_universal.safetensors \
        --minutes 90 --threads 1 --out models/grc_mrf_distilled.safetensors [--augment 0.8,0.89,1.12,1.25]

Data: the real clips listed in scripts/train_manifest.tsv (from ../shared/speech, licenses there)
minus the held-out validation clips, plus synthetic speech from espeak-ng in several voices,
languages, pitches and speeds. Random 0.5 s segments, random gain.
Input: the exact reference mel (same as vocoder/src/mel.rs). Targets: the teacher's waveform for
the same mel (waveform L1 + multi-resolution STFT) and the input mel (mel L1).
Deterministic seed; losses are logged to <out>.log.jsonl; validation metrics to <out>.metrics.json.
"""
import argparse
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time

import librosa
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Generator, GRCGenerator, mel_spectrogram  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 22050
SEG = 11264  # 44 frames of 256: ~0.51 s


def load_teacher(path):
    sd = load_file(path)
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        cfg = json.loads(f.metadata()["config"])
    t = Generator(cfg, wn=None)
    t.load_state_dict(sd, strict=True)
    return t.eval(), cfg


def mel_of(y, cfg):
    return mel_spectrogram(y, cfg["n_fft"], cfg["num_mels"], cfg["sampling_rate"], cfg["hop_size"],
                           cfg["win_size"], cfg["fmin"], cfg["fmax"])


def read_manifest():
    rows = []
    with open(os.path.join(ROOT, "scripts", "train_manifest.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            r = dict(zip(header, line.rstrip("\n").split("\t")))
            rows.append(r)
    return rows


def load_wav(path):
    y, sr = sf.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr != SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=SR, res_type="soxr_hq")
    return y.astype(np.float32)


def espeak_corpus(n, seed):
    """Synthetic speech in many voices, languages, pitches and speeds (espeak-ng, GPL tool; the
    generated audio carries no license restriction)."""
    rng = random.Random(seed)
    texts = {
        "en": ["The quick brown fox jumps over the lazy dog.", "Speech synthesis turns text into sound.",
               "Please call Stella and ask her to bring these things.", "How are you doing today, my friend?"],
        "es": ["El veloz murcielago hindu comia feliz cardillo y kiwi.", "Buenos dias, como estas hoy?",
               "La traduccion simultanea del habla es dificil.", "Manana lloverá en la ciudad de Madrid."],
        "fr": ["Le vif renard brun saute par-dessus le chien paresseux.", "Bonjour, comment allez-vous?"],
        "de": ["Zwolf Boxkampfer jagen Viktor quer uber den grossen Sylter Deich.", "Guten Morgen, wie geht es?"],
        "it": ["Ma la volpe col suo balzo ha raggiunto il quieto Fido.", "Buongiorno a tutti voi."],
        "pt": ["Um pequeno jabuti xereta viu dez cegonhas felizes.", "Bom dia, tudo bem com voce?"],
    }
    variants = ["", "+m1", "+m3", "+f1", "+f2", "+f4", "+croak", "+whisper"]
    out = []
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            lang = rng.choice(list(texts))
            text = rng.choice(texts[lang])
            voice = lang + rng.choice(variants)
            pitch = rng.randint(15, 85)
            speed = rng.randint(120, 200)
            path = os.path.join(d, f"{i}.wav")
            subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", path, text],
                           check=True, capture_output=True)
            out.append(load_wav(path))
    return out


class MRSTFT:
    def __init__(self):
        self.res = [(512, 128, 512), (1024, 256, 1024), (2048, 512, 2048), (256, 64, 256)]
        self.windows = {w: torch.hann_window(w) for _, _, w in self.res}

    def __call__(self, x, y):
        loss = 0.0
        for n, h, w in self.res:
            X = torch.stft(x, n, h, w, self.windows[w], return_complex=True).abs().clamp(min=1e-7)
            Y = torch.stft(y, n, h, w, self.windows[w], return_complex=True).abs().clamp(min=1e-7)
            sc = torch.norm(Y - X, p="fro") / torch.norm(Y, p="fro").clamp(min=1e-7)
            mag = F.l1_loss(torch.log(X), torch.log(Y))
            loss = loss + sc + mag
        return loss / len(self.res)


def evaluate(model, teacher, clips, cfg, mrstft, teacher_out=None):
    """Per clip: log-mel L1 and MR-STFT distance of student and teacher outputs to the input.
    `teacher_out`: precomputed teacher waveforms (same order), else the teacher runs."""
    rows = []
    with torch.no_grad():
        for i, (name, y) in enumerate(clips):
            y = torch.from_numpy(y).unsqueeze(0)
            mel = mel_of(y, cfg)
            n = min(mel.shape[-1] * cfg["hop_size"], y.shape[-1])
            ref = y[:, :n]
            s = model(mel).squeeze(1)[:, :n]
            if teacher_out is not None:
                t = torch.from_numpy(teacher_out[i][:n]).unsqueeze(0)
                n = min(n, t.shape[-1])
                ref, s, t = ref[:, :n], s[:, :n], t[:, :n]
            else:
                t = teacher(mel).squeeze(1)[:, :n]
            row = {"clip": name}
            for tag, out in (("student", s), ("teacher", t)):
                m = mel_of(out, cfg)
                k = min(m.shape[-1], mel.shape[-1])
                row[f"{tag}_mel_l1"] = float(F.l1_loss(m[..., :k], mel[..., :k]))
                row[f"{tag}_mrstft"] = float(mrstft(out, ref))
            rows.append(row)
    return rows


def pieces(y, piece=8 * SR):
    """Long recordings are cut into <= 8 s pieces (bounded memory for the teacher pass); pieces
    shorter than one training segment are dropped."""
    return [y[i:i + piece] for i in range(0, len(y), piece) if len(y[i:i + piece]) > SEG]


def with_random_gain(y, u):
    """`y` scaled so that its peak is `u` (a uniform draw in [0.1, 0.95]), at most 30x."""
    peak = max(float(np.abs(y).max()), 1e-4)
    return (y * min(u / peak, 30.0)).astype(np.float32)


def load_pairs(path):
    """(input, teacher output) pairs from a teacher cache written by `save_pairs`."""
    z = np.load(path)
    return [(z[f"x{i}"], z[f"t{i}"]) for i in range(len(z.files) // 2)]


def save_pairs(path, pairs):
    np.savez(path, **{f"x{i}": p[0] for i, p in enumerate(pairs)}, **{f"t{i}": p[1] for i, p in enumerate(pairs)})


def export(model, cfg, path, meta):
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    tmp = path + ".partial"
    save_file(sd, tmp, metadata={"config": json.dumps(cfg), "format": "streamspeech-vocoder/1",
                                 "training": json.dumps(meta)})
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=os.path.join(ROOT, "models", "hifigan_v1_universal.safetensors"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "grc_mrf_distilled.safetensors"))
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--synthetic", type=int, default=96)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--gains", type=int, default=2, help="random-gain variants per clip for the teacher pass")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--eval-only", action="store_true", help="skip training: evaluate the exported model")
    ap.add_argument("--resume", help="start from these weights (same config); steps and the log continue")
    ap.add_argument("--lr-floor", type=float, default=1.0,
                    help="cosine-decay the learning rate over --minutes down to lr * this (1.0: constant)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--augment", default="",
                    help="comma-separated pitch factors, e.g. 0.8,0.89,1.12,1.25: every real training "
                         "clip is also resampled by each (pitch and tempo scale together, like a "
                         "faster or slower tape) and vocoded by the teacher once more")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    dev = torch.device(args.device)

    teacher, tcfg = load_teacher(args.teacher)
    teacher = teacher.to(dev)
    cfg = {k: tcfg[k] for k in ("upsample_rates", "upsample_kernel_sizes", "sampling_rate", "n_fft",
                                 "hop_size", "win_size", "num_mels", "fmin", "fmax")}
    cfg.update(resblock="grc", grc_kernel_sizes=[3, 5, 7], upsample_initial_channel=args.channels,
               lrelu_slope=0.1)
    student = GRCGenerator(cfg).to(dev)
    step0 = 0
    if args.resume:
        from safetensors import safe_open
        student.load_state_dict(load_file(args.resume), strict=True)
        with safe_open(args.resume, "pt") as f:
            step0 = json.loads(f.metadata()["training"]).get("step", 0)
        print(f"resumed from {args.resume} at step {step0}", flush=True)
    n_params = sum(p.numel() for p in student.parameters())
    print(f"student: {n_params} parameters ({n_params * 4 / 1e6:.1f} MB as f32)", flush=True)

    manifest = read_manifest()
    shared = os.path.join(ROOT, "..", "shared", "speech")
    train_real, val = [], []
    for r in manifest:
        y = load_wav(os.path.join(shared, r["file"]))
        (val if r["split"] == "validation" else train_real).append((r["file"], y))
    synth = espeak_corpus(args.synthetic, args.seed)
    train = [p for _, y in train_real for p in pieces(y)]
    train += synth
    total = sum(len(y) for y in train) / SR
    print(f"train: {len(train_real)} real clips + {len(synth)} synthetic = {total:.0f} s; "
          f"validation: {len(val)} clips", flush=True)

    # The teacher is fixed: vocode every training clip once, at two gains (random gain per
    # variant), and cut aligned (input, teacher) segments from those. The teacher costs ~60x the
    # student, so this is what makes CPU training feasible.
    def vocoded(x):
        """(input, teacher output) trimmed to the same length."""
        with torch.no_grad():
            t = teacher(mel_of(torch.from_numpy(x).unsqueeze(0).to(dev), cfg)).squeeze().cpu().numpy()
        n = min(len(x), len(t))
        return x[:n], t[:n]

    pairs = []
    t0 = time.time()
    cache = args.out + ".teacher-cache.npz"
    if os.path.exists(cache):
        pairs = load_pairs(cache)
    else:
        for i, y in enumerate(train):
            for _ in range(args.gains):
                pairs.append(vocoded(with_random_gain(y, np.random.uniform(0.1, 0.95))))
            if i % 10 == 0:
                print(f"teacher: {i + 1}/{len(train)} clips, {time.time() - t0:.0f} s", flush=True)
        save_pairs(cache, pairs)
    print(f"teacher targets for {len(pairs)} clip variants in {time.time() - t0:.0f} s", flush=True)
    # Pitch augmentation: the student generalises worst on voices whose pitch the training set
    # lacks (its error on unseen voices sits in voiced frames and the lowest mel bands: energy
    # between the harmonics). Resampled copies of the real clips put every speaker at several new pitches.
    # Appended after the base pairs, so the base pairs keep their indices (the final metrics
    # read the real clips from the front of `pairs`).
    factors = [float(f) for f in args.augment.split(",") if f.strip()]
    if factors:
        t1 = time.time()
        aug_cache = args.out + ".teacher-cache.aug-" + "-".join(f"{f:g}" for f in factors) + ".npz"
        if os.path.exists(aug_cache):
            aug = load_pairs(aug_cache)
        else:
            aug = []
            rng = np.random.default_rng(args.seed + 1)
            for f in factors:
                for _, y in train_real:
                    yy = librosa.resample(y, orig_sr=SR, target_sr=int(round(SR / f)), res_type="soxr_hq")
                    aug += [vocoded(x) for x in pieces(with_random_gain(yy, rng.uniform(0.1, 0.95)))]
                print(f"teacher: pitch x{f:g} done, {time.time() - t1:.0f} s", flush=True)
            save_pairs(aug_cache, aug)
        pairs += aug
        print(f"augmented: {len(aug)} pitch-shifted pieces ({sum(len(x) for x, _ in aug) / SR:.0f} s) "
              f"in {time.time() - t1:.0f} s", flush=True)
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
    mrstft = MRSTFT()
    log = open(args.out + ".log.jsonl", "a" if (args.eval_only or args.resume) else "w")
    start = time.time()
    step = step0
    # The teacher's validation outputs never change: computed once, not at every evaluation.
    with torch.no_grad():
        val_teacher = [teacher(mel_of(torch.from_numpy(y).unsqueeze(0).to(dev), cfg)).squeeze().cpu().numpy()
                       for _, y in val]

    def lr_factor(_):
        warm = min(1.0, (step - step0 + 1) / 200)
        if args.lr_floor >= 1.0:
            return warm
        frac = min(1.0, (time.time() - start) / max(args.minutes * 60, 1.0))
        return warm * (args.lr_floor + (1 - args.lr_floor) * 0.5 * (1 + math.cos(math.pi * frac)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_factor)
    lengths = np.array([len(y) for y, _ in pairs], dtype=np.float64)
    probs = lengths / lengths.sum()
    best = None
    if args.resume and not args.eval_only:
        rows = evaluate(student, teacher, val, cfg, mrstft, teacher_out=val_teacher)
        best = float(np.mean([r["student_mel_l1"] for r in rows]))
        export(student, cfg, args.out, {"step": step, "seed": args.seed, "augment": args.augment})
        print({"step": step, "val_student_mel_l1": best}, flush=True)
    deadline = start + args.minutes * 60
    if args.eval_only:
        deadline = 0
    while time.time() < deadline and step < args.max_steps:
        segs, tgts = [], []
        hop = cfg["hop_size"]
        for _ in range(args.batch):
            y, t = pairs[np.random.choice(len(pairs), p=probs)]
            if len(y) <= SEG:
                y, t = np.pad(y, (0, SEG + 1 - len(y))), np.pad(t, (0, SEG + 1 - len(t)))
            o = np.random.randint(0, (len(y) - SEG) // hop + 1) * hop
            segs.append(y[o:o + SEG])
            tgts.append(t[o:o + SEG])
        x = torch.from_numpy(np.stack(segs)).to(dev)
        target = torch.from_numpy(np.stack(tgts)).to(dev)
        with torch.no_grad():
            mel = mel_of(x, cfg)
        out = student(mel).squeeze(1)
        mel_out = mel_of(out, cfg)
        l_mel = F.l1_loss(mel_out, mel)
        l_stft = mrstft(out, target)
        l_wav = F.l1_loss(out, target)
        # The log-mel distance is what the model is judged on; MR-STFT and the teacher waveform
        # keep phase and fine structure honest.
        loss = 10.0 * l_mel + 2.0 * l_stft + 5.0 * l_wav
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 10.0)
        opt.step()
        sched.step()
        step += 1
        if step % 25 == 0:
            rec = {"step": step, "seconds": round(time.time() - start, 1), "lr": opt.param_groups[0]["lr"], "loss": float(loss),
                   "mel_l1": float(l_mel), "mrstft": float(l_stft), "wav_l1": float(l_wav)}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(rec, flush=True)
        if step % 500 == 0:
            student.eval()
            rows = evaluate(student, teacher, val, cfg, mrstft, teacher_out=val_teacher)
            student.train()
            score = float(np.mean([r["student_mel_l1"] for r in rows]))
            print({"step": step, "val_student_mel_l1": score,
                   "val_teacher_mel_l1": float(np.mean([r["teacher_mel_l1"] for r in rows]))}, flush=True)
            if best is None or score < best:
                best = score
                export(student, cfg, args.out, {"step": step, "seed": args.seed, "augment": args.augment})
    if not args.eval_only:
        student.eval()
        rows = evaluate(student, teacher, val, cfg, mrstft, teacher_out=val_teacher)
        score = float(np.mean([r["student_mel_l1"] for r in rows]))
        if best is None or score < best:
            export(student, cfg, args.out, {"step": step, "seed": args.seed, "augment": args.augment})
    # Final metrics of the exported model on validation and on every shared clip.
    final, _ = None, None
    from safetensors import safe_open
    model = GRCGenerator(cfg)
    model.load_state_dict(load_file(args.out), strict=True)
    model.eval()
    with safe_open(args.out, "pt") as f:
        meta = json.loads(f.metadata()["training"])
    val_rows = evaluate(model, teacher, val, cfg, mrstft)
    # Every other shared clip (its training pieces), against the cached teacher outputs.
    names = [n for n, y in train_real for _ in pieces(y)]
    n_real = len(names)
    real_pairs = pairs[: n_real * args.gains: args.gains]
    train_rows = evaluate(model, teacher, [(nm, x) for nm, (x, _) in zip(names, real_pairs)], cfg, mrstft,
                          teacher_out=[t for _, t in real_pairs])
    if args.eval_only:
        log_path = args.out + ".log.jsonl"
        last = json.loads(open(log_path).read().strip().splitlines()[-1]) if os.path.exists(log_path) else {}
        step = last.get("step", 0)
        start = time.time() - last.get("seconds", 0.0)
    metrics = {"steps_total": step, "exported_step": meta["step"], "minutes": (time.time() - start) / 60,
               "parameters": n_params, "batch": args.batch, "segment_samples": SEG, "seed": args.seed,
               "validation": val_rows, "train_clips": train_rows}
    json.dump(metrics, open(args.out + ".metrics.json", "w"), indent=2)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    main()
