//! Decoder of the `pgoutput` plugin's messages, protocol version 1 (the
//! change messages inside the replication stream's XLogData; the protocol
//! crate already turns Begin, Commit and logical Message into events).
//! The layout is Postgres's "Logical Replication Message Formats"
//! (postgresql.org/docs/current/protocol-logicalrep-message-formats.html):
//!
//! - Relation `R`: oid, namespace, name, replica identity, columns (flags,
//!   name, type oid, typmod); sent before the first change of a relation
//!   in a session and again whenever its definition changed;
//! - Type `Y` and Origin `O`: read and passed over;
//! - Insert `I`, Update `U` (with an optional old key `K` or old row `O`),
//!   Delete `D` (old key or row), Truncate `T`;
//! - tuple data: per column `n` (NULL), `u` (a TOASTed value the update
//!   left unchanged: not sent), `t` (text) or `b` (binary), the latter two
//!   with an int32 length.
//!
//! Written here because the protocol crate hands these over as bytes and
//! the crates that decode them pull a C toolchain (aws-lc) into the build;
//! the format is small and stable since Postgres 10. Values are slices of
//! the message (`Bytes`), never copied.

use bytes::Bytes;

/// A column value in a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    /// A TOASTed value the update did not change: Postgres does not send it.
    Unchanged,
    Text(Bytes),
    Binary(Bytes),
}

/// One column of a relation as the stream describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelColumn {
    /// Part of the replica identity (the key deletes and updates carry).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub typmod: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// `relreplident`: `d` default (primary key), `n` nothing, `f` full,
    /// `i` index.
    pub replica_identity: u8,
    pub columns: Vec<RelColumn>,
}

impl Relation {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }
}

/// The old values an update or delete carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Old {
    /// The replica identity's columns (others are NULL).
    Key(Vec<Value>),
    /// The whole old row (`REPLICA IDENTITY FULL`).
    Row(Vec<Value>),
}

impl Old {
    pub fn values(&self) -> &[Value] {
        match self {
            Old::Key(v) | Old::Row(v) => v,
        }
    }
}

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Relation(Relation),
    Insert {
        rel: u32,
        new: Vec<Value>,
    },
    /// `old` is there only when the key changed (`K`) or the identity is
    /// FULL (`O`).
    Update {
        rel: u32,
        old: Option<Old>,
        new: Vec<Value>,
    },
    Delete {
        rel: u32,
        old: Old,
    },
    Truncate {
        rels: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// Type, Origin, and message kinds this follower does not act on
    /// (the tag, for diagnostics).
    Other(u8),
}

/// A message that does not follow the format: the stream cannot be
/// trusted past it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed pgoutput message `{tag}`: {what}")]
pub struct Malformed {
    pub tag: char,
    pub what: String,
}

struct Reader {
    buf: Bytes,
    pos: usize,
    tag: u8,
}

impl Reader {
    fn bad(&self, what: impl Into<String>) -> Malformed {
        Malformed { tag: self.tag as char, what: what.into() }
    }

    fn take(&mut self, n: usize) -> Result<Bytes, Malformed> {
        if self.buf.len() - self.pos < n {
            return Err(self.bad(format!(
                "needs {n} more bytes at offset {}, has {}",
                self.pos,
                self.buf.len() - self.pos
            )));
        }
        let out = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstring(&mut self) -> Result<String, Malformed> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| self.bad("a name without its terminating NUL"))?;
        let s = String::from_utf8(rest[..end].to_vec()).map_err(|_| self.bad("a name that is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }

    fn tuple(&mut self) -> Result<Vec<Value>, Malformed> {
        let n = self.u16()? as usize;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(match self.u8()? {
                b'n' => Value::Null,
                b'u' => Value::Unchanged,
                b't' => {
                    let len = self.u32()? as usize;
                    Value::Text(self.take(len)?)
                }
                b'b' => {
                    let len = self.u32()? as usize;
                    Value::Binary(self.take(len)?)
                }
                k => return Err(self.bad(format!("unknown column kind {:?}", k as char))),
            });
        }
        Ok(out)
    }

    fn old(&mut self, kind: u8) -> Result<Old, Malformed> {
        match kind {
            b'K' => Ok(Old::Key(self.tuple()?)),
            b'O' => Ok(Old::Row(self.tuple()?)),
            k => Err(self.bad(format!("expected K or O before the old tuple, found {:?}", k as char))),
        }
    }

    fn expect(&mut self, want: u8) -> Result<(), Malformed> {
        match self.u8()? {
            k if k == want => Ok(()),
            k => Err(self.bad(format!("expected {:?}, found {:?}", want as char, k as char))),
        }
    }

    fn done(&self) -> Result<(), Malformed> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            n => Err(self.bad(format!("{n} bytes left after the message"))),
        }
    }
}

/// Decodes one message (the whole XLogData payload).
pub fn decode(data: Bytes) -> Result<Change, Malformed> {
    let Some(&tag) = data.first() else {
        return Err(Malformed { tag: '?', what: "an empty message".into() });
    };
    let mut r = Reader { buf: data, pos: 1, tag };
    let change = match tag {
        b'R' => {
            let oid = r.u32()?;
            let schema = r.cstring()?;
            let name = r.cstring()?;
            let replica_identity = r.u8()?;
            let n = r.u16()? as usize;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8()?;
                let name = r.cstring()?;
                let type_oid = r.u32()?;
                let typmod = r.u32()? as i32;
                columns.push(RelColumn { key: flags & 1 == 1, name, type_oid, typmod });
            }
            Change::Relation(Relation { oid, schema, name, replica_identity, columns })
        }
        b'I' => {
            let rel = r.u32()?;
            r.expect(b'N')?;
            Change::Insert { rel, new: r.tuple()? }
        }
        b'U' => {
            let rel = r.u32()?;
            let (old, new) = match r.u8()? {
                b'N' => (None, r.tuple()?),
                k => {
                    let old = r.old(k)?;
                    r.expect(b'N')?;
                    (Some(old), r.tuple()?)
                }
            };
            Change::Update { rel, old, new }
        }
        b'D' => {
            let rel = r.u32()?;
            let k = r.u8()?;
            Change::Delete { rel, old: r.old(k)? }
        }
        b'T' => {
            let n = r.u32()? as usize;
            let options = r.u8()?;
            let rels = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
            Change::Truncate { rels, cascade: options & 1 == 1, restart_identity: options & 2 == 2 }
        }
        b'Y' | b'O' | b'B' | b'C' | b'M' => return Ok(Change::Other(tag)),
        _ => return Err(r.bad("an unknown message kind (a newer protocol version than 1?)")),
    };
    r.done()?;
    Ok(change)
}

#[cfg(test)]
#[path = "pgoutput_tests.rs"]
mod tests;
