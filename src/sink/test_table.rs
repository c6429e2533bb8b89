//! A small table for sink tests, shared by the NDJSON line tests and the
//! sink compliance tests: a text key, a free-dimension vector, a JSON
//! metadata column and a namespace, which every sink (D1, Vectorize,
//! Parquet) can take. Test-only.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float32Builder, ListBuilder, StringArray};
use arrow::record_batch::RecordBatch;

use crate::batch::{ColumnSpec, TableSpec};
use crate::config::mapping::VectorMapping;
use crate::config::project::OnInvalid;
use crate::typemap::{ColumnType, Kind};

fn col(name: &str, kind: Kind) -> ColumnSpec {
    ColumnSpec {
        name: name.into(),
        pg_type: format!("{kind:?}"),
        ty: ColumnType::scalar(kind),
        nullable: true,
        cast: None,
    }
}

/// `public.t (id text primary key, embedding vector, meta jsonb, ns text)`.
pub fn spec() -> TableSpec {
    TableSpec {
        schema: "public".into(),
        name: "t".into(),
        columns: vec![
            col("id", Kind::Text),
            col("embedding", Kind::Vector),
            col("meta", Kind::Jsonb),
            col("ns", Kind::Text),
        ],
        primary_key: vec!["id".into()],
    }
}

/// The table's vectors: id `id`, namespace `ns`, metadata `meta`; rows
/// Vectorize would refuse are skipped.
pub fn mapping(dims: Option<u32>) -> VectorMapping {
    VectorMapping {
        vector: "embedding".into(),
        id: "id".into(),
        namespace: Some("ns".into()),
        metadata: vec!["meta".into()],
        json: Default::default(),
        flags: Vec::new(),
        dims,
        on_invalid: OnInvalid::Skip,
    }
}

/// One test row: id, vector, metadata JSON, namespace.
pub type Row<'a> = (&'a str, Option<Vec<f32>>, Option<&'a str>, Option<&'a str>);

/// A batch of [`spec`] holding `rows`.
pub fn batch(rows: &[Row]) -> RecordBatch {
    let spec = spec();
    let mut vectors = ListBuilder::new(Float32Builder::new()).with_field(Arc::new(
        arrow::datatypes::Field::new("item", arrow::datatypes::DataType::Float32, false),
    ));
    for (_, v, _, _) in rows {
        match v {
            Some(v) => {
                v.iter().for_each(|x| vectors.values().append_value(*x));
                vectors.append(true);
            }
            None => vectors.append(false),
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(rows.iter().map(|r| Some(r.0)).collect::<Vec<_>>())),
        Arc::new(vectors.finish()),
        Arc::new(StringArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
        Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
    ];
    RecordBatch::try_new(spec.arrow_schema(), columns).expect("batch")
}
