//! Typed, validated, zero-copy views of the input columns of one record batch.
//!
//! A view borrows the batch's buffers; nothing is copied here. Per-row checks (nulls, lengths of
//! per-token columns) happen when a view is built; per-value checks (negative ids, masks other
//! than 0/1) happen while tokens are copied, so each token is read once.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, GenericListArray, OffsetSizeTrait, RecordBatch};
use arrow_buffer::BooleanBuffer;
use arrow_schema::{DataType, Schema};

use crate::columns::{type_name, StrColumn};
use crate::error::{PackError, Result};

/// Name of the token id column.
pub const INPUT_IDS: &str = "input_ids";
/// Name of the optional loss-mask column (1 = train on this token).
pub const ASSISTANT_MASKS: &str = "assistant_masks";
/// Name of the optional labels column (-100 = ignored).
pub const LABELS: &str = "labels";
/// Name of the optional per-sample provenance column.
pub const SOURCE: &str = "source";

/// The label value that means "no loss on this token" (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i32 = -100;

/// Offsets of a list column, 32- or 64-bit.
#[derive(Clone, Copy)]
pub enum Offsets<'a> {
    /// `List`.
    Small(&'a [i32]),
    /// `LargeList`.
    Large(&'a [i64]),
}

impl Offsets<'_> {
    /// Start of row `i` in the values.
    #[inline]
    pub fn start(&self, i: usize) -> usize {
        match self {
            Offsets::Small(o) => o[i] as usize,
            Offsets::Large(o) => o[i] as usize,
        }
    }

    /// Length of row `i`.
    #[inline]
    pub fn len(&self, i: usize) -> usize {
        match self {
            Offsets::Small(o) => (o[i + 1] - o[i]) as usize,
            Offsets::Large(o) => (o[i + 1] - o[i]) as usize,
        }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        match self {
            Offsets::Small(o) => o.len() - 1,
            Offsets::Large(o) => o.len() - 1,
        }
    }

    /// Row holding value position `pos` (binary search), for error messages.
    fn row_of_value(&self, pos: usize) -> usize {
        let (mut lo, mut hi) = (0usize, self.rows());
        while lo + 1 < hi {
            let mid = (lo + hi) / 2;
            if self.start(mid) <= pos {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        lo
    }
}

/// The values of an integer (or boolean) list column, in its stored type.
#[derive(Clone)]
pub enum IntValues<'a> {
    /// int8
    I8(&'a [i8]),
    /// int16
    I16(&'a [i16]),
    /// int32
    I32(&'a [i32]),
    /// int64
    I64(&'a [i64]),
    /// uint8
    U8(&'a [u8]),
    /// uint16
    U16(&'a [u16]),
    /// uint32
    U32(&'a [u32]),
    /// uint64
    U64(&'a [u64]),
    /// bool (masks only)
    Bool(BooleanBuffer),
}

/// A list-of-integers column of one batch.
#[derive(Clone)]
pub struct IntList<'a> {
    /// Row offsets into `values`.
    pub offsets: Offsets<'a>,
    /// The flat values.
    pub values: IntValues<'a>,
}

/// Which optional columns a schema carries; decides the output schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// `assistant_masks` present.
    pub has_mask: bool,
    /// `labels` present.
    pub has_labels: bool,
    /// `source` present.
    pub has_source: bool,
}

const ID_TYPES: &str = "list<int> or large_list<int> (int8..int64, uint8..uint64)";

impl Layout {
    /// Reads and type-checks the schema; missing `input_ids` or unreadable types are errors.
    pub fn of(schema: &Schema) -> Result<Layout> {
        let ids = schema
            .field_with_name(INPUT_IDS)
            .map_err(|_| PackError::MissingColumn {
                column: INPUT_IDS.into(),
                hint: format!(
                    "the input has columns [{}]; tokenize first or rename the token column to '{INPUT_IDS}'",
                    schema
                        .fields()
                        .iter()
                        .map(|f| format!("'{}'", f.name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        check_int_list(INPUT_IDS, ids.data_type(), false)?;
        let mut layout = Layout::default();
        if let Ok(f) = schema.field_with_name(ASSISTANT_MASKS) {
            check_int_list(ASSISTANT_MASKS, f.data_type(), true)?;
            layout.has_mask = true;
        }
        if let Ok(f) = schema.field_with_name(LABELS) {
            check_int_list(LABELS, f.data_type(), false)?;
            layout.has_labels = true;
        }
        if let Ok(f) = schema.field_with_name(SOURCE) {
            match f.data_type() {
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {}
                other => {
                    return Err(PackError::WrongType {
                        column: SOURCE.into(),
                        found: type_name(other),
                        expected: "string, large_string or string_view".into(),
                    })
                }
            }
            layout.has_source = true;
        }
        Ok(layout)
    }
}

fn check_int_list(column: &str, dt: &DataType, allow_bool: bool) -> Result<()> {
    let inner = match dt {
        DataType::List(f) | DataType::LargeList(f) => f.data_type(),
        _ => None.ok_or_else(|| wrong(column, dt, allow_bool))?,
    };
    let ok = inner.is_integer() || (allow_bool && *inner == DataType::Boolean);
    if ok {
        Ok(())
    } else {
        Err(wrong(column, dt, allow_bool))
    }
}

fn wrong(column: &str, dt: &DataType, allow_bool: bool) -> PackError {
    PackError::WrongType {
        column: column.into(),
        found: type_name(dt),
        expected: if allow_bool {
            format!("{ID_TYPES} or list<bool>")
        } else {
            ID_TYPES.into()
        },
    }
}

/// Validated views of one input batch.
pub struct BatchView<'a> {
    /// Global index of this batch's first row.
    pub first_row: usize,
    /// Number of rows.
    pub rows: usize,
    /// Token ids.
    pub ids: IntList<'a>,
    /// Loss mask, if given.
    pub mask: Option<IntList<'a>>,
    /// Labels, if given.
    pub labels: Option<IntList<'a>>,
    /// Provenance, if given.
    pub source: Option<StrColumn<'a>>,
}

impl<'a> BatchView<'a> {
    /// Builds the views of `batch` (whose schema has the given `layout`), checking nulls and that
    /// per-token columns have the same length as `input_ids` on every row.
    pub fn new(batch: &'a RecordBatch, layout: Layout, first_row: usize) -> Result<Self> {
        let rows = batch.num_rows();
        let col = |name: &str| -> Result<&'a ArrayRef> {
            batch
                .column_by_name(name)
                .ok_or_else(|| PackError::MissingColumn {
                    column: name.into(),
                    hint: "every input batch must have the same columns".into(),
                })
        };
        let ids = int_list(INPUT_IDS, col(INPUT_IDS)?, first_row)?;
        let mask = if layout.has_mask {
            Some(int_list(ASSISTANT_MASKS, col(ASSISTANT_MASKS)?, first_row)?)
        } else {
            None
        };
        let labels = if layout.has_labels {
            Some(int_list(LABELS, col(LABELS)?, first_row)?)
        } else {
            None
        };
        for (name, other) in [(ASSISTANT_MASKS, &mask), (LABELS, &labels)] {
            if let Some(other) = other {
                for r in 0..rows {
                    let (e, f) = (ids.offsets.len(r), other.offsets.len(r));
                    if e != f {
                        return Err(PackError::LengthMismatch {
                            column: name.into(),
                            row: first_row + r,
                            expected: e,
                            found: f,
                        });
                    }
                }
            }
        }
        let source = if layout.has_source {
            let a = col(SOURCE)?;
            Some(match a.data_type() {
                DataType::Utf8 => StrColumn::Utf8(a.as_string::<i32>()),
                DataType::LargeUtf8 => StrColumn::Large(a.as_string::<i64>()),
                DataType::Utf8View => StrColumn::View(a.as_string_view()),
                DataType::Null => StrColumn::Null,
                other => {
                    return Err(PackError::WrongType {
                        column: SOURCE.into(),
                        found: type_name(other),
                        expected: "string, large_string or string_view".into(),
                    })
                }
            })
        } else {
            None
        };
        Ok(BatchView {
            first_row,
            rows,
            ids,
            mask,
            labels,
            source,
        })
    }
}

fn int_list<'a>(name: &str, array: &'a ArrayRef, first_row: usize) -> Result<IntList<'a>> {
    match array.data_type() {
        DataType::List(_) => {
            let l = array.as_list::<i32>();
            list_parts(name, l, Offsets::Small(l.value_offsets()), first_row)
        }
        DataType::LargeList(_) => {
            let l = array.as_list::<i64>();
            list_parts(name, l, Offsets::Large(l.value_offsets()), first_row)
        }
        other => Err(wrong(name, other, name == ASSISTANT_MASKS)),
    }
}

fn list_parts<'a, O: OffsetSizeTrait>(
    name: &str,
    list: &'a GenericListArray<O>,
    offsets: Offsets<'a>,
    first_row: usize,
) -> Result<IntList<'a>> {
    if let Some(nulls) = list.nulls() {
        if let Some(row) = (0..list.len()).find(|&i| nulls.is_null(i)) {
            return Err(PackError::Null {
                column: name.into(),
                row: first_row + row,
                detail: String::new(),
            });
        }
    }
    let values = list.values();
    if values.null_count() > 0 {
        // Only nulls inside the rows' ranges matter (a sliced list may hide some).
        if let Some(nulls) = values.logical_nulls() {
            let (lo, hi) = (offsets.start(0), offsets.start(offsets.rows()));
            if let Some(pos) = (lo..hi).find(|&p| nulls.is_null(p)) {
                let row = offsets.row_of_value(pos);
                return Err(PackError::Null {
                    column: name.into(),
                    row: first_row + row,
                    detail: format!(" (element {} of the list)", pos - offsets.start(row)),
                });
            }
        }
    }
    let v = values.as_ref();
    let values = match v.data_type() {
        DataType::Int8 => IntValues::I8(v.as_primitive::<Int8Type>().values()),
        DataType::Int16 => IntValues::I16(v.as_primitive::<Int16Type>().values()),
        DataType::Int32 => IntValues::I32(v.as_primitive::<Int32Type>().values()),
        DataType::Int64 => IntValues::I64(v.as_primitive::<Int64Type>().values()),
        DataType::UInt8 => IntValues::U8(v.as_primitive::<UInt8Type>().values()),
        DataType::UInt16 => IntValues::U16(v.as_primitive::<UInt16Type>().values()),
        DataType::UInt32 => IntValues::U32(v.as_primitive::<UInt32Type>().values()),
        DataType::UInt64 => IntValues::U64(v.as_primitive::<UInt64Type>().values()),
        DataType::Boolean if name == ASSISTANT_MASKS => {
            IntValues::Bool(v.as_boolean().values().clone())
        }
        _ => return Err(wrong(name, list.data_type(), name == ASSISTANT_MASKS)),
    };
    Ok(IntList { offsets, values })
}
