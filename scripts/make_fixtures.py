#!/usr/bin/env python3
"""Builds the PyTorch reference fixtures for the vocoder-core tests (run by hand, results committed).

    pip install torch numpy librosa safetensors soundfile
    python3 scripts/make_fixtures.py [--universal PATH/TO/generator_universal.pth.tar]

Writes vocoder/tests/fixtures/:
  v1_tiny/, v3_tiny/, grc_tiny/, grc_causal_tiny/   tiny random-weight models (HiFi-GAN
      resblock "1", "2", GRC-MRF, causal GRC-MRF):
      config.json, model.safetensors (folded weights, config in __metadata__),
      model_zip.pth (zip format, weight norm, nested dict, key prefix),
      model_legacy.pth (pre-1.6 format, weight norm, nested dict, key prefix),
      io.safetensors (mel input [1, n_mels, T] and PyTorch output audio [1, 1, T*hop])
  grc_complex/   the seed's "complex GRC" checkpoint (grouped convs, BatchNorm, LoRA, attention)
      with the plain GRC config.json: must be refused with a full report.
  broken/        truncated file, wrong dtype, NaN weight, missing tensor (from grc_tiny).
  mel_ref.safetensors   the reference HiFi-GAN mel of tests/data's real clip (universal config).
  universal_ref.safetensors (with --universal): the universal V1 output for that mel.

The reference code follows jik876/hifi-gan (MIT) models.py / meldataset.py.
"""
import argparse
import json
import os
import shutil

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.nn.utils import weight_norm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "vocoder", "tests", "fixtures")
CLIP = os.path.join(ROOT, "tests", "data", "es_librivox_cuentosdehadas03_14_grimm.wav")

AUDIO = dict(sampling_rate=22050, n_fft=1024, hop_size=256, win_size=1024, num_mels=80, fmin=0, fmax=8000)
# The tiny models upsample x16, so their hop is 16 (a config whose upsampling does not equal its
# hop is refused: it would play at the wrong speed). win < n_fft exercises window padding.
TINY_AUDIO = dict(sampling_rate=16000, n_fft=128, hop_size=16, win_size=64, num_mels=20, fmin=0, fmax=8000)


def get_padding(k, d=1):
    return (k * d - d) // 2


# --- jik876/hifi-gan generator (reference) -----------------------------------------------------
class ResBlock1(nn.Module):
    def __init__(self, ch, k, d, slope, wn):
        super().__init__()
        w = wn if wn else (lambda m: m)
        self.slope = slope
        self.convs1 = nn.ModuleList([w(nn.Conv1d(ch, ch, k, 1, dilation=x, padding=get_padding(k, x))) for x in d])
        self.convs2 = nn.ModuleList([w(nn.Conv1d(ch, ch, k, 1, dilation=1, padding=get_padding(k, 1))) for _ in d])

    def forward(self, x):
        for c1, c2 in zip(self.convs1, self.convs2):
            xt = F.leaky_relu(x, self.slope)
            xt = c1(xt)
            xt = F.leaky_relu(xt, self.slope)
            xt = c2(xt)
            x = xt + x
        return x


class ResBlock2(nn.Module):
    def __init__(self, ch, k, d, slope, wn):
        super().__init__()
        w = wn if wn else (lambda m: m)
        self.slope = slope
        self.convs = nn.ModuleList([w(nn.Conv1d(ch, ch, k, 1, dilation=x, padding=get_padding(k, x))) for x in d])

    def forward(self, x):
        for c in self.convs:
            xt = F.leaky_relu(x, self.slope)
            xt = c(xt)
            x = xt + x
        return x


