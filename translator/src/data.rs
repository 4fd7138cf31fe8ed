//! The model's data directory (StreamSpeech's `configs/<pair>/`): the global CMVN statistics,
//! the source and target piece dictionaries, and the multitask config that holds the MT
//! decoder's settings. Read bounded; nothing else is needed (no SentencePiece runtime: pieces are
//! joined and `▁` becomes a space).

use std::path::{Path, PathBuf};

use crate::error::TranslatorError;
use crate::fbank::GlobalCmvn;
use crate::model::MtSettings;

/// A fairseq dictionary: ids 0–3 are `<s>`, `<pad>`, `</s>`, `<unk>`, then the file's tokens in
/// order (one `token count` per line).
#[derive(Debug, Clone, PartialEq)]
pub struct Dictionary {
    pub symbols: Vec<String>,
}

impl Dictionary {
    pub fn load(path: &Path) -> Result<Self, TranslatorError> {
        let text = vocoder::files::read_text(path, 16 << 20, "dictionary")?;
        let mut symbols: Vec<String> = ["<s>", "<pad>", "</s>", "<unk>"].map(String::from).to_vec();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            // "token count [#fairseq:overwrite]": the token is everything before the count.
            let token = line.rsplit_once(' ').map(|(t, c)| if c.starts_with("#fairseq") { t.rsplit_once(' ').map_or(t, |x| x.0) } else { t });
            let token = token.ok_or_else(|| TranslatorError::Data(format!("{}: line {} is not `token count`", path.display(), i + 1)))?;
            symbols.push(token.to_string());
        }
        Ok(Dictionary { symbols })
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Pieces → text: joined, `▁` as a space, `<unk>` as a space (the agent's rule), trimmed.
    pub fn detokenize(&self, ids: &[u32]) -> String {
        let joined: String = ids.iter().filter_map(|i| self.symbols.get(*i as usize)).map(String::as_str).collect();
        let text = joined.replace("<unk>", " ").replace('\u{2581}', " ");
        text.split_whitespace().collect::<Vec<_>>().join(" ")
    }
}

/// Everything the translator reads from the data directory.
pub struct DataDir {
    pub cmvn: GlobalCmvn,
    pub source: Dictionary,
    pub target: Dictionary,
    pub mt: MtSettings,
}

fn yaml_usize(doc: &yaml_rust2::Yaml, path: &[&str]) -> Option<usize> {
    let mut y = doc;
    for key in path {
        y = &y[*key];
    }
    y.as_i64().and_then(|v| usize::try_from(v).ok())
}

impl DataDir {
    /// `dir` holds `gcmvn.npz`, `config_mtl_asr_st_ctcst.yaml`, `src_unigram6000/` and
    /// `tgt_unigram6000/` (each with its `spm_unigram_*.txt`), as the StreamSpeech repository's
    /// `configs/es-en/`.
    pub fn load(dir: &Path) -> Result<Self, TranslatorError> {
        let cmvn = GlobalCmvn::from_npz(&dir.join("gcmvn.npz"), 80)?;
        let dict_in = |sub: &str| -> Result<PathBuf, TranslatorError> {
            let d = dir.join(sub);
            let entries = std::fs::read_dir(&d).map_err(|e| TranslatorError::Data(format!("{}: {e}", d.display())))?;
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "txt") && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("spm_")))
                .ok_or_else(|| TranslatorError::Data(format!("{}: no spm_*.txt dictionary", d.display())))
        };
        let source = Dictionary::load(&dict_in("src_unigram6000")?)?;
        let target = Dictionary::load(&dict_in("tgt_unigram6000")?)?;
        let yaml_path = dir.join("config_mtl_asr_st_ctcst.yaml");
        let text = vocoder::files::read_text(&yaml_path, vocoder::files::MAX_CONFIG_BYTES, "multitask config")?;
        let docs = yaml_rust2::YamlLoader::load_from_str(&text).map_err(|e| TranslatorError::Data(format!("{}: {e}", yaml_path.display())))?;
        let doc = docs.first().ok_or_else(|| TranslatorError::Data(format!("{}: empty", yaml_path.display())))?;
        let get = |k: &str| {
            yaml_usize(doc, &["target_unigram", "decoder_args", k])
                .filter(|v| (1..=8192).contains(v))
                .ok_or_else(|| TranslatorError::Data(format!("{}: no usable target_unigram.decoder_args.{k}", yaml_path.display())))
        };
        let mt = MtSettings { layers: get("decoder_layers")?, embed_dim: get("decoder_embed_dim")?, ffn_embed_dim: get("decoder_ffn_embed_dim")?, attention_heads: get("decoder_attention_heads")? };
        Ok(DataDir { cmvn, source, target, mt })
    }
}
