//! longmagpie-core: the pure-Rust computations of longmagpie over Arrow buffers.
//!
//! No Python and no I/O live here: the binding crate converts Arrow between Python and these
//! functions, and Python reads and writes files. Everything is deterministic: the same inputs and
//! options give byte-identical outputs whatever the thread count.
//!
//! Modules, in pipeline order (harvest and export are Python; the core has the stages between):
//! - `error`: the errors of every stage (`PackError`, `AssembleError`), each naming column and row
//! - `columns`: Arrow helpers all stages share (string columns, type names as pyarrow prints them)
//! - `quality`: near-duplicate removal (MinHash + LSH) and n-gram decontamination of texts
//! - `assemble/` (feature `assemble`): multi-document samples, `tokenize`, `encode_segments`
//!   - `assemble::tokenized`: texts tokenized once, with where each pre-token starts
//!   - `assemble::joiner`: token-level joins equal to tokenizing the joined text
//! - `pack/`: `pack`, samples into fixed-capacity rows with document boundaries
//!   - `pack::input`: zero-copy, validated views of the input batches (`input_ids`, masks, labels)
//!   - `pack::plan`: bin-packing planners over lengths alone (`bfd`, `ffd`, `sequential`)
//!   - `pack::gather`: a plan's rows gathered into Arrow in parallel, shared by both packers
//!   - `pack::pmix` (also `pmix`): long/short p-mix mixing, in memory and streamed
//! - `reference`: quadratic reference planners, for the unit tests and the fuzz targets only
//!
//! Features: `assemble` (default) builds the `assemble` module and its tokenizer dependencies
//! (`tokenizers`, `aho-corasick`); without it the crate is the quality filters and the packers.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

#[cfg(feature = "assemble")]
pub mod assemble;
pub mod columns;
pub mod error;
pub mod pack;
pub mod quality;

pub use pack::pmix;

/// Quadratic reference planners, for the unit tests and the fuzz targets only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod reference;

pub use error::{AssembleError, PackError, Result};
pub use pack::gather::{output_schema, rows_per_batch};
pub use pack::plan::{plan, Plan, Strategy};
pub use pack::pmix::{pack_pmix, Exhausted, Fill, PmixOptions, PmixPacked, PmixStats};
pub use pack::{
    pack, pack_from_plan, pack_plan, plan_schema, LossWeights, Overflow, PackOptions, PackPlan,
    PackStats, Packed,
};
