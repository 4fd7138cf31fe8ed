//! Reading files users hand us, and writing files in their folders, safely.
//!
//! Reads are bounded: only regular files (a device such as `/dev/zero`, a pipe or a folder is
//! refused before a byte is read), never more than the stated limit.
//!
//! Writes never lose what the user had: the output goes to a temporary file in the target's own
//! folder and is renamed over the target only when complete. A symlink is followed to its target
//! (the link stays a link), anything that is not a regular file is refused, permissions come from
//! the umask (or stay those of the file replaced), and nothing is left behind on any error.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::VocoderError;

fn io(path: &Path, e: std::io::Error) -> VocoderError {
    VocoderError::Io { path: path.into(), source: e }
}

/// The size of a regular file (symlinks followed); anything else is an error.
pub fn regular_file_len(path: &Path) -> Result<u64, VocoderError> {
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a folder" } else { "not a regular file (a device or pipe?)" };
        return Err(VocoderError::format(path, format!("is {kind}")));
    }
    Ok(meta.len())
}

fn check_size(path: &Path, limit: u64, what: &str) -> Result<u64, VocoderError> {
    let len = regular_file_len(path)?;
    if len > limit {
        return Err(VocoderError::format(path, format!("{} MB is larger than any {what} ({} MB limit)", len >> 20, limit >> 20)));
    }
    Ok(len)
}

/// The first `n` bytes (fewer if the file is shorter), after the size check.
pub fn read_head(path: &Path, n: usize, limit: u64, what: &str) -> Result<Vec<u8>, VocoderError> {
    check_size(path, limit, what)?;
    let mut buf = Vec::with_capacity(n);
    File::open(path).map_err(|e| io(path, e))?.take(n as u64).read_to_end(&mut buf).map_err(|e| io(path, e))?;
    Ok(buf)
}

/// The whole file, at most `limit` bytes (a file that grows while read is cut off and refused).
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, VocoderError> {
    let len = check_size(path, limit, what)?;
    let mut buf = Vec::with_capacity(len as usize);
    File::open(path).map_err(|e| io(path, e))?.take(limit + 1).read_to_end(&mut buf).map_err(|e| io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(VocoderError::format(path, format!("grew past the {what} limit while being read")));
    }
    Ok(buf)
}

/// Largest config file read (real ones are a few KB).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A UTF-8 text file of at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64, what: &str) -> Result<String, VocoderError> {
    String::from_utf8(read_limited(path, limit, what)?).map_err(|_| VocoderError::format(path, format!("is not UTF-8 text (not a {what})")))
}

/// Where writing `path` really lands: symlinks followed (also dangling ones, whose target is
/// created), checked to be a regular file or absent, in an existing folder.
pub fn output_target(path: &Path, force: bool) -> Result<PathBuf, VocoderError> {
    let mut target = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::symlink_metadata(&target) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = std::fs::read_link(&target).map_err(|e| io(&target, e))?;
                target = match target.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                };
            }
            Ok(m) if m.is_file() => {
                if !force {
                    return Err(VocoderError::format(path, "exists (use --force to overwrite)"));
                }
                return in_folder(path, target);
            }
            Ok(m) => {
                let kind = if m.is_dir() { "a folder" } else { "not a regular file (a device or pipe?)" };
                return Err(VocoderError::format(path, format!("is {kind}: refusing to write over it")));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return in_folder(path, target),
            Err(e) => return Err(io(path, e)),
        }
    }
    Err(VocoderError::format(path, "too many levels of symbolic links"))
}

fn in_folder(path: &Path, target: PathBuf) -> Result<PathBuf, VocoderError> {
    let dir = folder_of(&target);
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => Ok(target),
        Ok(_) => Err(VocoderError::format(path, format!("cannot write it: {} is not a folder", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(VocoderError::format(path, format!("cannot write it: the folder {} does not exist", dir.display())))
        }
        Err(e) => Err(VocoderError::format(path, format!("cannot write it: the folder {} cannot be used ({e})", dir.display()))),
    }
}

fn folder_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// An output being written: a temporary file beside the target, renamed over it by
/// [`Output::commit`]; dropped without committing, it disappears.
pub struct Output {
    path: PathBuf,
    target: PathBuf,
    tmp: tempfile::NamedTempFile,
}

impl Output {
    /// Checks the target (see [`output_target`]) and opens the temporary file.
    pub fn create(path: &Path, force: bool) -> Result<Self, VocoderError> {
        let target = output_target(path, force)?;
        let dir = folder_of(&target);
        // The target's extension stays last (writers such as image encoders go by it).
        let suffix = match target.extension() {
            Some(e) => format!(".part.{}", e.to_string_lossy()),
            None => ".part".to_string(),
        };
        let mut b = tempfile::Builder::new();
        b.prefix(".streamspeech-").suffix(&suffix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // The kernel applies the umask to this mode, as for any new file.
            b.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = b.tempfile_in(&dir).map_err(|e| io(path, e))?;
        if let Ok(m) = std::fs::metadata(&target) {
            // Replacing: the file keeps its permissions.
            std::fs::set_permissions(tmp.path(), m.permissions()).map_err(|e| io(path, e))?;
        }
        Ok(Output { path: path.into(), target, tmp })
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// The temporary file's path (for writers that want a path).
    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Flushes to disk and renames over the target.
    pub fn commit(mut self) -> Result<(), VocoderError> {
        let path = self.path.clone();
        self.tmp.as_file_mut().flush().and_then(|_| self.tmp.as_file().sync_all()).map_err(|e| io(&path, e))?;
        self.tmp.persist(&self.target).map_err(|e| io(&path, e.error))?;
        Ok(())
    }
}

/// Writes `bytes` to `path` safely (see [`Output`]).
pub fn write_file(path: &Path, bytes: &[u8], force: bool) -> Result<(), VocoderError> {
    let mut out = Output::create(path, force)?;
    out.file().write_all(bytes).map_err(|e| io(path, e))?;
    out.commit()
}
