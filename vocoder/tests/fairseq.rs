//! fairseq training checkpoints (StreamSpeech's layout), written by torch.save itself
//! (`scripts/make_fairseq_fixture.py`): argparse Namespaces read as hyper-parameters, fp16/bf16
//! tensors, tied weights, and only the `model` tensors read when asked (the optimizer state is
//! listed, never read).

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;

use common::fixtures;
use vocoder::checkpoint::{self, LoadOptions, Scalar, StoredDType};

fn file(name: &str) -> PathBuf {
    fixtures().join("fairseq").join(name)
}

fn model_only() -> LoadOptions {
    LoadOptions { tensors_under: Some("model.".into()) }
}

#[test]
fn namespaces_dtypes_and_tied_weights() {
    for name in ["zip.pt", "legacy.pt"] {
        let c = checkpoint::load_with(&file(name), &model_only()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(c.nesting.as_deref(), Some("model"), "{name}");
        assert_eq!(c.tensors.len(), 7, "{name}: {:?}", c.tensors.keys().collect::<Vec<_>>());
        let w = &c.tensors["encoder.layers.0.fc1.weight"];
        assert_eq!((w.dtype, w.shape.clone()), (StoredDType::F16, vec![8, 4]));
        assert_eq!(c.tensors["encoder.subsample.conv.0.weight"].dtype, StoredDType::BF16);
        assert_eq!(c.tensors["decoder.output_projection.weight"].values, c.tensors["decoder.embed_tokens.weight"].values, "tied");
        let steps = &c.tensors["encoder.layers.0.norm.num_batches_tracked"];
        assert_eq!((steps.dtype, steps.values.is_none()), (StoredDType::I64, true));
        // Hyper-parameters from the pickled Namespaces and dicts.
        let s = |k: &str| c.scalars.get(k).cloned().unwrap_or_else(|| panic!("{name}: no scalar {k}: {:?}", c.scalars.keys().collect::<Vec<_>>()));
        assert_eq!(s("cfg.model.encoder_layers"), Scalar::Int(12));
        assert_eq!(s("cfg.model.arch"), Scalar::Str("streamspeech".into()));
        assert_eq!(s("cfg.model.dropout"), Scalar::Float(0.1));
        assert_eq!(s("cfg.model.chunk_size"), Scalar::None);
        assert_eq!(s("cfg.model.share_decoder_input_output_embed"), Scalar::Bool(true));
        assert_eq!(s("cfg.task.target_code_size"), Scalar::Int(1000));
        assert_eq!(s("cfg.common.fp16"), Scalar::Bool(true));
        assert_eq!(s("extra_state.epoch"), Scalar::Int(3));
        assert!(c.code_calls.is_empty(), "{:?}", c.code_calls);
        assert!(c.ignored.iter().any(|k| k == "last_optimizer_state.state.0.exp_avg"), "{name}: {:?}", c.ignored);
        // The same values as an unselected load.
        let all = checkpoint::load(&file(name)).unwrap();
        assert_eq!(all.tensors["encoder.layers.0.fc1.weight"].values, w.values);
    }
}

/// The optimizer's storages (the only 16 KiB ones) removed from the archive: a full load fails,
/// a `model.` load does not even notice.
#[test]
fn unselected_storages_are_never_read() {
    let mut src = zip::ZipArchive::new(std::fs::File::open(file("zip.pt")).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut dropped = 0;
    for i in 0..src.len() {
        let mut f = src.by_index(i).unwrap();
        if f.size() == 64 * 64 * 4 {
            dropped += 1;
            continue;
        }
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        out.start_file(f.name().unwrap().to_string(), opts).unwrap();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        out.write_all(&b).unwrap();
    }
    assert_eq!(dropped, 2, "exp_avg and exp_avg_sq");
    let bytes = out.finish().unwrap().into_inner();
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("no-optimizer.pt");
    std::fs::write(&p, bytes).unwrap();
    let e = checkpoint::load(&p).unwrap_err().to_string();
    assert!(e.contains("missing"), "{e}");
    let c = checkpoint::load_with(&p, &model_only()).unwrap();
    assert_eq!(c.tensors.len(), 7);
}
