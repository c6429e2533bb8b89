//! Tests of reading D1 back: every type against its source form, the
//! vector fast path against std, and values pgflare never writes.

use super::*;
use crate::batch::ColumnSpec;
use crate::typemap::{ColumnType, Kind};
use arrow::datatypes::Float32Type;
use proptest::prelude::*;

/// What the scanner gives for `s` as a whole element, in std's terms.
fn scanned(s: &str) -> Option<Option<u32>> {
    let (v, end) = scan_f32(s, 0)?;
    assert_eq!(end, s.len(), "{s:?} scanned to its end");
    Some(v.map(f32::to_bits))
}

fn std_parse(s: &str) -> Option<Option<u32>> {
    if s == "null" {
        return Some(None);
    }
    s.parse::<f32>().ok().map(|f| Some(f.to_bits()))
}

#[test]
fn the_scanner_is_std_parse_on_the_hard_cases() {
    for s in [
        "0",
        "-0",
        "0.0",
        "-0.0",
        "1",
        "-1",
        "0.1",
        "0.0039690896",
        "-0.013070183",
        "1e-22",
        "1e22",
        "1e23",
        "1e-23",
        "3.4028235e38",
        "3.4028236e38",
        "1e39",
        "-1e39",
        "1.4e-45",
        "1e-46",
        "1.17549435e-38",
        // 2^24 + 1 and 2^24 + 3: exact midpoints, ties to even
        "16777217",
        "16777219",
        "1.6777217e7",
        "167772170e-1",
        // near an f32 midpoint and rounded onto it by f64: rounding that
        // f64 to f32 (ties to even) would go the wrong way
        "8.000003337860107",
        "8.000004291534424",
        "8.000005245208740",
        // above 2^53 digits: std decides
        "9007199254740993",
        "0.30000000000000000000000001",
        "123456789012345678901234567890",
        ".5",
        "5.",
        "-.5",
        "+5",
        "1E5",
        "1e+5",
        "1e",
        "e5",
        "-",
        ".",
        "",
        "+",
        "1x",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "infinity",
        "null",
        "nul",
        "1.5.5",
        "00000000000000000000001.5",
        "1e99999999999",
        "1e-99999999999",
        "0e99999",
    ] {
        assert_eq!(scanned(s), std_parse(s), "{s:?}");
    }
}

#[test]
fn arrays_keep_nulls_and_refuse_what_pgflare_does_not_write() {
    let mut b = ListBuilder::new(Box::new(Float32Builder::new()) as Box<dyn ArrayBuilder>);
    let mut s = FloatScratch::default();
    assert!(append_floats(&mut b, "[1,null,2.5,-0]", &mut s).is_some());
    assert!(append_floats(&mut b, "[]", &mut s).is_some());
    for bad in ["[1,,2]", "[1,]", "[,1]", "[1, 2]", "[1;2]", "1,2", "[\"1\"]"] {
        assert!(append_floats(&mut b, bad, &mut s).is_none(), "{bad}");
    }
    let a = b.finish();
    assert_eq!(a.len(), 2, "nothing appended for the refused ones");
    let first = a.value(0);
    let f = first.as_primitive::<Float32Type>();
    assert_eq!((f.len(), f.null_count(), f.value(2), f.value(3).to_bits()), (4, 1, 2.5, (-0.0f32).to_bits()));
    assert!(f.is_null(1));
}

proptest! {
    // Every float32 as pgflare writes it (zmij), as Rust prints it and
    // in exponent form comes back bit for bit, like std.
    #[test]
    fn written_floats_scan_like_std(bits in any::<u32>()) {
        let f = f32::from_bits(bits);
        prop_assume!(f.is_finite());
        let mut buf = zmij::Buffer::new();
        for s in [buf.format_finite(f).to_string(), format!("{f:?}"), format!("{f:e}"), format!("{f}")] {
            prop_assert_eq!(scanned(&s), std_parse(&s), "{}", s);
            prop_assert_eq!(scanned(&s), Some(Some(bits)), "{}", s);
        }
    }

    // Decimal strings of any length and exponent, near and far from
    // the fast path's limits, parse exactly as std (or fail as std).
    #[test]
    fn decimal_strings_scan_like_std(s in "-?[0-9]{0,20}(\\.[0-9]{0,25})?([eE][+-]?[0-9]{0,3})?") {
        prop_assert_eq!(scanned(&s), std_parse(&s), "{}", s);
    }

    // Whatever else an element holds: the same verdict as std.
    #[test]
    fn any_text_scans_like_std(s in "[^,]{0,12}") {
        prop_assert_eq!(scanned(&s), std_parse(&s), "{}", s);
    }
}

