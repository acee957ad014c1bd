//! Errors of the core: [`PackError`] for the packers (`pack`, p-mix), [`AssembleError`] for the
//! text stages (quality filters, assembly). Every variant names the column and, where one is to
//! blame, the row, and says what to do about it; the binding layer turns them into
//! `ValueError`/`TypeError`.

use thiserror::Error;

/// What went wrong, with enough context for a user to find and fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PackError {
    /// A required column is absent.
    #[error("missing column '{column}': {hint}")]
    MissingColumn {
        /// Column name.
        column: String,
        /// What the caller should do.
        hint: String,
    },
    /// A column has an Arrow type the core cannot read.
    #[error("column '{column}' has type {found}; expected {expected}")]
    WrongType {
        /// Column name.
        column: String,
        /// The Arrow type found.
        found: String,
        /// What would be accepted.
        expected: String,
    },
    /// A null where a value is required.
    #[error(
        "column '{column}' is null at row {row}{detail}; drop or fill such rows before packing"
    )]
    Null {
        /// Column name.
        column: String,
        /// Global row index (over all input batches).
        row: usize,
        /// Extra context, e.g. the position of a null element inside the list.
        detail: String,
    },
    /// Two columns of the same row disagree in length.
    #[error(
        "column '{column}' has {found} values at row {row} but 'input_ids' has {expected}; \
         every per-token column must have one value per token"
    )]
    LengthMismatch {
        /// Column name.
        column: String,
        /// Global row index.
        row: usize,
        /// Length of `input_ids` at that row.
        expected: usize,
        /// Length of the column at that row.
        found: usize,
    },
    /// A value outside the allowed range.
    #[error(
        "column '{column}' has invalid value {value} at row {row}, position {position}: {hint}"
    )]
    BadValue {
        /// Column name.
        column: String,
        /// Global row index.
        row: usize,
        /// Position of the value inside the row's list.
        position: usize,
        /// The value, widened for display.
        value: i128,
        /// What is allowed.
        hint: String,
    },
    /// A sample longer than the row and `overflow = error`.
    #[error(
        "row {row} has {length} tokens, more than seq_len={seq_len}; pass overflow='truncate', \
         'drop' or 'split', or a larger seq_len"
    )]
    TooLong {
        /// Global row index.
        row: usize,
        /// Its length in tokens.
        length: usize,
        /// The row capacity.
        seq_len: usize,
    },
    /// A bad argument (not data).
    #[error("{0}")]
    InvalidArgument(String),
    /// An error in one of several inputs (p-mix: the `long` or the `short` samples).
    #[error("in the {pool} samples: {inner}")]
    InPool {
        /// Which input.
        pool: &'static str,
        /// The error.
        inner: Box<PackError>,
    },
}

impl PackError {
    /// True for errors about the *type* of the input (mapped to `TypeError`), false for values.
    pub fn is_type_error(&self) -> bool {
        match self {
            PackError::WrongType { .. } => true,
            PackError::InPool { inner, .. } => inner.is_type_error(),
            _ => false,
        }
    }

    /// Says which input the error is about.
    pub fn in_pool(self, pool: &'static str) -> PackError {
        PackError::InPool {
            pool,
            inner: Box::new(self),
        }
    }
}

/// Result alias of the core.
pub type Result<T> = std::result::Result<T, PackError>;

/// Errors of the text stages (assembly and the quality filters); each names the column and row, or
/// the file, and what to do.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AssembleError {
    /// The tokenizer JSON does not parse.
    #[error(
        "cannot load the tokenizer ({0}); pass the tokenizer.json of a Hugging Face fast tokenizer"
    )]
    Tokenizer(String),
    /// A text column holds a null.
    #[error("{column} row {row} is null; drop or fill such rows before assembling")]
    Null {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
    },
    /// A document is empty (or only whitespace).
    #[error("{column} row {row} is an empty document; drop empty documents before assembling")]
    EmptyDocument {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
    },
    /// A sample names a gold document outside the pool.
    #[error("sample row {row} names gold document {index}, but the pool has {pool} documents")]
    GoldOutOfRange {
        /// Sample row.
        row: usize,
        /// Index given.
        index: i64,
        /// Pool size.
        pool: usize,
    },
    /// The tokenizer failed on a text.
    #[error("tokenizing {column} row {row} failed: {message}")]
    Tokenize {
        /// Column name.
        column: String,
        /// Row index.
        row: usize,
        /// The tokenizer's message.
        message: String,
    },
    /// A bad option.
    #[error("{0}")]
    InvalidArgument(String),
}
