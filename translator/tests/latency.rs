//! Latency metrics equal SimulEval's own scorers (`scripts/make_latency_fixture.py` ran
//! `ALScorer`, `LAALScorer`, `APScorer`, `DALScorer`, `StartOffsetScorer`, `EndOffsetScorer`,
//! `ATDScorer` plain and computation-aware)
//! on the delays of the committed upstream traces and on edge cases; tolerance 1e−9 relative.

use std::path::Path;

use translator::latency::Metrics;

#[test]
fn metrics_equal_simuleval_scorers() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/simultaneous/latency_ref.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 6);
    for c in &cases {
        let words: Vec<f64> = c["words"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let speech: Vec<(f64, f64)> = c["speech"].as_array().unwrap().iter().map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap())).collect();
        let m = Metrics::compute(&words, &speech, c["source_ms"].as_f64().unwrap());
        let e = &c["expected"];
        let elapsed: Vec<f64> = c["elapsed"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        let aware = Metrics::compute_aware(&words, &speech, &elapsed, c["source_ms"].as_f64().unwrap());
        for (name, got) in [("AL", m.al), ("LAAL", m.laal), ("AP", m.ap), ("DAL", m.dal), ("StartOffset", m.start_offset), ("EndOffset", m.end_offset), ("ATD", m.atd), ("ATD_CA", aware.atd)] {
            let want = e[name].as_f64().unwrap();
            let got = got.unwrap_or(f64::NAN);
            assert!((got - want).abs() <= 1e-9 * want.abs().max(1.0), "{} {name}: ours {got}, SimulEval {want}", c["name"]);
        }
    }
}
