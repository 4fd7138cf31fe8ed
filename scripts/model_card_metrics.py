#!/usr/bin/env python3
"""Fills the metrics section of models/MODEL_CARD.md from <model>.metrics.json (written by
scripts/train_grc.py)."""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
m = json.load(open(os.path.join(ROOT, "models", "grc_mrf_distilled.safetensors.metrics.json")))


def table(rows):
    out = ["| clip | student log-mel L1 | teacher log-mel L1 | ratio | student MR-STFT | teacher MR-STFT |",
           "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        out.append(f"| {r['clip']} | {r['student_mel_l1']:.3f} | {r['teacher_mel_l1']:.3f} | "
                   f"{r['student_mel_l1'] / r['teacher_mel_l1']:.2f} | {r['student_mrstft']:.3f} | {r['teacher_mrstft']:.3f} |")
    return "\n".join(out)


val = m["validation"]
# The bound the test enforces per clip.
test_src = open(os.path.join(ROOT, "tests", "tests", "distilled_model.rs")).read()
bound = float(re.search(r"const TARGET_RATIO_BOUND: f64 = ([0-9.]+);", test_src).group(1))
runs = m.get("runs") or [{"steps": m["steps_total"], "minutes": m["minutes"], "threads": 2, "schedule": "constant"}]
history = "; ".join(f"{r['steps']} steps in {r['minutes']:.0f} min on "
                    + (r["device"] if "device" in r else f"{r['threads']} CPU thread{'s' if r['threads'] > 1 else ''}")
                    + f" ({r['schedule']} learning rate)" for r in runs)
mean = lambda k, rows: sum(r[k] for r in rows) / len(rows)
text = f"""## Metrics

Distances to the **input audio** (log-mel L1 on the reference front end; MR-STFT = spectral
convergence + log-magnitude L1 averaged over 4 resolutions), student next to the teacher on the
same mel. Training: {history}; {m['steps_total']} steps in all, exported at step
{m['exported_step']}; {m['parameters']} parameters.

**Held-out validation clips** (never trained on):

{table(val)}

Mean log-mel L1: student {mean('student_mel_l1', val):.3f}, teacher {mean('teacher_mel_l1', val):.3f}
(ratio {mean('student_mel_l1', val) / mean('teacher_mel_l1', val):.2f}; target ≤ 1.5).

**Every other shared clip** (training pieces, ≤ 8 s each, at their training gain):

{table(m['train_clips'])}

The test `tests/tests/distilled_model.rs` re-measures the validation figures in Rust (candle,
rubato resampling) on every CI run and requires the student within {bound}× of the teacher on each
clip (the issue's target), a clean checkpoint report, and a passing health probe.
"""
card = os.path.join(ROOT, "models", "MODEL_CARD.md")
s = open(card).read()
if "METRICS_PLACEHOLDER" in s:
    s = s.replace("METRICS_PLACEHOLDER", text)
else:
    s = s[: s.index("## Metrics")] + text
open(card, "w").write(s)
print(text)
