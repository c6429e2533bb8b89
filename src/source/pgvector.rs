//! pgvector's binary formats decoded straight into Arrow float32 buffers:
//! `vector` is uint16 dim, uint16 unused, dim x float4 (big-endian);
//! `halfvec` is the same with IEEE binary16 elements, widened exactly to
//! float32. Columns with a declared dimension become FixedSizeList arrays
//! (NULL rows hold zeros under a null bit), others become List arrays.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, ListArray};
use arrow::buffer::{OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field};

/// Accumulates one vector column.
pub struct VectorBuilder {
    dims: Option<usize>,
    half: bool,
    values: Vec<f32>,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
}

impl VectorBuilder {
    pub fn new(dims: Option<u32>, half: bool, capacity: usize) -> Self {
        let dims = dims.map(|d| d as usize);
        VectorBuilder {
            dims,
            half,
            values: Vec::with_capacity(capacity * dims.unwrap_or(0)),
            offsets: vec![0],
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    pub fn append(&mut self, value: Option<&[u8]>) -> Result<(), String> {
        let Some(v) = value else {
            if let Some(d) = self.dims {
                self.values.resize(self.values.len() + d, 0.0);
            }
            self.offsets.push(self.values.len() as i32);
            self.nulls.append_null();
            return Ok(());
        };
        if v.len() < 4 {
            return Err(format!("vector value of {} bytes is too short", v.len()));
        }
        let dim = u16::from_be_bytes([v[0], v[1]]) as usize;
        let width = if self.half { 2 } else { 4 };
        if v.len() != 4 + dim * width {
            return Err(format!("vector header says {dim} dimensions but carries {} bytes", v.len() - 4));
        }
        if let Some(d) = self.dims {
            if d != dim {
                return Err(format!("vector has {dim} dimensions, the column declares {d}"));
            }
        }
        let body = &v[4..];
        if self.half {
            self.values.extend(body.chunks_exact(2).map(|c| half::f16::from_be_bytes([c[0], c[1]]).to_f32()));
        } else {
            self.values.extend(body.chunks_exact(4).map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]])));
        }
        self.offsets.push(self.values.len() as i32);
        self.nulls.append_non_null();
        Ok(())
    }

    pub fn finish(&mut self) -> ArrayRef {
        let values = Arc::new(Float32Array::new(ScalarBuffer::from(std::mem::take(&mut self.values)), None));
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let nulls = self.nulls.finish();
        let offsets = std::mem::replace(&mut self.offsets, vec![0]);
        match self.dims {
            Some(d) => Arc::new(FixedSizeListArray::new(item, d as i32, values, nulls)),
            None => {
                Arc::new(ListArray::new(item, OffsetBuffer::new(ScalarBuffer::from(offsets)), values, nulls))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Float32Type;

    fn vector_bytes(vals: &[f32]) -> Vec<u8> {
        let mut v = (vals.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        for x in vals {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v
    }

    #[test]
    fn fixed_vectors_keep_bits_and_nulls() {
        let mut b = VectorBuilder::new(Some(3), false, 4);
        let odd = f32::from_bits(0x0000_0001); // smallest subnormal
        b.append(Some(&vector_bytes(&[1.5, -0.0, odd]))).unwrap();
        b.append(None).unwrap();
        assert!(b.append(Some(&vector_bytes(&[1.0]))).unwrap_err().contains("declares 3"));
        let arr = b.finish();
        let list = arr.as_fixed_size_list();
        assert_eq!(list.len(), 2);
        assert!(list.is_null(1));
        let first = list.value(0);
        let first = first.as_primitive::<Float32Type>();
        assert_eq!(first.value(1).to_bits(), (-0.0f32).to_bits());
        assert_eq!(first.value(2).to_bits(), 1);
    }

    #[test]
    fn halfvec_widens_exactly() {
        let mut b = VectorBuilder::new(None, true, 1);
        let h = [half::f16::from_f32(0.333), half::f16::MIN_POSITIVE_SUBNORMAL];
        let mut v = 2u16.to_be_bytes().to_vec();
        v.extend_from_slice(&[0, 0]);
        for x in h {
            v.extend_from_slice(&x.to_be_bytes());
        }
        b.append(Some(&v)).unwrap();
        let arr = b.finish();
        let list = arr.as_list::<i32>();
        let vals = list.value(0);
        let vals = vals.as_primitive::<Float32Type>();
        assert_eq!(vals.value(0), h[0].to_f32());
        assert_eq!(vals.value(1), h[1].to_f32());
    }
}
