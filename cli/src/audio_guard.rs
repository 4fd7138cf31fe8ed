//! Checks run on a file before `symphonia` sees it.
//!
//! symphonia 0.5 allocates some metadata fields at the size the file claims before reading them
//! (a FLAC picture's length, a Vorbis comment's length, a RIFF INFO chunk's length): a 100-byte
//! file can ask for 4 GiB and abort the process. Those length fields are checked here against
//! the bytes that actually contain them; the audio itself is left to symphonia. Only headers and
//! metadata are read (FLAC blocks are at most 16 MB; the Ogg comment packet is capped).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// The largest Vorbis comment packet read (cover art can live there; 64 MB is plenty).
const MAX_COMMENT_PACKET: u64 = 64 << 20;

/// `Err(reason)` when a metadata length field claims more than its container holds.
pub fn check(path: &Path) -> Result<(), String> {
    let mut f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut magic = [0u8; 12];
    let n = read_up_to(&mut f, &mut magic)?;
    let magic = &magic[..n];
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    if magic.starts_with(b"fLaC") {
        flac(&mut f, len)
    } else if magic.starts_with(b"OggS") {
        ogg(f)
    } else if magic.starts_with(b"RIFF") && magic.get(8..12) == Some(b"WAVE") {
        riff(&mut f, len)
    } else {
        Ok(())
    }
}

fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> Result<usize, String> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]).map_err(|e| e.to_string())? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Walks `[u32 length][bytes]` fields (little- or big-endian) through `b`, checking each fits.
struct Fields<'a> {
    b: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl Fields<'_> {
    fn u32(&mut self, big_endian: bool) -> Result<usize, String> {
        let raw: [u8; 4] = self
            .b
            .get(self.pos..self.pos + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| format!("{} ends inside a length field", self.what))?;
        self.pos += 4;
        Ok((if big_endian { u32::from_be_bytes(raw) } else { u32::from_le_bytes(raw) }) as usize)
    }
    fn skip(&mut self, n: usize) -> Result<(), String> {
        let left = self.b.len() - self.pos;
        if n > left {
            return Err(format!("{} claims a {n}-byte field with {left} bytes left", self.what));
        }
        self.pos += n;
        Ok(())
    }
    fn sized(&mut self, big_endian: bool) -> Result<(), String> {
        let n = self.u32(big_endian)?;
        self.skip(n)
    }
}

/// Vendor string, then `count` comments, each `[u32 LE length][bytes]`.
fn vorbis_comments(b: &[u8], what: &'static str) -> Result<(), String> {
    let mut f = Fields { b, pos: 0, what };
    f.sized(false)?;
    let count = f.u32(false)?;
    for _ in 0..count {
        f.sized(false)?;
    }
    Ok(())
}

fn flac(f: &mut std::fs::File, len: u64) -> Result<(), String> {
    let mut pos = 4u64;
    loop {
        f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
        let mut h = [0u8; 4];
        if read_up_to(f, &mut h)? < 4 {
            return Err("FLAC file ends inside its metadata".into());
        }
        let (last, kind) = (h[0] & 0x80 != 0, h[0] & 0x7f);
        let size = u64::from(u32::from_be_bytes([0, h[1], h[2], h[3]]));
        pos += 4;
        if pos + size > len {
            return Err(format!("FLAC metadata block claims {size} bytes past the end of the file"));
        }
        if kind == 0 && size >= 18 {
            // STREAMINFO: a zero sample rate makes symphonia panic (a zero time base).
            let mut si = [0u8; 18];
            f.read_exact(&mut si).map_err(|e| e.to_string())?;
            if (u32::from(si[10]) << 12 | u32::from(si[11]) << 4 | u32::from(si[12]) >> 4) == 0 {
                return Err("FLAC stream info says 0 Hz".into());
            }
        }
        if kind == 4 || kind == 6 {
            let mut body = vec![0u8; size as usize];
            f.read_exact(&mut body).map_err(|e| e.to_string())?;
            if kind == 4 {
                vorbis_comments(&body, "FLAC Vorbis comment block")?;
            } else {
                // Picture: type, MIME [len][bytes], description [len][bytes], 4 × u32, data
                // [len][bytes] (big-endian).
                let mut p = Fields { b: &body, pos: 4, what: "FLAC picture block" };
                p.sized(true)?;
                p.sized(true)?;
                p.skip(16)?;
                p.sized(true)?;
            }
        }
        pos += size;
        if last {
            return Ok(());
        }
    }
}

fn ogg(f: std::fs::File) -> Result<(), String> {
    let mut r = ogg::PacketReader::new(std::io::BufReader::new(f.take(MAX_COMMENT_PACKET)));
    // The first three packets of a Vorbis stream: identification, comments, setup.
    for _ in 0..3 {
        let p = match r.read_packet() {
            Ok(Some(p)) => p,
            // Truncated or not Vorbis: symphonia gives its own error.
            Ok(None) | Err(_) => return Ok(()),
        };
        if p.data.starts_with(b"\x03vorbis") {
            return vorbis_comments(&p.data[7..], "Ogg Vorbis comment header");
        }
        if p.data.starts_with(b"OpusTags") {
            return vorbis_comments(&p.data[8..], "Ogg Opus comment header");
        }
    }
    Ok(())
}

/// Every chunk (and every sub-chunk of a LIST) must fit in its parent.
fn riff(f: &mut std::fs::File, len: u64) -> Result<(), String> {
    let mut pos = 12u64;
    while pos + 8 <= len {
        f.seek(SeekFrom::Start(pos)).map_err(|e| e.to_string())?;
        let mut h = [0u8; 12];
        let n = read_up_to(f, &mut h)?;
        if n < 8 {
            break;
        }
        let size = u64::from(u32::from_le_bytes(h[4..8].try_into().expect("4 bytes")));
        let body = pos + 8;
        let end = body + size;
        if &h[..4] == b"fmt " && n >= 12 {
            let mut rate = [0u8; 4];
            f.seek(SeekFrom::Start(body + 4)).map_err(|e| e.to_string())?;
            if size >= 8 && f.read_exact(&mut rate).is_ok() && u32::from_le_bytes(rate) == 0 {
                // symphonia panics on a zero time base.
                return Err("the WAV header says 0 Hz".into());
            }
        }
        if &h[..4] == b"data" {
            // The data chunk's length is handled by the decoder (streams may say 0 or too much).
            break;
        }
        if end > len {
            return Err(format!("WAV chunk `{}` claims {size} bytes past the end of the file", String::from_utf8_lossy(&h[..4])));
        }
        if &h[..4] == b"LIST" && size >= 4 {
            let mut sub = body + 4;
            while sub + 8 <= end {
                f.seek(SeekFrom::Start(sub)).map_err(|e| e.to_string())?;
                let mut sh = [0u8; 8];
                f.read_exact(&mut sh).map_err(|e| e.to_string())?;
                let s = u64::from(u32::from_le_bytes(sh[4..8].try_into().expect("4 bytes")));
                if sub + 8 + s > end {
                    return Err(format!("WAV LIST entry `{}` claims {s} bytes past its list", String::from_utf8_lossy(&sh[..4])));
                }
                sub += 8 + s + (s & 1);
            }
        }
        pos = end + (size & 1);
    }
    Ok(())
}
