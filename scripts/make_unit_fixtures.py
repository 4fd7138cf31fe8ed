#!/usr/bin/env python3
"""PyTorch reference fixtures for StreamSpeech's unit vocoders (run by hand, results committed).

    pip install torch safetensors numpy
    python3 scripts/make_unit_fixtures.py

Writes vocoder/tests/fixtures/units/:
  code_tiny/   fairseq CodeHiFiGAN (speech-resynthesis `CodeGenerator`): unit embedding `dict`,
               duration predictor `dur_predictor` (fairseq VariancePredictor), multi-speaker
               embedding `spkr`, HiFi-GAN generator with weight norm. config.json (fairseq field
               names), g_tiny.pth (zip, {"generator": state dict with weight_g/weight_v}),
               io.safetensors (ids and durations stored as exact float32): units (with negative ids, removed as the reference does),
               durations, audio with and without duration prediction (speaker 3).
  code_xvec_tiny/  CodeHiFiGAN whose speaker input is a vector: `spkr` = Linear(embedder_dim → E)
               (fairseq's `embedder_params` form); speaker.safetensors holds the vector.
  film_tiny/   the thesis UnitHiFiGAN+FiLM: no duration predictor; `cond_proj` Linear(960→P) on
               concatenated L2-normalised speaker (192) and emotion (768) vectors; per stage
               `film_layers.{i}.net` Linear(P → 2·C_i) giving gamma, beta applied after each
               upsampling layer; ckpt.pth holds {"ema_generator": ..., "generator": <different
               weights>} (ema preferred). io.safetensors: units, cond (speaker, emotion), audio
               with and without conditioning; cond.safetensors / cond.npy (float64, speaker then
               emotion): the same conditioning vectors as a user would supply them.
  film_mlp_tiny/  the MLP FiLM variant (net.0 Linear → ReLU → Dropout → net.3 Linear).
The generator follows fairseq's hifigan.py (jik876/hifi-gan, MIT); CodeGenerator and
VariancePredictor follow facebookresearch/speech-resynthesis (MIT).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.nn.utils import weight_norm

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import ResBlock1  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "vocoder", "tests", "fixtures", "units")


class UnitGenerator(nn.Module):
    """fairseq hifigan.Generator with model_in_dim input and an optional FiLM hook per stage."""

    def __init__(self, h, wn=weight_norm):
        super().__init__()
        w = wn if wn else (lambda m: m)
        self.slope = h.get("lrelu_slope", 0.1)
        self.final_slope = h.get("final_lrelu_slope", 0.01)
        self.num_kernels = len(h["resblock_kernel_sizes"])
        self.conv_pre = w(nn.Conv1d(h["model_in_dim"], h["upsample_initial_channel"], 7, 1, padding=3))
        self.ups = nn.ModuleList()
        c = h["upsample_initial_channel"]
        for i, (u, k) in enumerate(zip(h["upsample_rates"], h["upsample_kernel_sizes"])):
            self.ups.append(w(nn.ConvTranspose1d(c // (2**i), c // (2 ** (i + 1)), k, u, padding=(k - u) // 2)))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            ch = c // (2 ** (i + 1))
            for k, d in zip(h["resblock_kernel_sizes"], h["resblock_dilation_sizes"]):
                self.resblocks.append(ResBlock1(ch, k, d, self.slope, wn))
        self.conv_post = w(nn.Conv1d(ch, 1, 7, 1, padding=3))

    def forward(self, x, film=None):
        x = self.conv_pre(x)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, self.slope))
            if film is not None:
                x = film(i, x)
            xs = None
            for j in range(self.num_kernels):
                r = self.resblocks[i * self.num_kernels + j](x)
                xs = r if xs is None else xs + r
            x = xs / self.num_kernels
        x = self.conv_post(F.leaky_relu(x, self.final_slope))
        return torch.tanh(x)


class VariancePredictor(nn.Module):
    def __init__(self, encoder_embed_dim, var_pred_hidden_dim, var_pred_kernel_size, var_pred_dropout):
        super().__init__()
        k = var_pred_kernel_size
        self.conv1 = nn.Sequential(nn.Conv1d(encoder_embed_dim, var_pred_hidden_dim, k, padding=(k - 1) // 2), nn.ReLU())
        self.ln1 = nn.LayerNorm(var_pred_hidden_dim)
        self.dropout = var_pred_dropout
        self.conv2 = nn.Sequential(nn.Conv1d(var_pred_hidden_dim, var_pred_hidden_dim, k, padding=1), nn.ReLU())
        self.ln2 = nn.LayerNorm(var_pred_hidden_dim)
        self.proj = nn.Linear(var_pred_hidden_dim, 1)

    def forward(self, x):  # B x T x C
        x = self.conv1(x.transpose(1, 2)).transpose(1, 2)
        x = F.dropout(self.ln1(x), p=self.dropout, training=self.training)
        x = self.conv2(x.transpose(1, 2)).transpose(1, 2)
        x = F.dropout(self.ln2(x), p=self.dropout, training=self.training)
        return self.proj(x).squeeze(dim=2)


class CodeGenerator(UnitGenerator):
    def __init__(self, h):
        super().__init__(h)
        self.dict = nn.Embedding(h["num_embeddings"], h["embedding_dim"])
        self.multispkr = h.get("multispkr", False)
        self.embedder = h.get("embedder_params", None)
        if self.multispkr and not self.embedder:
            self.spkr = nn.Embedding(h.get("num_speakers", 200), h["embedding_dim"])
        elif self.embedder:
            self.spkr = nn.Linear(h.get("embedder_dim", 256), h["embedding_dim"])
        self.dur_predictor = VariancePredictor(**h["dur_predictor_params"]) if h.get("dur_predictor_params") else None

    def forward(self, code, spkr=None, dur_prediction=False):
        x = self.dict(code).transpose(1, 2)
        dur = None
        if self.dur_predictor is not None and dur_prediction:
            log_dur = self.dur_predictor(x.transpose(1, 2))
            dur = torch.clamp(torch.round(torch.exp(log_dur) - 1).long(), min=1)
            x = torch.repeat_interleave(x, dur.view(-1), dim=2)
        if self.multispkr or self.embedder:
            s = self.spkr(spkr.view(-1, 1) if not self.embedder else spkr.view(1, 1, -1)).transpose(1, 2)  # B x C x 1
            x = torch.cat([x, s.repeat(1, 1, x.shape[-1])], dim=1)
        return super().forward(x), dur


class FilmGenerator(UnitGenerator):
    def __init__(self, h, mlp):
        super().__init__(h)
        self.dict = nn.Embedding(h["num_embeddings"], h["embedding_dim"])
        f = h["film"]
        self.cond_proj = nn.Linear(f["speaker_dim"] + f["emotion_dim"], f["proj_dim"])
        layers = []
        c = h["upsample_initial_channel"]
        for i in range(len(h["upsample_rates"])):
            ch = c // (2 ** (i + 1))
            if mlp:
                net = nn.Sequential(nn.Linear(f["proj_dim"], f["mlp_hidden"]), nn.ReLU(), nn.Dropout(0.1), nn.Linear(f["mlp_hidden"], 2 * ch))
            else:
                net = nn.Linear(f["proj_dim"], 2 * ch)
            m = nn.Module()
            m.net = net
            layers.append(m)
        self.film_layers = nn.ModuleList(layers)

    def forward(self, code, speaker=None, emotion=None):
        x = self.dict(code).transpose(1, 2)
        if speaker is None:
            return super().forward(x)
        cond = torch.cat([F.normalize(speaker, dim=-1), F.normalize(emotion, dim=-1)], dim=-1)
        h = self.cond_proj(cond)

        def film(i, x):
            gamma, beta = self.film_layers[i].net(h).chunk(2, dim=-1)
            return gamma.unsqueeze(-1) * x + beta.unsqueeze(-1)

        return super().forward(x, film)


BASE = dict(resblock="1", upsample_rates=[5, 4], upsample_kernel_sizes=[11, 8], upsample_initial_channel=16,
            resblock_kernel_sizes=[3, 7], resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5]], num_embeddings=50,
            embedding_dim=12, sampling_rate=16000, code_hop_size=20)


def jitter_gains(model):
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k.endswith("weight_g"):
                p.mul_(torch.rand_like(p) + 0.5)


def code_tiny():
    torch.manual_seed(11)
    h = dict(BASE, model_in_dim=24, multispkr=True, num_speakers=6,
             dur_predictor_params=dict(encoder_embed_dim=12, var_pred_hidden_dim=10, var_pred_kernel_size=3,
                                       var_pred_dropout=0.5))
    m = CodeGenerator(h)
    jitter_gains(m)
    with torch.no_grad():  # durations of 1..4 frames, so repeat_interleave really repeats
        m.dur_predictor.proj.bias.fill_(1.0)
    m.eval()
    d = os.path.join(OUT, "code_tiny")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(h, f, indent=2)
    torch.save({"generator": m.state_dict(), "steps": 500000}, os.path.join(d, "g_tiny.pth"))
    raw = torch.tensor([[3, 3, 17, -1, 42, 8, 8, 8, 0, 49, -5, 21, 21, 7, 30, 1, 2, 44]])
    code = raw[raw >= 0].unsqueeze(0)  # the reference vocoder drops negative ids
    spkr = torch.tensor([3])
    with torch.no_grad():
        plain, _ = m(code, spkr=spkr)
        with_dur, dur = m(code, spkr=spkr, dur_prediction=True)
    save_file({"units": raw.to(torch.float32), "durations": dur.to(torch.float32), "audio": plain.contiguous(),
               "audio_dur": with_dur.contiguous()}, os.path.join(d, "io.safetensors"))
    print("code_tiny", tuple(plain.shape), tuple(with_dur.shape), dur.tolist())


def code_xvec_tiny():
    """CodeHiFiGAN whose speaker input is a vector (x-vector) through `spkr` = Linear."""
    torch.manual_seed(14)
    h = dict(BASE, model_in_dim=24, embedder_params={"pretrained": False}, embedder_dim=16)
    m = CodeGenerator(h)
    jitter_gains(m)
    m.eval()
    d = os.path.join(OUT, "code_xvec_tiny")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(h, f, indent=2)
    torch.save({"generator": m.state_dict()}, os.path.join(d, "g_tiny.pth"))
    code = torch.tensor([[5, 9, 9, 31, 2, 40, 40, 7]])
    xvec = torch.randn(16)
    with torch.no_grad():
        audio, _ = m(code, spkr=xvec)
    save_file({"units": code.to(torch.float32), "audio": audio.contiguous()}, os.path.join(d, "io.safetensors"))
    save_file({"speaker": xvec.contiguous()}, os.path.join(d, "speaker.safetensors"))
    print("code_xvec_tiny", tuple(audio.shape))


def film_tiny(name, mlp):
    torch.manual_seed(12 if not mlp else 13)
    h = dict(BASE, model_in_dim=12, lrelu_slope=0.1, final_lrelu_slope=0.1,
             film=dict(speaker_dim=192, emotion_dim=768, proj_dim=8, mlp_hidden=6 if mlp else None))
    ema = FilmGenerator(h, mlp)
    jitter_gains(ema)
    ema.eval()
    other = FilmGenerator(h, mlp)  # "generator": different weights; ema must win
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(h, f, indent=2)
    torch.save({"generator": other.state_dict(), "ema_generator": ema.state_dict()}, os.path.join(d, "ckpt.pth"))
    code = torch.tensor([[4, 4, 9, 33, 2, 2, 18, 49, 0, 27, 11]])
    spk = torch.randn(1, 192)
    emo = torch.randn(1, 768)
    with torch.no_grad():
        plain = ema(code)
        cond = ema(code, spk, emo)
    save_file({"units": code.to(torch.float32), "speaker": spk.contiguous(), "emotion": emo.contiguous(),
               "audio": plain.contiguous(), "audio_cond": cond.contiguous()}, os.path.join(d, "io.safetensors"))
    save_file({"speaker": spk[0].contiguous(), "emotion": emo[0].contiguous()}, os.path.join(d, "cond.safetensors"))
    np.save(os.path.join(d, "cond.npy"), torch.cat([spk[0], emo[0]]).double().numpy())
    print(name, tuple(plain.shape), float((cond - plain).abs().max()))


if __name__ == "__main__":
    code_tiny()
    code_xvec_tiny()
    film_tiny("film_tiny", False)
    film_tiny("film_mlp_tiny", True)
