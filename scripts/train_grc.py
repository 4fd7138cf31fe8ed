#!/usr/bin/env python3
"""Distils the default "Modified" model: a GRC-MRF generator (the vocoder-core issue's keys and
forward) trained as a student of the HiFi-GAN V1 universal teacher.

    pip install torch numpy librosa safetensors soundfile     (+ apt install espeak-ng)
    pip install praat-parselmouth                              (only for --voices)
    python3 scripts/train_grc.py --teacher models/hifigan_v1_universal.safetensors \
        --minutes 90 --threads 1 --out models/grc_mrf_distilled.safetensors [--augment 0.8,0.89,1.12,1.25]

The committed model's last two runs resumed from the previous export with
    --threads 2 --synthetic 32 --gains 1 --augment "0.8,0.89,1.12,1.25;1.4,1.6" --voices 3 \
    --lr-floor 0.1 --resume models/grc_mrf_distilled.safetensors   and   --lr 1e-4 --minutes 75,
    then --lr 4e-5 --minutes 28

Data: the real clips listed in scripts/train_manifest.tsv (from ../shared/speech, licenses there)
minus the held-out validation clips, plus synthetic speech from espeak-ng in several voices,
languages, pitches and speeds; optionally pitch-shifted copies (--augment) and new voices made
with Praat's PSOLA "Change gender" (--voices). Random 0.5 s segments, random gain.
Input: the exact reference mel (same as vocoder/src/mel.rs). Targets: the teacher's waveform for
the same mel (waveform L1 + multi-resolution STFT) and the input mel (mel L1).
Deterministic seed; losses are logged to <out>.log.jsonl; validation metrics to <out>.metrics.json.

On a GPU machine (no librosa, espeak-ng, ../shared or network there), the same student trains with
the teacher run on every batch and continuous pitch augmentation:

    python3 scripts/train_grc.py --synthetic 64 --write-bundle .gpu          # here: 46 MB to carry
    python3 scripts/train_grc.py --bundle .gpu --device cuda --resume models/grc_mrf_distilled.safetensors \
        --batch 32 --minutes 2 --lr 2e-4 --lr-floor 0.05 --augment 0.7,0.8,0.89,1.12,1.25,1.4,1.6 \
        --out $OUT/grc.safetensors                                          # there
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

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import Generator, GRCGenerator, MelFrontEnd  # noqa: E402

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


def read_manifest():
    rows = []
    with open(os.path.join(ROOT, "scripts", "train_manifest.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            r = dict(zip(header, line.rstrip("\n").split("\t")))
            rows.append(r)
    return rows


def load_wav(path):
    import librosa
    import soundfile as sf
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
    def __init__(self, dev="cpu"):
        self.res = [(512, 128, 512), (1024, 256, 1024), (2048, 512, 2048), (256, 64, 256)]
        self.windows = {w: torch.hann_window(w, device=dev) for _, _, w in self.res}

    def __call__(self, x, y):
        loss = 0.0
        for n, h, w in self.res:
            X = torch.stft(x, n, h, w, self.windows[w], return_complex=True).abs().clamp(min=1e-7)
            Y = torch.stft(y, n, h, w, self.windows[w], return_complex=True).abs().clamp(min=1e-7)
            sc = torch.norm(Y - X, p="fro") / torch.norm(Y, p="fro").clamp(min=1e-7)
            mag = F.l1_loss(torch.log(X), torch.log(Y))
            loss = loss + sc + mag
        return loss / len(self.res)


def evaluate(model, teacher, clips, mel_fn, mrstft, teacher_out=None):
    """Per clip: log-mel L1 and MR-STFT distance of student and teacher outputs to the input.
    `teacher_out`: precomputed teacher waveforms (same order), else the teacher runs."""
    rows = []
    dev = mel_fn.basis.device
    with torch.no_grad():
        for i, (name, y) in enumerate(clips):
            y = torch.from_numpy(y).unsqueeze(0).to(dev)
            mel = mel_fn(y)
            n = min(mel.shape[-1] * mel_fn.hop, y.shape[-1])
            ref = y[:, :n]
            s = model(mel).squeeze(1)[:, :n]
            if teacher_out is not None:
                t = torch.from_numpy(teacher_out[i][:n]).unsqueeze(0).to(dev)
                n = min(n, t.shape[-1])
                ref, s, t = ref[:, :n], s[:, :n], t[:, :n]
            else:
                t = teacher(mel).squeeze(1)[:, :n]
            row = {"clip": name}
            for tag, out in (("student", s), ("teacher", t)):
                m = mel_fn(out)
                k = min(m.shape[-1], mel.shape[-1])
                row[f"{tag}_mel_l1"] = float(F.l1_loss(m[..., :k], mel[..., :k]))
                row[f"{tag}_mrstft"] = float(mrstft(out, ref))
            rows.append(row)
    return rows


def distill_loss(student, mel_fn, mrstft, x, target):
    """The student's loss on input segments `x` [B, N] with the teacher's waveforms `target`.
    The log-mel distance is what the model is judged on; MR-STFT and the teacher waveform keep
    phase and fine structure honest."""
    with torch.no_grad():
        mel = mel_fn(x)
    out = student(mel).squeeze(1)
    l_mel = F.l1_loss(mel_fn(out), mel)
    l_stft = mrstft(out, target)
    l_wav = F.l1_loss(out, target)
    loss = 10.0 * l_mel + 2.0 * l_stft + 5.0 * l_wav
    # Tensors, not floats: reading them waits for the GPU, so only the steps that log do.
    return loss, {"mel_l1": l_mel.detach(), "mrstft": l_stft.detach(), "wav_l1": l_wav.detach()}


def optimise(student, opt, sched, mel_fn, mrstft, x, target, log, step, start):
    """One optimiser step on `distill_loss` (gradient norm clipped to 10); with `log`, the losses of
    this step (numbered `step`) are written there and printed."""
    loss, parts = distill_loss(student, mel_fn, mrstft, x, target)
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(student.parameters(), 10.0)
    opt.step()
    sched.step()
    if log is not None:
        rec = {"step": step, "seconds": round(time.time() - start, 1), "lr": opt.param_groups[0]["lr"],
               "loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}
        log.write(json.dumps(rec) + "\n")
        log.flush()
        print(rec, flush=True)


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


def student_config(tcfg, channels, causal=False):
    """The GRC-MRF student's config: the teacher's audio front end and upsampling, GRC kernels 3/5/7;
    `causal`: the low-latency variant (left-padded convs, transposed convs cut to T·stride: audio
    sample n depends on mel frames <= n/hop only)."""
    cfg = {k: tcfg[k] for k in ("upsample_rates", "upsample_kernel_sizes", "sampling_rate", "n_fft",
                                 "hop_size", "win_size", "num_mels", "fmin", "fmax")}
    cfg.update(resblock="grc", grc_kernel_sizes=[3, 5, 7], upsample_initial_channel=channels, lrelu_slope=0.1)
    if causal:
        cfg["causal"] = True
    return cfg


def new_student(cfg, resume, dev, init=None):
    """(student, its step count, parameter count): fresh, or the weights of `resume` (same config,
    steps continue), or (`init`) the weights of another GRC-MRF of the same shapes as a start
    (e.g. the centred student for the causal one; steps start at 0)."""
    student = GRCGenerator(cfg).to(dev)
    step0 = 0
    if init and not resume:
        student.load_state_dict(load_file(init), strict=True)
        print(f"initialised from {init}", flush=True)
    if resume:
        from safetensors import safe_open
        student.load_state_dict(load_file(resume), strict=True)
        with safe_open(resume, "pt") as f:
            step0 = json.loads(f.metadata()["training"]).get("step", 0)
        print(f"resumed from {resume} at step {step0}", flush=True)
    n_params = sum(p.numel() for p in student.parameters())
    print(f"student: {n_params} parameters ({n_params * 4 / 1e6:.1f} MB as f32)", flush=True)
    return student, step0, n_params


def lr_factor(steps_done, seconds, minutes, floor, warmup=200):
    """Linear warm-up over `warmup` steps, then (floor < 1) a cosine decay over `minutes` of wall
    clock down to `floor`."""
    warm = min(1.0, (steps_done + 1) / warmup)
    if floor >= 1.0:
        return warm
    frac = min(1.0, seconds / max(minutes * 60, 1.0))
    return warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac)))


def write_bundle(path, teacher_path, train_real, synth, val, mel_fn):
    """What `--bundle` training needs, small enough to carry to a GPU machine that has no librosa,
    no espeak-ng, no ../shared and no network: the teacher rounded to fp16 (27.9 MB instead of
    55.7; on the validation clips its log-mel differs from the f32 teacher's by 0.0007, against
    the 0.27 both are from the input), the mel filter bank, and the clips at 22.05 kHz (training
    clips as fp16, validation as f32)."""
    from safetensors import safe_open
    os.makedirs(path, exist_ok=True)
    with safe_open(teacher_path, "pt") as f:
        meta = f.metadata()
    save_file({k: v.half().contiguous() for k, v in load_file(teacher_path).items()},
              os.path.join(path, "teacher.f16.safetensors"), metadata=meta)
    arrays = {"mel_basis": mel_fn.basis.cpu().numpy(), "val_names": np.array([n for n, _ in val])}
    arrays.update({f"real{i}": y.astype(np.float16) for i, (_, y) in enumerate(train_real)})
    arrays.update({f"synth{i}": y.astype(np.float16) for i, y in enumerate(synth)})
    arrays.update({f"val{i}": y.astype(np.float32) for i, (_, y) in enumerate(val)})
    np.savez(os.path.join(path, "data.npz"), **arrays)
    print(f"bundle: {path} ({len(train_real)} real, {len(synth)} synthetic, {len(val)} validation clips)")


def read_bundle(path):
    """(mel filter bank, real training clips, synthetic clips, [(name, validation clip)])."""
    z = np.load(os.path.join(path, "data.npz"))

    def series(tag):
        n = sum(1 for k in z.files if k.startswith(tag) and k[len(tag):].isdigit())
        return [z[f"{tag}{i}"].astype(np.float32) for i in range(n)]
    return z["mel_basis"], series("real"), series("synth"), list(zip(z["val_names"].tolist(), series("val")))


def augment_groups(spec):
    """'0.8,0.89;1.4' -> [[0.8, 0.89], [1.4]]"""
    groups = [[float(f) for f in g.split(",") if f.strip()] for g in spec.split(";")]
    return [g for g in groups if g]


def pitch_shifted(y, factor, soxr=False):
    """`y` resampled so that, played at the same rate, pitch and tempo scale by `factor` (a faster
    or slower tape). `soxr`: librosa's soxr_hq (what the CPU path's caches were built with); else
    scipy's polyphase filter (the GPU machine has no librosa or soxr). Either serves for
    augmentation: the teacher vocodes whatever comes out."""
    if factor == 1.0:
        return y
    if soxr:
        import librosa
        return librosa.resample(y, orig_sr=SR, target_sr=int(round(SR / factor)), res_type="soxr_hq")
    from fractions import Fraction
    from scipy.signal import resample_poly
    r = Fraction(1 / factor).limit_denominator(64)
    return resample_poly(y, r.numerator, r.denominator).astype(np.float32)


def voice_changed(y, rng):
    """`y` as another voice: Praat's PSOLA "Change gender" (via parselmouth, a GPL tool used at
    training time like espeak-ng; its output carries no license restriction) moves the median
    pitch to a log-uniform draw in 140-300 Hz and scales the formants by 1.0-1.22 and the pitch
    range by 0.8-1.5, keeping the duration. Unlike a resampled copy (`pitch_shifted`, which
    moves formants and pitch together: a chipmunk), this keeps speech natural and makes voices the
    real clips lack: most of them are male (median 92-142 Hz), most validation clips female."""
    import parselmouth
    from parselmouth.praat import call
    snd = parselmouth.Sound(y.astype(np.float64), sampling_frequency=SR)
    pitch = float(np.exp(rng.uniform(np.log(140.0), np.log(300.0))))
    formant, spread = rng.uniform(1.0, 1.22), rng.uniform(0.8, 1.5)
    # PSOLA draws random numbers (for unvoiced stretches) from Praat's own generator: seeded from
    # this voice's draws (not from `rng`, whose sequence stays as it was), so a cache rebuilds.
    parselmouth.praat.run(f"random_initializeWithSeedUnsafelyButPredictably ({int(pitch * 1e6)})")
    out = call(snd, "Change gender", 75, 600, formant, pitch, spread, 1.0)
    return out.values[0].astype(np.float32)


def teacher_variants(cache, seed, variants, transform, clips, vocoded, what):
    """Every clip of `clips` ([(name, audio)]) under each variant (`transform(y, variant, rng)`),
    at a random peak gain, cut into pieces and vocoded by the teacher (`vocoded`), in that order;
    loaded from `cache` when it exists, else built and saved there. The draws come from a
    generator seeded with `seed`, so a cache can be rebuilt (to the teacher pass's float rounding)."""
    t1 = time.time()
    if os.path.exists(cache):
        out = load_pairs(cache)
    else:
        out = []
        rng = np.random.default_rng(seed)
        for v in variants:
            for _, y in clips:
                out += [vocoded(x) for x in pieces(with_random_gain(transform(y, v, rng), rng.uniform(0.1, 0.95)))]
            print(f"teacher: {what}{v:g} done, {time.time() - t1:.0f} s", flush=True)
        save_pairs(cache, out)
    print(f"{what}*: {len(out)} pieces ({sum(len(x) for x, _ in out) / SR:.0f} s) in {time.time() - t1:.0f} s", flush=True)
    return out


def teacher_output(teacher, mel_fn, x):
    """The teacher's waveform for the mel of clip `x` (both numpy)."""
    with torch.no_grad():
        return teacher(mel_fn(torch.from_numpy(x).unsqueeze(0).to(mel_fn.basis.device))).squeeze().cpu().numpy()


class BestExport:
    """Exports the student to `path` whenever a validation score beats the best one seen."""

    def __init__(self, student, cfg, path, meta):
        self.student, self.cfg, self.path, self.meta = student, cfg, path, meta
        self.best = None

    def offer(self, score, step):
        if self.best is None or score < self.best:
            self.best = score
            export(self.student, self.cfg, self.path, {**self.meta, "step": step})


def validation_score(student, teacher, val, mel_fn, mrstft, val_teacher, step, log):
    """(worst clip's student/teacher log-mel ratio, mean student log-mel L1) on the validation clips,
    logged. Tuples compare in that order: the target holds per clip, so the worst clip decides."""
    student.eval()
    rows = evaluate(student, teacher, val, mel_fn, mrstft, teacher_out=val_teacher)
    student.train()
    ratios = [r["student_mel_l1"] / r["teacher_mel_l1"] for r in rows]
    rec = {"step": step, "val_worst_ratio": max(ratios), "val_ratios": [round(r, 4) for r in ratios],
           "val_student_mel_l1": float(np.mean([r["student_mel_l1"] for r in rows]))}
    log.write(json.dumps(rec) + "\n")
    log.flush()
    print(rec, flush=True)
    return (max(ratios), rec["val_student_mel_l1"])


def train_online(args):
    """Training from a bundle (`--write-bundle`) on a GPU, where the teacher is cheap enough to run
    on every batch: every segment gets a fresh crop, gain and pitch factor and its own teacher
    target (the CPU path reuses a fixed teacher cache instead). Exports the best validation step
    (the score is the worst clip's student/teacher log-mel ratio: the target holds per clip) to
    --out and the last step to <out>.last.safetensors; the log goes to <out>.log.jsonl."""
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    rng = np.random.default_rng(args.seed)
    teacher, tcfg = load_teacher(os.path.join(args.bundle, "teacher.f16.safetensors"))
    teacher = teacher.to(dev)
    cfg = student_config(tcfg, args.channels, args.causal)
    basis, real, synth, val = read_bundle(args.bundle)
    mel_fn = MelFrontEnd(cfg, dev, basis=basis)
    mrstft = MRSTFT(dev)
    student, step0, _ = new_student(cfg, args.resume, dev, args.init)
    t0 = time.time()
    # The pool: every real clip at every pitch factor (the unshifted ones count twice), and the
    # synthetic clips as they are (espeak-ng already varies the pitch).
    factors = [1.0] + [f for group in augment_groups(args.augment) for f in group]
    pool = [(pitch_shifted(y, f), 2.0 if f == 1.0 else 1.0) for f in factors for y in real]
    pool += [(y, 1.0) for y in synth]
    pool = [(np.pad(y, (0, max(0, SEG + 1 - len(y)))), w) for y, w in pool]
    clips = [torch.from_numpy(y).to(dev) for y, _ in pool]
    peaks = np.array([max(float(np.abs(y).max()), 1e-4) for y, _ in pool])
    weights = np.array([len(y) * w for y, w in pool])
    probs = weights / weights.sum()
    print(f"pool: {len(pool)} clips, {sum(len(y) for y, _ in pool) / SR:.0f} s, factors {factors}, "
          f"{time.time() - t0:.1f} s", flush=True)
    val_teacher = [teacher_output(teacher, mel_fn, y) for _, y in val]
    log = open(args.out + ".log.jsonl", "w")
    step = step0
    meta = {"seed": args.seed, "augment": args.augment, "online_teacher": True, "batch": args.batch}
    keeper = BestExport(student, cfg, args.out, meta)

    def validate():
        keeper.offer(validation_score(student, teacher, val, mel_fn, mrstft, val_teacher, step, log), step)

    validate()
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
    start = time.time()
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda _: lr_factor(step - step0, time.time() - start, args.minutes, args.lr_floor, warmup=300))
    deadline = start + args.minutes * 60
    while time.time() < deadline and step - step0 < args.max_steps:
        idx = rng.choice(len(pool), size=args.batch, p=probs)
        segs = []
        for i in idx:
            o = int(rng.integers(0, len(clips[i]) - SEG + 1))
            segs.append(clips[i][o:o + SEG])
        gains = np.minimum(rng.uniform(0.1, 0.95, size=args.batch) / peaks[idx], 30.0)
        x = torch.stack(segs) * torch.from_numpy(gains.astype(np.float32)).to(dev)[:, None]
        with torch.no_grad():
            target = teacher(mel_fn(x)).squeeze(1)[:, :SEG]
        # (`step` counts on after the update: the learning-rate schedule reads it during sched.step())
        optimise(student, opt, sched, mel_fn, mrstft, x, target, log if (step + 1) % 100 == 0 else None, step + 1, start)
        step += 1
        if step % args.eval_every == 0:
            validate()
    validate()
    export(student, cfg, args.out[: -len(".safetensors")] + ".last.safetensors", {**meta, "step": step})
    print(f"done: {step - step0} steps in {time.time() - start:.0f} s; best (worst ratio, mean) {keeper.best}", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", default=os.path.join(ROOT, "models", "hifigan_v1_universal.safetensors"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "grc_mrf_distilled.safetensors"))
    ap.add_argument("--channels", type=int, default=128)
    ap.add_argument("--minutes", type=float, default=90)
    ap.add_argument("--max-steps", type=int, default=100000, help="optimiser steps in this run (at most)")
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
    ap.add_argument("--write-bundle", metavar="DIR",
                    help="write what --bundle training needs (fp16 teacher, clips, mel filter bank) and stop")
    ap.add_argument("--bundle", metavar="DIR",
                    help="train from a --write-bundle folder with the teacher run on every batch (GPU)")
    ap.add_argument("--eval-every", type=int, default=500, help="validate (and keep the best export) every N steps")
    ap.add_argument("--augment", default="",
                    help="comma-separated pitch factors, e.g. 0.8,0.89,1.12,1.25: every real training "
                         "clip is also resampled by each (pitch and tempo scale together, like a "
                         "faster or slower tape) and vocoded by the teacher once more; groups "
                         "separated by ';' (e.g. '0.8,0.89,1.12,1.25;1.4,1.6') are cached separately")
    ap.add_argument("--causal", action="store_true",
                    help="train the causal (no look-ahead) GRC-MRF: the low-latency Modified model")
    ap.add_argument("--init", help="start from these weights (a GRC-MRF of the same shapes, e.g. the centred "
                                   "student for --causal); unlike --resume, steps and the log start afresh")
    ap.add_argument("--voices", type=int, default=0,
                    help="new voices per real training clip (Praat PSOLA pitch and formant change, "
                         "needs praat-parselmouth), vocoded by the teacher once and cached")
    args = ap.parse_args()
    # oneDNN's conv backward is ~3x slower than PyTorch's own on this CPU (measured: a batch-8 step
    # of the student 3.5 s vs 1.15 s on 2 threads), and its ConvTranspose1d far slower still.
    if args.device == "cpu":
        torch.backends.mkldnn.enabled = False
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    dev = torch.device(args.device)

    if args.bundle:
        return train_online(args)
    teacher, tcfg = load_teacher(args.teacher)
    teacher = teacher.to(dev)
    cfg = student_config(tcfg, args.channels, args.causal)
    mel_fn = MelFrontEnd(cfg, dev)
    student, step0, n_params = new_student(cfg, args.resume, dev, args.init)

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
    if args.write_bundle:
        # With --voices, the new voices travel as more real clips (the GPU machine has no Praat,
        # and adds its own crops, gains and pitch factors to them).
        rng = np.random.default_rng(args.seed + 100)
        voices = [(f"{n} (voice {v + 1})", voice_changed(y, rng)) for v in range(args.voices) for n, y in train_real]
        return write_bundle(args.write_bundle, args.teacher, train_real + voices, synth, val, mel_fn)

    # The teacher is fixed: vocode every training clip once per --gains variant (a random gain
    # each), and cut aligned (input, teacher) segments from those. The teacher costs ~60x the
    # student, so this is what makes CPU training feasible.
    def vocoded(x):
        """(input, teacher output) trimmed to the same length."""
        t = teacher_output(teacher, mel_fn, x)
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
    # Gain variants per clip as the cache was built (the committed cache has one: --gains 1).
    if len(pairs) % len(train):
        sys.exit(f"{cache} holds {len(pairs)} clips, not a multiple of the {len(train)} training clips: "
                 "it was built from other data (--synthetic?)")
    gains = len(pairs) // len(train)
    # Pitch augmentation: the student generalises worst on voices whose pitch the training set
    # lacks (its error on unseen voices sits in voiced frames and the lowest mel bands: energy
    # between the harmonics). Resampled copies of the real clips put every speaker at several new pitches.
    # Appended after the base pairs, so the base pairs keep their indices (the final metrics
    # read the real clips from the front of `pairs`).
    # Each ';'-separated group of factors has its own cache (and random draws), so a later run
    # can add pitches without redoing the groups already vocoded.
    for g, group in enumerate(augment_groups(args.augment)):
        aug_cache = args.out + ".teacher-cache.aug-" + "-".join(f"{f:g}" for f in group) + ".npz"
        pairs += teacher_variants(aug_cache, args.seed + 1 + g, group, lambda y, f, rng: pitch_shifted(y, f, soxr=True),
                                  train_real, vocoded, "pitch x")
    # Voice augmentation: --voices new voices per real training clip (see `voice_changed`),
    # vocoded by the teacher once and cached (the cache name holds the count).
    if args.voices:
        voice_cache = args.out + f".teacher-cache.voices-{args.voices}.npz"
        pairs += teacher_variants(voice_cache, args.seed + 100, range(1, args.voices + 1),
                                  lambda y, v, rng: voice_changed(y, rng), train_real, vocoded, "voice set ")
    opt = torch.optim.AdamW(student.parameters(), lr=args.lr, betas=(0.8, 0.99), weight_decay=0.0)
    mrstft = MRSTFT(dev)
    log = open(args.out + ".log.jsonl", "a" if (args.eval_only or args.resume) else "w")
    start = time.time()
    step = step0
    # The teacher's validation outputs never change: computed once, not at every evaluation.
    val_teacher = [teacher_output(teacher, mel_fn, y) for _, y in val]

    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda _: lr_factor(step - step0, time.time() - start, args.minutes, args.lr_floor))
    lengths = np.array([len(y) for y, _ in pairs], dtype=np.float64)
    probs = lengths / lengths.sum()
    keeper = BestExport(student, cfg, args.out, {"seed": args.seed, "augment": args.augment, "voices": args.voices})

    def validate():
        keeper.offer(validation_score(student, teacher, val, mel_fn, mrstft, val_teacher, step, log), step)

    if (args.resume or args.init) and not args.eval_only:
        validate()
    deadline = start + args.minutes * 60
    if args.eval_only:
        deadline = 0
    while time.time() < deadline and step - step0 < args.max_steps:
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
        # (`step` counts on after the update: the learning-rate schedule reads it during sched.step())
        optimise(student, opt, sched, mel_fn, mrstft, x, target, log if (step + 1) % 25 == 0 else None, step + 1, start)
        step += 1
        if step % args.eval_every == 0:
            validate()
    if not args.eval_only:
        validate()
    # Final metrics of the exported model on validation and on every shared clip.
    from safetensors import safe_open
    model = GRCGenerator(cfg).to(dev)
    model.load_state_dict(load_file(args.out), strict=True)
    model.eval()
    with safe_open(args.out, "pt") as f:
        meta = json.loads(f.metadata()["training"])
    val_rows = evaluate(model, teacher, val, mel_fn, mrstft)
    # Every other shared clip (its training pieces), against the cached teacher outputs.
    names = [n for n, y in train_real for _ in pieces(y)]
    n_real = len(names)
    real_pairs = pairs[: n_real * gains: gains]
    train_rows = evaluate(model, teacher, [(nm, x) for nm, (x, _) in zip(names, real_pairs)], mel_fn, mrstft,
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
