#!/usr/bin/env python3
"""SimulEval's own latency scorers on our traces: the reference for translator/src/latency.rs.

For each committed simultaneous trace (translator/tests/fixtures/simultaneous/trace_*.json) the
delays are derived as the Rust test derives them: each newly committed target piece gets the
source time of its segment (text), each segment with speech its source time and duration (speech,
16 kHz). Then SimulEval's scorer classes compute AL, LAAL, AP, DAL on the text delays and
StartOffset, EndOffset and ATD (speech output: 300 ms tokens on both sides) on a
`SpeechOutputInstance` whose `summarize()` lays the speech out; computation-aware ATD with
`elapsed` = delay + a made-up compute of 30 ms per segment so far (the fixture's `elapsed`); plus
hand-made edge cases (a first delay past the source's end, delays reaching the end early).
Writes translator/tests/fixtures/simultaneous/latency_ref.json.

    python3 scripts/make_latency_fixture.py --streamspeech PATH/TO/StreamSpeech
(SimulEval from the checkout's SimulEval/; soundfile, pandas, ... as SimulEval imports them)
"""
import argparse
import json
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIMUL = ROOT / "translator/tests/fixtures/simultaneous"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--streamspeech", required=True, type=Path)
    a = ap.parse_args()
    sys.path.insert(0, str(a.streamspeech / "SimulEval"))
    from simuleval.evaluator.instance import SpeechOutputInstance
    from simuleval.evaluator.scorers.latency_scorer import (ALScorer, APScorer, ATDScorer, DALScorer, EndOffsetScorer,
                                                            LAALScorer, StartOffsetScorer)

    out_dir = tempfile.mkdtemp()

    class TextIns:
        def __init__(self, delays, source_length):
            self.delays, self.source_length, self.reference = delays, source_length, None

    class SpeechIns(SpeechOutputInstance):
        def __init__(self, delays, durations, source_length):
            self.index, self.args = 0, Namespace(output=out_dir)
            self.delays, self.durations, self.elapsed = delays, durations, []
            self.prediction_list = [[0.0] * int(16 * d) for d in durations]
            self.target_sample_rate, self.reference, self._source_length = 16000, None, source_length
            self.intervals = []
            if delays:
                self.summarize_intervals()

        @property
        def source_length(self):
            return self._source_length

        def summarize_intervals(self):
            # SpeechOutputInstance.summarize without the dataloader lookup it ends with.
            start = prev_end = self.delays[0]
            for i, delay in enumerate(self.delays):
                start = max(prev_end, delay)
                prev_end = start + self.durations[i]
                self.intervals.append([start, self.durations[i]])

    def elapsed_of(speech):
        return [d + 30.0 * (i + 1) for i, (d, _) in enumerate(speech)]

    def score(words, speech, source_ms):
        t = TextIns(words, source_ms)
        r = {}
        if words:
            for name, cls in [("AL", ALScorer), ("LAAL", LAALScorer), ("AP", APScorer), ("DAL", DALScorer)]:
                r[name] = cls().compute(t)
        if speech:
            s = SpeechIns([d for d, _ in speech], [dur for _, dur in speech], source_ms)
            r["StartOffset"] = StartOffsetScorer().compute(s)
            r["EndOffset"] = EndOffsetScorer().compute(s)
            r["ATD"] = ATDScorer()({0: s})
            s.elapsed = elapsed_of(speech)
            r["ATD_CA"] = ATDScorer(computation_aware=True)({0: s})
        return r

    cases = []
    for seg in [160, 320, 640]:
        trace = json.loads((SIMUL / f"trace_{seg}.json").read_text())
        words, speech, shown = [], [], 0
        for s in trace["segments"]:
            ms = s["input_samples"] / 16.0
            n = len(s["translation_ids"])
            words += [ms] * max(n - shown, 0)
            shown = max(shown, n)
            if s["emitted_samples"] > 0:
                speech.append((ms, s["emitted_samples"] / 16.0))
        source_ms = trace["segments"][-1]["input_samples"] / 16.0
        cases.append({"name": f"trace_{seg}", "words": words, "speech": speech, "elapsed": elapsed_of(speech), "source_ms": source_ms,
                      "expected": score(words, speech, source_ms)})
    for name, words, speech, source_ms in [
        ("first_delay_past_the_end", [1200.0, 1300.0], [(1200.0, 500.0)], 1000.0),
        ("reaches_the_end_early", [100.0, 400.0, 1000.0, 1000.0, 1000.0], [(100.0, 900.0), (400.0, 50.0), (1000.0, 300.0)], 1000.0),
        ("gaps_in_speech", [320.0, 640.0, 960.0], [(320.0, 100.0), (960.0, 100.0)], 1280.0),
    ]:
        cases.append({"name": name, "words": words, "speech": speech, "elapsed": elapsed_of(speech), "source_ms": source_ms,
                      "expected": score(words, speech, source_ms)})
    (SIMUL / "latency_ref.json").write_text(json.dumps(cases, indent=1))
    for c in cases:
        print(c["name"], c["expected"])


if __name__ == "__main__":
    main()
