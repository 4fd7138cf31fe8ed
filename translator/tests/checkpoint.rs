//! Real-format StreamSpeech checkpoints, built by upstream's own code through fairseq's task
//! machinery (`scripts/make_streamspeech_fixture.py`): a small one (fp16, `cfg.model` and
//! `cfg.task` as argparse Namespaces, optimizer state) and the full-size es→en key/shape manifest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use translator::model::{MtSettings, StreamSpeechConfig};
use vocoder::checkpoint::{self, LoadOptions, StoredDType};
use vocoder::report::CheckpointReport;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streamspeech")
}

/// Parameters as PyTorch counts them: buffers left out, tied output projections counted once.
fn parameters(entries: &BTreeMap<String, Vec<usize>>) -> usize {
    entries
        .iter()
        .filter(|(k, _)| !k.ends_with(".version") && !k.contains("running_") && !k.ends_with("num_batches_tracked") && !k.ends_with("output_projection.weight"))
        .map(|(_, s)| s.iter().product::<usize>())
        .sum()
}

#[test]
fn small_checkpoint_hyper_parameters_and_every_entry() {
    let ckpt = checkpoint::load_with(&fixtures().join("small.pt"), &LoadOptions { tensors_under: Some("model.".into()) }).unwrap();
    assert!(ckpt.code_calls.is_empty(), "{:?}", ckpt.code_calls);
    assert_eq!(ckpt.tensors["encoder.linear.weight"].dtype, StoredDType::F16);
    assert!(ckpt.ignored.iter().any(|k| k.starts_with("last_optimizer_state.state.0.exp_avg")), "optimizer state listed, not read");
    let cfg = StreamSpeechConfig::from_checkpoint(&ckpt, MtSettings { layers: 2, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 }).unwrap();
    assert_eq!((cfg.encoder.layers, cfg.encoder.layer.embed_dim, cfg.encoder.attention_chunk), (2, 32, Some(8)));
    assert_eq!((cfg.t2u.ctc_upsample_rate, cfg.t2u.vocab, cfg.mt.vocab, cfg.asr_vocab), (25, 1005, 6000, 6000));
    let report = CheckpointReport::compare(&cfg.expected_params(), &ckpt.shapes());
    assert!(report.is_clean(), "{report}");
    // The output projections are tied to the embeddings (one parameter, two entries).
    for base in ["decoder", "target_unigram_decoder"] {
        let (e, o) = (&ckpt.tensors[&format!("{base}.embed_tokens.weight")], &ckpt.tensors[&format!("{base}.output_projection.weight")]);
        assert_eq!(e.values, o.values, "{base}: tied");
    }
    let shapes: BTreeMap<String, Vec<usize>> = ckpt.shapes();
    assert_eq!(parameters(&shapes), 762_080, "upstream's parameter count");
}

#[test]
fn full_size_es_en_entries_match_upstream() {
    let text = std::fs::read_to_string(fixtures().join("manifest_es-en.json")).unwrap();
    let manifest: BTreeMap<String, Vec<usize>> = serde_json::from_str(&text).unwrap();
    // The es→en simultaneous training script's values (researches/ctc_unity/train_scripts/
    // train.simul-s2st.sh) and the multitask config's MT decoder, as the generated full-size
    // checkpoint of the memory test and the benchmark is written from them.
    let cfg = translator::synthetic::es_en_full_size();
    let expected = cfg.expected_params();
    let report = CheckpointReport::compare(&expected, &manifest);
    assert!(report.is_clean(), "{report}");
    assert_eq!(parameters(&manifest), 70_604_768, "StreamSpeech's 70.6 M parameters");
}

/// A generated checkpoint reads back as the model it was written from: its Namespace gives the
/// same hyper-parameters, every entry loads strictly, tied projections share their storage, the
/// optimizer state is listed but not read.
#[test]
fn generated_checkpoint_reads_back_as_written() {
    use translator::synthetic::{self, StoredAs, SyntheticCheckpoint};
    let small = checkpoint::load_with(&fixtures().join("small.pt"), &LoadOptions { tensors_under: Some("model.".into()) }).unwrap();
    let mt = MtSettings { layers: 2, embed_dim: 32, ffn_embed_dim: 64, attention_heads: 4 };
    let cfg = StreamSpeechConfig::from_checkpoint(&small, mt).unwrap();
    let d = tempfile::tempdir().unwrap();
    for stored_as in [StoredAs::F16, StoredAs::F32] {
        let path = d.path().join("gen.pt");
        let w = synthetic::write(&path, &SyntheticCheckpoint { cfg: &cfg, stored_as, seed: 7, optimizer_state: true }).unwrap();
        assert_eq!(w.parameters, 762_080);
        let ckpt = checkpoint::load_with(&path, &LoadOptions { tensors_under: Some("model.".into()) }).unwrap();
        assert!(ckpt.code_calls.is_empty());
        assert_eq!(ckpt.tensors["encoder.linear.weight"].dtype, if stored_as == StoredAs::F16 { StoredDType::F16 } else { StoredDType::F32 });
        assert_eq!(StreamSpeechConfig::from_checkpoint(&ckpt, mt).unwrap(), cfg);
        assert!(CheckpointReport::compare(&cfg.expected_params(), &ckpt.shapes()).is_clean());
        assert!(ckpt.ignored.iter().any(|k| k.starts_with("last_optimizer_state.state.0.exp_avg_sq")), "{:?}", ckpt.ignored);
        let (e, o) = (&ckpt.tensors["decoder.embed_tokens.weight"], &ckpt.tensors["decoder.output_projection.weight"]);
        assert_eq!(e.values, o.values, "tied");
        assert_eq!(ckpt.tensors["decoder.layer_norm.weight"].values.as_deref().unwrap()[0], -1.0, "anti-copy LayerNorm");
        // The same seed writes the same file; another seed other weights.
        let again = d.path().join("again.pt");
        synthetic::write(&again, &SyntheticCheckpoint { cfg: &cfg, stored_as, seed: 7, optimizer_state: true }).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&again).unwrap());
        synthetic::write(&again, &SyntheticCheckpoint { cfg: &cfg, stored_as, seed: 8, optimizer_state: false }).unwrap();
        let other = checkpoint::load_with(&again, &LoadOptions { tensors_under: Some("model.".into()) }).unwrap();
        assert_ne!(other.tensors["encoder.linear.weight"].values, ckpt.tensors["encoder.linear.weight"].values);
    }
}
