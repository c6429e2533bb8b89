//! An output file that counts and hashes every byte on its way to disk, so
//! a sink can report its size and blake3 without reading it back. Shared by
//! every sink that writes files.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::batch::sink::FileReport;
use crate::digest::DigestSum;
use crate::error::{Error, Result};

pub struct HashingFile {
    path: PathBuf,
    out: BufWriter<File>,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl HashingFile {
    pub fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(Error::io(&path))?;
        Ok(HashingFile {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            hasher: blake3::Hasher::new(),
            bytes: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes the file and says what was written; `root` is the sink's
    /// output folder, which report paths are relative to.
    pub fn finish(mut self, root: &Path, rows: u64, digest: &DigestSum) -> Result<FileReport> {
        self.out.flush().map_err(Error::io(&self.path))?;
        // The report is a claim that this file is at its path with these
        // bytes, and the load records the partition as done on it. An open
        // handle keeps writing after its folder is removed (or the file is
        // replaced), so look at the path itself.
        let on_disk = std::fs::metadata(&self.path).map(|m| m.len());
        if on_disk.as_ref().ok() != Some(&self.bytes) {
            let found = match on_disk {
                Ok(n) => format!("{n} bytes are there"),
                Err(e) => e.to_string(),
            };
            let message = format!(
                "was removed or changed while pgflare wrote it ({} bytes written, {found}); \
                 leave the output folder alone during the run and run it again",
                self.bytes
            );
            return Err(Error::io(&self.path)(std::io::Error::other(message)));
        }
        let rel = self.path.strip_prefix(root).unwrap_or(&self.path);
        let path = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        Ok(FileReport {
            path,
            rows,
            bytes: self.bytes,
            blake3: self.hasher.finalize().to_hex().to_string(),
            row_digest: digest.hex(),
        })
    }
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// Removes the files (`part-<partition>-*<ext>`, and `.tmp` leftovers) an
/// earlier attempt at a partition wrote: a resumed load writes the
/// partition again and may roll fewer files.
pub fn remove_partition_files(dir: &Path, partition: usize, ext: &str) -> Result<()> {
    let prefix = format!("part-{partition:05}-");
    for entry in std::fs::read_dir(dir).map_err(Error::io(dir))? {
        let entry = entry.map_err(Error::io(dir))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with(&prefix) && (name.ends_with(ext) || name.ends_with(".tmp")) {
            std::fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
        }
    }
    Ok(())
}
