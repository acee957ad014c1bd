//! Helpers shared by the criterion benches (`pack`, `pmix`): a seeded generator, criterion's test
//! mode, and Arrow batches of `input_ids` / `assistant_masks`. Included with `mod common;`.

use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int32Array, Int8Array, ListArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{Field, Schema};
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode};

/// splitmix64: tiny, seeded, good enough for synthetic lengths.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Log-uniform integer in `lo..=hi`.
    pub fn log_uniform(&mut self, lo: u32, hi: u32) -> u32 {
        let (a, b) = ((lo as f64).ln(), (hi as f64 + 1.0).ln());
        let x = (a + self.unit() * (b - a)).exp() as u32;
        x.clamp(lo, hi)
    }
}

/// True in criterion's test mode: `--test`, or run without `--bench` (`cargo test --benches`).
pub fn quick_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench")
}

/// A benchmark group of 10 flat samples, 1 s of warm-up and `measure` of measurement.
#[allow(dead_code)] // used by `pack` only; each bench compiles its own copy of this module
pub fn flat_group<'a>(
    c: &'a mut Criterion,
    name: &str,
    measure: Duration,
) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(measure);
    group
}

fn list(values: ArrayRef, offsets: &[i32]) -> ArrayRef {
    let item = values.data_type().clone();
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(item, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets.to_vec())),
        values,
        None,
    ))
}

/// One batch of `input_ids` list<int32> and `assistant_masks` list<int8>, both split at `offsets`.
pub fn token_batch(ids: Vec<i32>, mask: Vec<i8>, offsets: &[i32]) -> RecordBatch {
    let ids = list(Arc::new(Int32Array::from(ids)), offsets);
    let mask = list(Arc::new(Int8Array::from(mask)), offsets);
    let schema = Schema::new(vec![
        Field::new("input_ids", ids.data_type().clone(), true),
        Field::new("assistant_masks", mask.data_type().clone(), true),
    ]);
    RecordBatch::try_new(Arc::new(schema), vec![ids, mask]).expect("bench batch")
}
