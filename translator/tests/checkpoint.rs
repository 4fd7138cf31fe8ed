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
    // train.simul-s2st.sh) and the multitask config's MT decoder.
    let small = checkpoint::load_with(&fixtures().join("small.pt"), &LoadOptions { tensors_under: Some("model.".into()) }).unwrap();
    let mut cfg = StreamSpeechConfig::from_checkpoint(&small, MtSettings { layers: 4, embed_dim: 512, ffn_embed_dim: 2048, attention_heads: 8 }).unwrap();
    cfg.encoder.layers = 12;
    cfg.encoder.layer.embed_dim = 256;
    cfg.encoder.layer.ffn_embed_dim = 2048;
    cfg.encoder.subsampler.out_channels = 256;
    cfg.encoder.subsampler.mid_channels = 1024;
    cfg.mt.encoder_dim = 256;
    cfg.t2u.embed_dim = 512;
    cfg.t2u.ffn_embed_dim = 2048;
    cfg.t2u.attention_heads = 8;
    let expected = cfg.expected_params();
    let report = CheckpointReport::compare(&expected, &manifest);
    assert!(report.is_clean(), "{report}");
    assert_eq!(parameters(&manifest), 70_604_768, "StreamSpeech's 70.6 M parameters");
}