class Generator(nn.Module):
    def __init__(self, h, wn=weight_norm):
        super().__init__()
        w = wn if wn else (lambda m: m)
        self.h = h
        self.slope = h.get("lrelu_slope", 0.1)
        self.final_slope = h.get("final_lrelu_slope", 0.01)
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.num_upsamples = len(h["upsample_rates"])
        self.conv_pre = w(nn.Conv1d(h["num_mels"], h["upsample_initial_channel"], 7, 1, padding=3))
        rb = ResBlock1 if h["resblock"] == "1" else ResBlock2
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            c = h["upsample_initial_channel"]
            self.ups.append(w(nn.ConvTranspose1d(c // (2**i), c // (2 ** (i + 1)), k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = h["upsample_initial_channel"] // (2 ** (i + 1))
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(rb(ch, k, d, self.slope, wn))
        self.conv_post = w(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x):
        x = self.conv_pre(x)
        for i in range(self.num_upsamples):
            x = F.leaky_relu(x, self.slope)
            x = self.ups[i](x)
            xs = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.num_kernels
        x = F.leaky_relu(x, self.final_slope)  # the reference's default slope (0.01)
        x = self.conv_post(x)
        return torch.tanh(x)


# --- GRC-MRF "Modified" generator (the thesis architecture as the vocoder-core issue states it) --
class CausalConv1d(nn.Conv1d):
    """A conv1d padded with k−1 zeros on the left only: output t sees inputs ≤ t (same keys and
    shapes as a centred nn.Conv1d, so weights move between the two)."""

    def __init__(self, cin, cout, k):
        super().__init__(cin, cout, k, 1, padding=0)

    def forward(self, x):
        return super().forward(F.pad(x, (self.kernel_size[0] - 1, 0)))


class CausalConvTranspose1d(nn.ConvTranspose1d):
    """A transposed conv without padding, cut to the first T·stride columns: output u sees inputs
    ≤ ⌊u/stride⌋ (no look-ahead)."""

    def __init__(self, cin, cout, k, s):
        super().__init__(cin, cout, k, s, padding=0)

    def forward(self, x):
        return super().forward(x)[..., : x.shape[-1] * self.stride[0]]


def conv1d(cin, cout, k, causal):
    return CausalConv1d(cin, cout, k) if causal else nn.Conv1d(cin, cout, k, 1, padding=k // 2)


class GRCBlock(nn.Module):
    def __init__(self, ch, k, causal=False):
        super().__init__()
        self.conv1 = conv1d(ch, ch, k, causal)
        self.conv2 = conv1d(ch, ch, k, causal)

    def forward(self, x):
        return self.conv2(F.relu(self.conv1(x))) + x


class MRF(nn.Module):
    def __init__(self, ch, ks, causal=False):
        super().__init__()
        self.convs = nn.ModuleList([GRCBlock(ch, k, causal) for k in ks])

    def forward(self, x):
        return sum(c(x) for c in self.convs) / len(self.convs)


class GRCGenerator(nn.Module):
    def __init__(self, h):
        super().__init__()
        c = h["upsample_initial_channel"]
        ks = h.get("grc_kernel_sizes", [3, 5, 7])
        self.slope = h.get("lrelu_slope", 0.1)
        self.final_slope = h.get("grc_final_lrelu_slope", None)
        causal = bool(h.get("causal", False))  # the low-latency student: no look-ahead anywhere
        self.initial_conv = conv1d(h["num_mels"], c, 7, causal)
        self.mrfs = nn.ModuleList([MRF(c, ks, causal)])
        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            cin, cout = c // 2**i, c // 2 ** (i + 1)
            self.ups.append(CausalConvTranspose1d(cin, cout, k, u) if causal
                            else nn.ConvTranspose1d(cin, cout, k, u, padding=(k - u) // 2))
            self.mrfs.append(MRF(cout, ks, causal))
        self.final_conv = conv1d(c // 2 ** len(self.ups), 1, 7, causal)

    def forward(self, x):
        x = self.initial_conv(x)
        x = self.mrfs[0](x)
        for i, up in enumerate(self.ups):
            x = F.leaky_relu(x, self.slope)
            x = up(x)
            x = self.mrfs[i + 1](x)
        if self.final_slope is not None:
            x = F.leaky_relu(x, self.final_slope)
        return torch.tanh(self.final_conv(x))


# --- reference mel front end (jik876/hifi-gan meldataset.mel_spectrogram) ----------------------
class MelFrontEnd:
    """The reference HiFi-GAN mel (meldataset.py's mel_spectrogram, center=False; the same as
    vocoder/src/mel.rs) with its filter bank and window built once, on `dev`. `basis`: the librosa
    filter bank, given where librosa is not installed (the GPU training machine has none)."""

    def __init__(self, cfg, dev="cpu", basis=None):
        if basis is None:
            import librosa  # here, not at the top: the model classes import on a machine without librosa
            basis = librosa.filters.mel(sr=cfg["sampling_rate"], n_fft=cfg["n_fft"], n_mels=cfg["num_mels"],
                                        fmin=cfg["fmin"], fmax=cfg["fmax"])
        self.basis = torch.as_tensor(np.asarray(basis), dtype=torch.float32, device=dev)
        self.window = torch.hann_window(cfg["win_size"], device=dev)
        self.n_fft, self.hop, self.win = cfg["n_fft"], cfg["hop_size"], cfg["win_size"]

    def __call__(self, y):
        pad = int((self.n_fft - self.hop) / 2)
        y = F.pad(y.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(y, self.n_fft, hop_length=self.hop, win_length=self.win, window=self.window,
                          center=False, pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
        spec = torch.view_as_real(spec)
        spec = torch.sqrt(spec.pow(2).sum(-1) + 1e-9)
        spec = torch.matmul(self.basis, spec)
        return torch.log(torch.clamp(spec, min=1e-5))


def mel_spectrogram(y, n_fft, num_mels, sampling_rate, hop_size, win_size, fmin, fmax):
    cfg = dict(n_fft=n_fft, num_mels=num_mels, sampling_rate=sampling_rate, hop_size=hop_size,
               win_size=win_size, fmin=fmin, fmax=fmax)
    return MelFrontEnd(cfg, y.device)(y)


def load_clip(seconds=None):
    import soundfile as sf
    y, sr = sf.read(CLIP, dtype="float32")
    assert sr == AUDIO["sampling_rate"], sr
    if seconds:
        y = y[: int(seconds * sr)]
    return torch.from_numpy(y).unsqueeze(0)


def fold_state_dict(sd):
    """State dict with weight norm folded into a plain `weight` (torch's own _weight_norm, dim 0),
    as stored in our safetensors. Handles both weight_g/weight_v and parametrizations."""
    out = {}
    for k, v in sd.items():
        if k.endswith(".weight_g"):
            base = k[: -len(".weight_g")]
            out[base + ".weight"] = torch._weight_norm(sd[base + ".weight_v"], v, 0).contiguous()
        elif k.endswith(".parametrizations.weight.original0"):
            base = k[: -len(".parametrizations.weight.original0")]
            v1 = sd[base + ".parametrizations.weight.original1"]
            out[base + ".weight"] = torch._weight_norm(v1, v, 0).contiguous()
        elif k.endswith(".weight_v") or k.endswith(".parametrizations.weight.original1"):
            continue
        else:
            out[k] = v.contiguous()
    return out


def save_all(name, cfg, model, mel, folded, wn_sd, zip_wrap, legacy_wrap):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    save_file(folded, os.path.join(d, "model.safetensors"), metadata={"config": json.dumps(cfg)})
    torch.save(zip_wrap(wn_sd), os.path.join(d, "model_zip.pth"))
    torch.save(legacy_wrap(wn_sd), os.path.join(d, "model_legacy.pth"), _use_new_zipfile_serialization=False)
    with torch.no_grad():
        audio = model(mel)
    save_file({"mel": mel.contiguous(), "audio": audio.contiguous()}, os.path.join(d, "io.safetensors"))
    print(name, "mel", tuple(mel.shape), "audio", tuple(audio.shape), "max|audio|", float(audio.abs().max()))


def tiny_hifigan(name, resblock, parametrizations):
    torch.manual_seed({"1": 1, "2": 2}[resblock])
    cfg = dict(resblock=resblock, upsample_rates=[4, 4], upsample_kernel_sizes=[8, 8],
               upsample_initial_channel=16, resblock_kernel_sizes=[3, 7],
               resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]] if resblock == "1" else [[1, 3], [1, 3]],
               **TINY_AUDIO)
    if parametrizations:
        from torch.nn.utils.parametrizations import weight_norm as pwn
        model = Generator(cfg, wn=pwn)
    else:
        model = Generator(cfg)
    # Non-trivial weight-norm gains so folding is really exercised.
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k.endswith("weight_g") or k.endswith("original0"):
                p.mul_(torch.rand_like(p) + 0.5)
    model.eval()
    mel = torch.randn(1, cfg["num_mels"], 23) * 1.5 - 4.0
    wn_sd = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_state_dict(wn_sd)
    if resblock == "1":
        zip_wrap = lambda sd: {"generator": {"module." + k: v for k, v in sd.items()}, "steps": 1000}
        legacy_wrap = lambda sd: {"generator": sd, "epoch": 3}
    else:
        zip_wrap = lambda sd: {"state_dict": {"generator." + k: v for k, v in sd.items()}}
        legacy_wrap = lambda sd: {"model_state_dict": {"module." + k: v for k, v in sd.items()}}
    save_all(name, cfg, model, mel, folded, wn_sd, zip_wrap, legacy_wrap)


def tiny_grc():
    torch.manual_seed(3)
    cfg = dict(resblock="grc", grc_kernel_sizes=[3, 5, 7], upsample_rates=[4, 4],
               upsample_kernel_sizes=[8, 8], upsample_initial_channel=16, **TINY_AUDIO)
    model = GRCGenerator(cfg).eval()
    mel = torch.randn(1, cfg["num_mels"], 19) * 1.5 - 4.0
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_all("grc_tiny", cfg, model, mel, sd, sd,
             lambda sd: {"model_state_dict": sd, "optimizer": {"lr": 0.0002}},
             lambda sd: {"generator": {"module." + k: v for k, v in sd.items()}})
    return cfg, sd


def tiny_grc_causal():
    """The causal GRC-MRF (config "causal": true): no look-ahead, so its streaming lag is 0."""
    torch.manual_seed(4)
    cfg = dict(resblock="grc", causal=True, grc_kernel_sizes=[3, 5, 7], upsample_rates=[4, 4],
               upsample_kernel_sizes=[8, 8], upsample_initial_channel=16, **TINY_AUDIO)
    model = GRCGenerator(cfg).eval()
    mel = torch.randn(1, cfg["num_mels"], 19) * 1.5 - 4.0
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_all("grc_causal_tiny", cfg, model, mel, sd, sd,
             lambda sd: {"model_state_dict": sd},
             lambda sd: {"generator": sd})
    for f in ("model_zip.pth", "model_legacy.pth"):  # the loaders are tested on the other fixtures
        os.remove(os.path.join(OUT, "grc_causal_tiny", f))
    # Causality itself, checked in the reference: changing frame 10 leaves audio before it alone.
    with torch.no_grad():
        a = model(mel)
        m2 = mel.clone()
        m2[..., 10:] += 1.0
        b = model(m2)
    hop = cfg["hop_size"]
    assert torch.equal(a[..., : 10 * hop], b[..., : 10 * hop]), "causal GRC looks ahead"
    assert not torch.equal(a[..., 10 * hop:], b[..., 10 * hop:])


def complex_grc(cfg):
    """The seed's checkpoint layout: grouped convs (groups=4), kernel 3 with dilations 1/3/5,
    BatchNorm norm1/norm2, LoRA adapters, channel and temporal attention."""
    torch.manual_seed(4)
    sd = {}
    c = cfg["upsample_initial_channel"]
    sd["initial_conv.weight"] = torch.randn(c, cfg["num_mels"], 7) * 0.05
    sd["initial_conv.bias"] = torch.zeros(c)
    chans = [c // 2**i for i in range(len(cfg["upsample_rates"]) + 1)]
    for i, ch in enumerate(chans):
        for j in range(3):
            p = f"mrfs.{i}.convs.{j}."
            for conv in ("conv1", "conv2"):
                sd[p + conv + ".weight"] = torch.randn(ch, ch // 4, 3) * 0.05
                sd[p + conv + ".bias"] = torch.zeros(ch)
            for norm in ("norm1", "norm2"):
                sd[p + norm + ".weight"] = torch.ones(ch)
                sd[p + norm + ".bias"] = torch.zeros(ch)
                sd[p + norm + ".running_mean"] = torch.zeros(ch)
                sd[p + norm + ".running_var"] = torch.ones(ch)
                sd[p + norm + ".num_batches_tracked"] = torch.tensor(0, dtype=torch.int64)
            for lora in ("lora_conv1", "lora_conv2"):
                sd[p + lora + ".lora_A"] = torch.randn(4, ch * 3) * 0.01
                sd[p + lora + ".lora_B"] = torch.zeros(ch, 4)
            sd[p + "channel_attention.1.weight"] = torch.randn(max(ch // 8, 1), ch, 1) * 0.05
            sd[p + "channel_attention.1.bias"] = torch.zeros(max(ch // 8, 1))
            sd[p + "channel_attention.3.weight"] = torch.randn(ch, max(ch // 8, 1), 1) * 0.05
            sd[p + "channel_attention.3.bias"] = torch.zeros(ch)
            sd[p + "temporal_attention.0.weight"] = torch.randn(1, 2, 7) * 0.05
            sd[p + "temporal_attention.0.bias"] = torch.zeros(1)
    for i, (u, k) in enumerate(zip(cfg["upsample_rates"], cfg["upsample_kernel_sizes"])):
        sd[f"ups.{i}.weight"] = torch.randn(chans[i], chans[i + 1], k) * 0.05
        sd[f"ups.{i}.bias"] = torch.zeros(chans[i + 1])
    sd["final_conv.weight"] = torch.randn(1, chans[-1], 7) * 0.05
    sd["final_conv.bias"] = torch.zeros(1)
    d = os.path.join(OUT, "grc_complex")
    os.makedirs(d, exist_ok=True)
    torch.save({"generator": sd, "steps": 50000}, os.path.join(d, "checkpoint.pth"))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    print("grc_complex", len(sd), "keys")


def broken(cfg, sd):
    d = os.path.join(OUT, "broken")
    os.makedirs(d, exist_ok=True)
    meta = {"config": json.dumps(cfg)}
    good = os.path.join(OUT, "grc_tiny", "model.safetensors")
    data = open(good, "rb").read()
    open(os.path.join(d, "truncated.safetensors"), "wb").write(data[: len(data) // 2])
    wrong = dict(sd)
    wrong["final_conv.weight"] = (sd["final_conv.weight"] * 1000).to(torch.int32)
    save_file(wrong, os.path.join(d, "wrong_dtype.safetensors"), metadata=meta)
    nan = dict(sd)
    w = sd["mrfs.1.convs.2.conv1.weight"].clone()
    w[0, 0, 0] = float("nan")
    nan["mrfs.1.convs.2.conv1.weight"] = w
    save_file(nan, os.path.join(d, "nan_weight.safetensors"), metadata=meta)
    missing = {k: v for k, v in sd.items() if k != "ups.1.bias"}
    save_file(missing, os.path.join(d, "missing_tensor.safetensors"), metadata=meta)
    half = {k: v.half() for k, v in sd.items()}
    save_file(half, os.path.join(d, "fp16.safetensors"), metadata=meta)
    print("broken fixtures written")


def mel_reference():
    y = load_clip(seconds=1.5)
    mel = mel_spectrogram(y, AUDIO["n_fft"], AUDIO["num_mels"], AUDIO["sampling_rate"], AUDIO["hop_size"],
                          AUDIO["win_size"], AUDIO["fmin"], AUDIO["fmax"])
    t = TINY_AUDIO
    mel_small = mel_spectrogram(y, t["n_fft"], t["num_mels"], t["sampling_rate"], t["hop_size"], t["win_size"],
                                t["fmin"], t["fmax"])
    save_file({"audio": y.contiguous(), "mel": mel.contiguous(), "mel_small": mel_small.contiguous()},
              os.path.join(OUT, "mel_ref.safetensors"))
    print("mel_ref", tuple(mel.shape), "mel_small", tuple(mel_small.shape))
    return mel


def universal_reference(path, mel):
    d = os.path.dirname(path)
    with open(os.path.join(d, "config.json")) as f:
        h = json.load(f)
    model = Generator(h)
    ckpt = torch.load(path, map_location="cpu")
    model.load_state_dict(ckpt["generator"], strict=True)
    model.eval()
    with torch.no_grad():
        audio = model(mel)
    save_file({"audio": audio.contiguous()}, os.path.join(OUT, "universal_ref.safetensors"))
    print("universal_ref", tuple(audio.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--universal", help="generator_universal.pth.tar (config.json beside it)")
    ap.add_argument("--only", help="build just this fixture (e.g. grc_causal_tiny), leaving the others as committed")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.only:
        {"grc_causal_tiny": tiny_grc_causal}[args.only]()
        return
    tiny_hifigan("v1_tiny", "1", parametrizations=False)
    tiny_hifigan("v3_tiny", "2", parametrizations=True)
    cfg, sd = tiny_grc()
    tiny_grc_causal()
    complex_grc(cfg)
    broken(cfg, sd)
    mel = mel_reference()
    if args.universal:
        universal_reference(args.universal, mel)


if __name__ == "__main__":
    main()
