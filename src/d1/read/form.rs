//! The source side of a comparison in D1's form ([`target_form`]): what
//! the D1 mapping cannot keep brought to the form D1 holds, so that a
//! faithful load digests equal and only real differences remain.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float32Type, Float64Type};

use crate::error::Result;

/// The source batch as D1 can hold it: NaN floats become NULL (SQLite has
/// no NaN), -0.0 becomes 0.0 (SQLite stores a whole REAL as an integer),
/// and non-finite floats inside arrays become null elements (JSON has no
/// Infinity). Everything else D1 keeps exactly.
pub fn target_form(batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = batch.columns().iter().map(|c| d1_form(c)).collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

fn d1_form(col: &ArrayRef) -> Result<ArrayRef> {
    use arrow::array::{ListArray, PrimitiveArray};
    Ok(match col.data_type() {
        // float32 -> float64 -> float32 is exact, so one rule serves both.
        DataType::Float32 => {
            let a = col.as_primitive::<Float32Type>();
            Arc::new(
                a.iter()
                    .map(|v| v.and_then(|f| crate::d1::real(f64::from(f))).map(|f| f as f32))
                    .collect::<PrimitiveArray<Float32Type>>(),
            )
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            Arc::new(a.iter().map(|v| v.and_then(crate::d1::real)).collect::<PrimitiveArray<Float64Type>>())
        }
        DataType::List(f)
            if matches!(f.data_type(), DataType::Float32 | DataType::Float64) && f.is_nullable() =>
        {
            let l = col.as_list::<i32>();
            let values = finite_only(l.values())?;
            Arc::new(ListArray::try_new(f.clone(), l.offsets().clone(), values, l.nulls().cloned())?)
        }
        _ => col.clone(),
    })
}

fn finite_only(values: &ArrayRef) -> Result<ArrayRef> {
    use arrow::array::PrimitiveArray;
    Ok(match values.data_type() {
        DataType::Float32 => Arc::new(
            values
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.filter(|f| f.is_finite()))
                .collect::<PrimitiveArray<Float32Type>>(),
        ),
        _ => Arc::new(
            values
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.filter(|f| f.is_finite()))
                .collect::<PrimitiveArray<Float64Type>>(),
        ),
    })
}
