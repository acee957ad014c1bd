//! longmagpie-core: the pure-Rust computations of longmagpie over Arrow buffers.
//!
//! No Python and no I/O live here: the binding crate converts Arrow between Python and these
//! functions, and Python reads and writes files. Everything is deterministic: the same inputs and
//! options give byte-identical outputs whatever the thread count.

#![deny(clippy::unwrap_used)]
#![warn(missing_docs)]

pub mod assemble;
pub mod columns;
pub mod error;
pub mod gather;
pub mod joiner;
mod kernels;
mod memory;
mod options;
pub mod pack;
pub mod plan;
pub mod pmix;
pub mod quality;
/// Quadratic reference planners, for the unit tests and the fuzz targets only.
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod reference;
pub mod tokenized;

pub use error::{PackError, Result};
pub use gather::{output_schema, rows_per_batch};
pub use pack::{pack, Overflow, PackOptions, PackStats, Packed};
pub use plan::{plan, Plan, Strategy};
pub use pmix::{pack_pmix, Exhausted, Fill, PmixOptions, PmixPacked, PmixStats};

#[cfg(test)]
mod tests;

#[cfg(test)]
mod assemble_tests;
