//! Helpers shared by the integration tests (`pack`, `pmix`): Arrow batches of token lists and the
//! proptest configuration. Included with `mod common;`.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, Int32Array, ListArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use proptest::test_runner::{Config, FileFailurePersistence};

/// A `list<int32>` column with one list per row.
pub fn list_i32(rows: &[Vec<i32>]) -> ArrayRef {
    let mut offsets = vec![0i32];
    let mut values = Vec::new();
    for r in rows {
        values.extend_from_slice(r);
        offsets.push(values.len() as i32);
    }
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Int32, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int32Array::from(values)),
        None,
    ))
}

/// A record batch of the named columns.
pub fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("test batch")
}

/// `cases` cases per property, failing cases kept in the file `regressions` (each test file names
/// its own under `proptest-regressions/tests/`). Proptest's default places that file by the
/// `lib.rs` above the test's source, which an integration test has not.
pub fn proptest_config(cases: u32, regressions: &'static str) -> Config {
    Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(regressions))),
        ..Config::with_cases(cases)
    }
}
