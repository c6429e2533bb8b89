//! Framing of the `COPY ... TO STDOUT (FORMAT binary)` stream: the 11-byte
//! signature, flags and header extension, then rows (int16 field count, and
//! per field an int32 length, -1 for NULL, and the bytes), then the int16 -1
//! trailer. Postgres usually sends one CopyData message per row, so rows are
//! handed out straight from the message when they are whole and only a row
//! split across messages is copied into a carry buffer.
//!
//! Hand-written because it is the hot path: no per-field allocation, no
//! trait objects, and field slices borrowed from the network buffer.

use crate::error::{Error, Result};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// One row's fields, borrowed from the stream.
#[derive(Clone, Copy, Debug)]
pub struct Row<'a> {
    /// The bytes after the field count.
    body: &'a [u8],
    fields: usize,
}

impl<'a> Row<'a> {
    pub fn len(&self) -> usize {
        self.fields
    }

    pub fn is_empty(&self) -> bool {
        self.fields == 0
    }

    /// Iterates the fields: `None` is SQL NULL. The row was validated when it
    /// was framed, so lengths are in bounds.
    pub fn fields(&self) -> FieldIter<'a> {
        FieldIter { rest: self.body, left: self.fields }
    }

    /// Size of the row's field data, for batch sizing.
    pub fn byte_len(&self) -> usize {
        self.body.len()
    }
}

pub struct FieldIter<'a> {
    rest: &'a [u8],
    left: usize,
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Option<&'a [u8]>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let len = i32::from_be_bytes([self.rest[0], self.rest[1], self.rest[2], self.rest[3]]);
        if len < 0 {
            self.rest = &self.rest[4..];
            return Some(None);
        }
        let (value, rest) = self.rest[4..].split_at(len as usize);
        self.rest = rest;
        Some(Some(value))
    }
}

/// Streaming COPY BINARY framer.
pub struct CopyFramer {
    table: String,
    carry: Vec<u8>,
    header_done: bool,
    trailer_seen: bool,
    expected_fields: usize,
}

enum Frame {
    /// A whole row of `len` bytes (count included) with `fields` fields.
    Row {
        len: usize,
        fields: usize,
    },
    Trailer,
    Incomplete,
}

impl CopyFramer {
    pub fn new(table: impl Into<String>, expected_fields: usize) -> Self {
        CopyFramer {
            table: table.into(),
            carry: Vec::new(),
            header_done: false,
            trailer_seen: false,
            expected_fields,
        }
    }

    fn malformed(&self, message: impl Into<String>) -> Error {
        Error::CopyFormat { table: self.table.clone(), message: message.into() }
    }

    /// Feeds one chunk of the stream; calls `on_row` for every whole row.
    pub fn feed(&mut self, chunk: &[u8], mut on_row: impl FnMut(Row<'_>) -> Result<()>) -> Result<()> {
        if self.carry.is_empty() {
            let used = self.drain(chunk, &mut on_row)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            self.carry.extend_from_slice(chunk);
            let carry = std::mem::take(&mut self.carry);
            let used = self.drain(&carry, &mut on_row)?;
            self.carry = carry;
            self.carry.drain(..used);
        }
        Ok(())
    }

    /// Checks the stream ended cleanly (trailer seen, nothing left over).
    pub fn finish(&self) -> Result<()> {
        if !self.trailer_seen {
            return Err(self.malformed("stream ended before the trailer (connection lost?)"));
        }
        if !self.carry.is_empty() {
            return Err(self.malformed(format!("{} bytes after the trailer", self.carry.len())));
        }
        Ok(())
    }

    /// Consumes whole frames from `buf`, returns how many bytes were used.
    fn drain(&mut self, buf: &[u8], on_row: &mut impl FnMut(Row<'_>) -> Result<()>) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            match self.header(buf)? {
                Some(len) => {
                    pos = len;
                    self.header_done = true;
                }
                None => return Ok(0),
            }
        }
        while pos < buf.len() {
            if self.trailer_seen {
                return Err(self.malformed("data after the trailer"));
            }
            match self.frame(&buf[pos..])? {
                Frame::Row { len, fields } => {
                    on_row(Row { body: &buf[pos + 2..pos + len], fields })?;
                    pos += len;
                }
                Frame::Trailer => {
                    self.trailer_seen = true;
                    pos += 2;
                }
                Frame::Incomplete => break,
            }
        }
        Ok(pos)
    }

    fn header(&self, buf: &[u8]) -> Result<Option<usize>> {
        if buf.len() < 19 {
            return Ok(None);
        }
        if &buf[..11] != SIGNATURE {
            return Err(self.malformed("bad signature (is the COPY in FORMAT binary?)"));
        }
        let flags = u32::from_be_bytes([buf[11], buf[12], buf[13], buf[14]]);
        if flags & (1 << 16) != 0 {
            return Err(self.malformed("OIDs in COPY output are not supported"));
        }
        let ext = u32::from_be_bytes([buf[15], buf[16], buf[17], buf[18]]) as usize;
        if buf.len() < 19 + ext {
            return Ok(None);
        }
        Ok(Some(19 + ext))
    }

    fn frame(&self, buf: &[u8]) -> Result<Frame> {
        if buf.len() < 2 {
            return Ok(Frame::Incomplete);
        }
        let count = i16::from_be_bytes([buf[0], buf[1]]);
        if count == -1 {
            return Ok(Frame::Trailer);
        }
        if count < 0 || count as usize != self.expected_fields {
            return Err(self.malformed(format!("row has {count} fields, expected {}", self.expected_fields)));
        }
        let mut pos = 2;
        for _ in 0..count {
            if buf.len() < pos + 4 {
                return Ok(Frame::Incomplete);
            }
            let len = i32::from_be_bytes([buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]]);
            pos += 4;
            if len >= 0 {
                pos += len as usize;
            } else if len != -1 {
                return Err(self.malformed(format!("negative field length {len}")));
            }
        }
        if buf.len() < pos {
            return Ok(Frame::Incomplete);
        }
        Ok(Frame::Row { len: pos, fields: count as usize })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn collect(data: &[u8], piece: usize) -> Result<Vec<Vec<Option<Vec<u8>>>>> {
        let mut framer = CopyFramer::new("t", 2);
        let mut rows = Vec::new();
        for chunk in data.chunks(piece) {
            framer.feed(chunk, |row| {
                rows.push(row.fields().map(|f| f.map(<[u8]>::to_vec)).collect());
                Ok(())
            })?;
        }
        framer.finish()?;
        Ok(rows)
    }

    #[test]
    fn every_split_gives_the_same_rows() {
        let rows = vec![
            vec![Some(b"abc".to_vec()), None],
            vec![Some(vec![]), Some(vec![0xff; 300])],
            vec![None, None],
        ];
        let data = stream(&rows);
        for piece in 1..=data.len() {
            assert_eq!(collect(&data, piece).unwrap(), rows, "piece size {piece}");
        }
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let data = stream(&[vec![Some(b"abc".to_vec()), None]]);
        let err = collect(&data[..data.len() - 2], 7).unwrap_err();
        assert!(err.to_string().contains("before the trailer"), "{err}");
        let mut bad = data.clone();
        bad[0] = b'X';
        assert!(collect(&bad, 64).unwrap_err().to_string().contains("signature"));
    }
}
