//! Arrow helpers that every stage shares: string columns in any of Arrow's layouts (the texts of
//! the quality filters and the assembler, the `source` column of the packers) and Arrow types
//! spelled the way pyarrow prints them, for error messages.

use arrow_array::{Array, ArrayRef, LargeStringArray, StringArray, StringViewArray};
use arrow_schema::DataType;

use crate::error::AssembleError;

type Result<T> = std::result::Result<T, AssembleError>;

/// A string column of one batch (any of Arrow's three string layouts).
#[derive(Clone, Copy)]
pub enum StrColumn<'a> {
    /// utf8
    Utf8(&'a StringArray),
    /// large_utf8
    Large(&'a LargeStringArray),
    /// utf8_view (polars)
    View(&'a StringViewArray),
    /// null type (a column of nothing but nulls, as pandas and pyarrow infer for all-`None`)
    Null,
}

impl<'a> StrColumn<'a> {
    /// Value of row `i`, `None` when null.
    pub fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrColumn::Utf8(a) => a.is_valid(i).then(|| a.value(i)),
            StrColumn::Large(a) => a.is_valid(i).then(|| a.value(i)),
            StrColumn::View(a) => a.is_valid(i).then(|| a.value(i)),
            StrColumn::Null => None,
        }
    }
}

/// An Arrow type spelled the way pyarrow prints it (`list<int64>`, `double`, `large_string`).
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Int8 => "int8".into(),
        DataType::Int16 => "int16".into(),
        DataType::Int32 => "int32".into(),
        DataType::Int64 => "int64".into(),
        DataType::UInt8 => "uint8".into(),
        DataType::UInt16 => "uint16".into(),
        DataType::UInt32 => "uint32".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float16 => "halffloat".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Boolean => "bool".into(),
        DataType::Null => "null".into(),
        DataType::Utf8 => "string".into(),
        DataType::LargeUtf8 => "large_string".into(),
        DataType::Utf8View => "string_view".into(),
        DataType::Binary => "binary".into(),
        DataType::LargeBinary => "large_binary".into(),
        DataType::List(f) => format!("list<{}>", type_name(f.data_type())),
        DataType::LargeList(f) => format!("large_list<{}>", type_name(f.data_type())),
        DataType::ListView(f) => format!("list_view<{}>", type_name(f.data_type())),
        DataType::FixedSizeList(f, n) => {
            format!("fixed_size_list<{}>[{n}]", type_name(f.data_type()))
        }
        DataType::Dictionary(k, v) => format!(
            "dictionary<values={}, indices={}>",
            type_name(v),
            type_name(k)
        ),
        other => other.to_string(),
    }
}

/// Views a string array (utf8, large_utf8 or utf8_view).
pub fn str_column<'a>(array: &'a ArrayRef, column: &str) -> Result<StrColumn<'a>> {
    let any = array.as_any();
    if let Some(a) = any.downcast_ref::<StringArray>() {
        return Ok(StrColumn::Utf8(a));
    }
    if let Some(a) = any.downcast_ref::<LargeStringArray>() {
        return Ok(StrColumn::Large(a));
    }
    if let Some(a) = any.downcast_ref::<StringViewArray>() {
        return Ok(StrColumn::View(a));
    }
    if array.data_type() == &DataType::Null {
        return Ok(StrColumn::Null);
    }
    Err(AssembleError::InvalidArgument(format!(
        "column {column} must hold strings, got {}",
        type_name(array.data_type())
    )))
}

/// All values of a string column, or the first null's row.
pub fn texts_of<'a>(col: StrColumn<'a>, len: usize, column: &str) -> Result<Vec<&'a str>> {
    (0..len)
        .map(|row| {
            col.get(row).ok_or_else(|| AssembleError::Null {
                column: column.into(),
                row,
            })
        })
        .collect()
}
