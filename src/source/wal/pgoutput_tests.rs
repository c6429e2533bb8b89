//! The decoder against messages written by an encoder that follows the
//! documented layout byte by byte: every change kind round-trips
//! (property-tested), and every truncation or trailing byte is refused as
//! malformed instead of read past or panicking. The live check against
//! Postgres's own messages is in tests/integration/follow.rs.

use super::*;
use proptest::prelude::*;

fn put_tuple(out: &mut Vec<u8>, values: &[Value]) {
    out.extend((values.len() as u16).to_be_bytes());
    for v in values {
        match v {
            Value::Null => out.push(b'n'),
            Value::Unchanged => out.push(b'u'),
            Value::Text(b) | Value::Binary(b) => {
                out.push(if matches!(v, Value::Text(_)) { b't' } else { b'b' });
                out.extend((b.len() as u32).to_be_bytes());
                out.extend_from_slice(b);
            }
        }
    }
}

fn put_old(out: &mut Vec<u8>, old: &Old) {
    match old {
        Old::Key(v) => {
            out.push(b'K');
            put_tuple(out, v);
        }
        Old::Row(v) => {
            out.push(b'O');
            put_tuple(out, v);
        }
    }
}

/// The documented layout of each message.
fn encode(c: &Change) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Change::Relation(r) => {
            out.push(b'R');
            out.extend(r.oid.to_be_bytes());
            for s in [&r.schema, &r.name] {
                out.extend(s.as_bytes());
                out.push(0);
            }
            out.push(r.replica_identity);
            out.extend((r.columns.len() as u16).to_be_bytes());
            for col in &r.columns {
                out.push(col.key as u8);
                out.extend(col.name.as_bytes());
                out.push(0);
                out.extend(col.type_oid.to_be_bytes());
                out.extend(col.typmod.to_be_bytes());
            }
        }
        Change::Insert { rel, new } => {
            out.push(b'I');
            out.extend(rel.to_be_bytes());
            out.push(b'N');
            put_tuple(&mut out, new);
        }
        Change::Update { rel, old, new } => {
            out.push(b'U');
            out.extend(rel.to_be_bytes());
            if let Some(o) = old {
                put_old(&mut out, o);
            }
            out.push(b'N');
            put_tuple(&mut out, new);
        }
        Change::Delete { rel, old } => {
            out.push(b'D');
            out.extend(rel.to_be_bytes());
            put_old(&mut out, old);
        }
        Change::Truncate { rels, cascade, restart_identity } => {
            out.push(b'T');
            out.extend((rels.len() as u32).to_be_bytes());
            out.push(*cascade as u8 | (*restart_identity as u8) << 1);
            for r in rels {
                out.extend(r.to_be_bytes());
            }
        }
        Change::Other(t) => out.push(*t),
    }
    out
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::Unchanged),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Text(Bytes::from(b))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|b| Value::Binary(Bytes::from(b))),
    ]
}

fn tuple() -> impl Strategy<Value = Vec<Value>> {
    proptest::collection::vec(value(), 0..6)
}

fn old() -> impl Strategy<Value = Old> {
    prop_oneof![tuple().prop_map(Old::Key), tuple().prop_map(Old::Row)]
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z_ \"é.]{0,12}"
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (
            any::<u32>(),
            name(),
            name(),
            prop_oneof![Just(b'd'), Just(b'n'), Just(b'f'), Just(b'i')],
            proptest::collection::vec((any::<bool>(), name(), any::<u32>(), any::<i32>()), 0..5)
        )
            .prop_map(|(oid, schema, name, replica_identity, cols)| Change::Relation(Relation {
                oid,
                schema,
                name,
                replica_identity,
                columns: cols
                    .into_iter()
                    .map(|(key, name, type_oid, typmod)| RelColumn { key, name, type_oid, typmod })
                    .collect(),
            })),
        (any::<u32>(), tuple()).prop_map(|(rel, new)| Change::Insert { rel, new }),
        (any::<u32>(), proptest::option::of(old()), tuple()).prop_map(|(rel, old, new)| Change::Update {
            rel,
            old,
            new
        }),
        (any::<u32>(), old()).prop_map(|(rel, old)| Change::Delete { rel, old }),
        (proptest::collection::vec(any::<u32>(), 0..4), any::<bool>(), any::<bool>()).prop_map(
            |(rels, cascade, restart_identity)| Change::Truncate { rels, cascade, restart_identity }
        ),
    ]
}

proptest! {
    #[test]
    fn every_change_round_trips(c in change()) {
        prop_assert_eq!(decode(Bytes::from(encode(&c))), Ok(c));
    }

    #[test]
    fn a_cut_or_padded_message_is_malformed_never_misread(c in change(), extra in 1usize..4) {
        let full = encode(&c);
        for cut in 1..full.len() {
            prop_assert!(decode(Bytes::copy_from_slice(&full[..cut])).is_err(), "cut at {} of {:?}", cut, c);
        }
        let mut padded = full.clone();
        padded.extend(std::iter::repeat_n(0u8, extra));
        prop_assert!(decode(Bytes::from(padded)).is_err());
    }
}

#[test]
fn an_update_of_a_key_carries_the_old_key_and_a_toasted_value_stays_unsent() {
    // U, rel 16384, K (1 column: text "7"), N (2 columns: text "8", unchanged).
    let mut m = vec![b'U'];
    m.extend(16384u32.to_be_bytes());
    m.extend([b'K', 0, 1, b't', 0, 0, 0, 1, b'7']);
    m.extend([b'N', 0, 2, b't', 0, 0, 0, 1, b'8', b'u']);
    assert_eq!(
        decode(Bytes::from(m)),
        Ok(Change::Update {
            rel: 16384,
            old: Some(Old::Key(vec![Value::Text(Bytes::from_static(b"7"))])),
            new: vec![Value::Text(Bytes::from_static(b"8")), Value::Unchanged],
        })
    );
}

#[test]
fn unknown_kinds_are_refused_by_name() {
    let e = decode(Bytes::from_static(b"S\0\0\0\x01")).expect_err("stream start is protocol v2");
    assert!(e.to_string().contains("unknown message kind"), "{e}");
    let mut m = vec![b'I'];
    m.extend(1u32.to_be_bytes());
    m.extend([b'N', 0, 1, b'x']);
    let e = decode(Bytes::from(m)).expect_err("column kind x");
    assert!(e.to_string().contains("unknown column kind 'x'"), "{e}");
}