fn spec() -> TableSpec {
    let col = |name: &str, kind, dims, nullable| ColumnSpec {
        name: name.into(),
        pg_type: if kind == Kind::Uuid { "uuid".into() } else { "vector(2)".into() },
        ty: ColumnType { kind, array: false, dims, decimal: None },
        nullable,
        cast: None,
    };
    TableSpec {
        schema: "public".into(),
        name: "t".into(),
        columns: vec![col("id", Kind::Uuid, None, false), col("v", Kind::Vector, Some(2), false)],
        primary_key: vec!["id".into()],
    }
}

#[test]
fn values_not_in_pgflare_form_are_handed_over_not_fatal() {
    let c = rusqlite::Connection::open_in_memory().expect("db");
    c.execute_batch(
        "CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT NOT NULL);
         INSERT INTO t VALUES ('00000000-0000-4000-8000-000000000001', '[1,2]');
         INSERT INTO t VALUES ('not-a-uuid', '[1,2]');
         INSERT INTO t VALUES ('00000000-0000-4000-8000-000000000003', '[1,2,3]');
         INSERT INTO t VALUES ('00000000-0000-4000-8000-000000000004', '[\"a\",2]');",
    )
    .expect("rows");
    let mut seen = Vec::new();
    read_rows(&c, "t", &spec(), 10, None, &mut |b, odd| {
        assert_eq!(b.num_rows(), 4);
        assert!(b.schema().field(0).is_nullable() && b.schema().field(1).is_nullable());
        let v = b.column(1).as_fixed_size_list();
        assert_eq!((v.null_count(), v.values().len()), (2, 8), "one slot of 2 per row");
        seen = odd
            .into_iter()
            .map(|u| (u.row, u.column, u.found, String::from_utf8_lossy(&u.raw).into_owned()))
            .collect();
        Ok(())
    })
    .expect("read on");
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!((seen[0].0, seen[0].1, seen[0].3.as_str()), (1, 0, "not-a-uuid"));
    assert_eq!((seen[1].0, seen[1].1, seen[1].2.as_str()), (2, 1, "3 elements where the column has 2"));
    assert_eq!((seen[2].0, seen[2].1), (3, 1));
    // read_table still stops, naming the value.
    let e =
        read_table(&c, "t", &spec(), 10, &mut |_| Ok(())).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(e.contains("column id") && e.contains("not-a-uuid"), "{e}");
    // Rowid ranges read only their rows; a missing table is told apart.
    let mut n = 0;
    read_rows(&c, "t", &spec(), 10, Some((2, 3)), &mut |b, _| {
        n += b.num_rows();
        Ok(())
    })
    .expect("range");
    assert_eq!((n, rowid_span(&c, "t")), (2, Some((1, 4))));
    assert_eq!((table_exists(&c, "t").ok(), table_exists(&c, "nope").ok()), (Some(true), Some(false)));
}

#[test]
fn a_null_in_a_column_the_source_says_not_null_is_read_not_fatal() {
    // A link column whose row D1 lacks is NULL there (the D1 schema allows
    // it); the batch declares the column nullable so the row can be compared.
    let c = rusqlite::Connection::open_in_memory().expect("db");
    c.execute_batch(
        "CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, v TEXT);
         INSERT INTO t VALUES ('00000000-0000-4000-8000-000000000001', '[1,2]');
         INSERT INTO t VALUES ('00000000-0000-4000-8000-000000000002', NULL);",
    )
    .expect("rows");
    let mut rows = 0;
    read_table(&c, "t", &spec(), 10, &mut |b| {
        rows += b.num_rows();
        assert!(b.schema().field(1).is_nullable() && !b.schema().field(0).is_nullable());
        assert_eq!(b.column(1).null_count(), 1);
        Ok(())
    })
    .expect("read");
    assert_eq!(rows, 2);
}

#[test]
fn wide_rows_cut_batches_by_bytes_not_only_by_rows() {
    let c = rusqlite::Connection::open_in_memory().expect("db");
    c.execute_batch("CREATE TABLE t (id TEXT NOT NULL PRIMARY KEY, body TEXT NOT NULL)").expect("table");
    let wide = "x".repeat(200_000);
    for i in 0..40 {
        c.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![format!("{i:036}"), wide]).expect("row");
    }
    let mut s = spec();
    s.columns[0].ty.kind = Kind::Text;
    s.columns[1] = ColumnSpec {
        name: "body".into(),
        pg_type: "text".into(),
        ty: ColumnType { kind: Kind::Text, array: false, dims: None, decimal: None },
        nullable: false,
        cast: None,
    };
    let mut sizes = Vec::new();
    read_rows(&c, "t", &s, 2048, None, &mut |b, _| {
        sizes.push(b.num_rows());
        Ok(())
    })
    .expect("read");
    // 8 MB of rows: cut at 2 MiB (11 rows of 200 kB each), not one batch of 40.
    assert_eq!(sizes.iter().sum::<usize>(), 40);
    assert!(sizes.len() >= 4 && sizes.iter().all(|&n| n * 200_000 <= BATCH_BYTES + 200_000), "{sizes:?}");
}
