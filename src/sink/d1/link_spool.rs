//! The link values a load or sync run sets after its rows are in (see
//! [`super::links`]): a sink beside the D1 sink that keeps, for every row
//! of a table with links, its key and the values of its link columns, as
//! the SQL tuples the link step will send (`(key..., link...)`). One file
//! per key range (`<table>/part-<range>.links`), written to a temporary
//! name and renamed when the range is finished, so a range recorded as
//! done always has its whole file; a range written again replaces it.
//!
//! Records are framed (u16 LE link number, u32 LE length, the tuple's
//! bytes): a tuple may hold any text, newlines included.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::links::Link;
use super::render::{D1Mapping, D1Mappings};
use super::value::write_literal;
use crate::batch::sink::{BatchSink, SinkFactory, SinkReport};
use crate::batch::{TableBatch, TableSpec};
use crate::error::{Error, Result};

/// Where the link values of one run go.
#[derive(Clone, Debug)]
pub struct LinkSpool {
    pub dir: PathBuf,
    pub mappings: D1Mappings,
    /// Keep tuples whose link values are all NULL. A load leaves them out
    /// (the placeholder is NULL already); a sync keeps them, since an
    /// existing row's link may have to become NULL.
    pub keep_nulls: bool,
}

impl LinkSpool {
    /// The file of one range.
    pub fn path(dir: &Path, table: &TableSpec, partition: usize) -> PathBuf {
        dir.join(table.file_stem()).join(format!("part-{partition:05}.links"))
    }

    /// Removes every file (a fresh load or run starts from none).
    pub fn clear(dir: &Path) -> Result<()> {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(dir)(e)),
            _ => Ok(()),
        }
    }
}

impl SinkFactory for LinkSpool {
    fn open(&self, table: &Arc<TableSpec>, partition: usize) -> Result<Box<dyn BatchSink>> {
        let mapping = self.mappings.get(table);
        if mapping.links.is_empty() {
            return Ok(Box::new(Nothing));
        }
        let path = Self::path(&self.dir, table, partition);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::io(dir))?;
        }
        let tmp = path.with_extension("links.tmp");
        let file = std::fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        Ok(Box::new(SpoolSink {
            columns: tuple_columns(table, &mapping)?,
            out: BufWriter::with_capacity(1 << 16, file),
            tmp,
            path,
            keep_nulls: self.keep_nulls,
            tuple: String::new(),
        }))
    }
}

/// A table without links spools nothing.
struct Nothing;

impl BatchSink for Nothing {
    fn write(&mut self, _: &TableBatch) -> Result<()> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        Ok(SinkReport::default())
    }
}

/// Per link: the batch columns of the key, then of the link's columns.
fn tuple_columns(table: &TableSpec, mapping: &D1Mapping) -> Result<Vec<(Vec<usize>, Vec<usize>)>> {
    let batch_column = |d1: &String| -> Result<usize> {
        mapping
            .columns
            .iter()
            .find(|(_, d)| d == d1)
            .and_then(|(s, _)| table.columns.iter().position(|c| &c.name == s))
            .ok_or_else(|| Error::Internal(format!("{}: D1 column {d1} is not read", table.qualified())))
    };
    mapping
        .links
        .iter()
        .map(|l: &Link| {
            let key = mapping.key.iter().map(batch_column).collect::<Result<Vec<_>>>()?;
            let set = l.set_columns().map(batch_column).collect::<Result<Vec<_>>>()?;
            Ok((key, set))
        })
        .collect()
}

struct SpoolSink {
    columns: Vec<(Vec<usize>, Vec<usize>)>,
    out: BufWriter<std::fs::File>,
    tmp: PathBuf,
    path: PathBuf,
    keep_nulls: bool,
    tuple: String,
}

impl BatchSink for SpoolSink {
    fn write(&mut self, batch: &TableBatch) -> Result<()> {
        let b = &batch.batch;
        for row in 0..b.num_rows() {
            for (n, (key, set)) in self.columns.iter().enumerate() {
                if !self.keep_nulls && set.iter().all(|&c| b.column(c).is_null(row)) {
                    continue;
                }
                self.tuple.clear();
                self.tuple.push('(');
                for (i, &c) in key.iter().chain(set).enumerate() {
                    if i > 0 {
                        self.tuple.push_str(", ");
                    }
                    write_literal(b.column(c).as_ref(), row, &mut self.tuple);
                }
                self.tuple.push(')');
                let len = u32::try_from(self.tuple.len())
                    .map_err(|_| Error::Internal("a link tuple over 4 GiB".into()))?;
                let mut head = [0u8; 6];
                head[..2].copy_from_slice(&(n as u16).to_le_bytes());
                head[2..].copy_from_slice(&len.to_le_bytes());
                self.out.write_all(&head).map_err(Error::io(&self.tmp))?;
                self.out.write_all(self.tuple.as_bytes()).map_err(Error::io(&self.tmp))?;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<SinkReport> {
        let tmp = self.tmp;
        let file = self.out.into_inner().map_err(|e| Error::io(&tmp)(e.into_error()))?;
        file.sync_all().map_err(Error::io(&tmp))?;
        drop(file);
        std::fs::rename(&tmp, &self.path).map_err(Error::io(&self.path))?;
        Ok(SinkReport::default())
    }
}

/// Reads one range's file: `f(link number, tuple)` for every record.
pub fn read(path: &Path, f: &mut dyn FnMut(usize, &str) -> Result<()>) -> Result<()> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::Manifest {
            path: path.to_path_buf(),
            message: "the link values of a finished key range are gone (was the state folder cleaned?); \
                      pass --restart to load again"
                .into(),
        },
        _ => Error::io(path)(e),
    })?;
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut head = [0u8; 6];
    let mut tuple = Vec::new();
    loop {
        match r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(Error::io(path)(e)),
        }
        let link = u16::from_le_bytes([head[0], head[1]]) as usize;
        let len = u32::from_le_bytes([head[2], head[3], head[4], head[5]]) as usize;
        tuple.resize(len, 0);
        r.read_exact(&mut tuple).map_err(Error::io(path))?;
        let text = std::str::from_utf8(&tuple)
            .map_err(|_| Error::Manifest { path: path.to_path_buf(), message: "not a link file".into() })?;
        f(link, text)?;
    }
}
