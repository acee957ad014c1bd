//! `pack`: tokenized samples in, fixed-capacity rows with document boundaries out.
//!
//! 1. Views of every input batch are built (zero-copy) and the overflow policy cuts samples into
//!    *documents* of at most `seq_len` tokens.
//! 2. A [`plan`](plan()) assigns documents to rows from their lengths alone (sequential,
//!    deterministic).
//! 3. Rows are gathered in parallel on a dedicated pool: each document's tokens are copied once,
//!    straight into pre-sized Arrow buffers, and validated during that copy.
//!
//! The output never depends on the number of threads: the plan is sequential and every row is
//! written to its own fixed place.
//!
//! The stage in reading order: [`input`] (views and checks of the input batches),
//! [`plan`](mod@plan) (rows from lengths), [`gather`] (rows into Arrow, shared by both packers),
//! then `pack` here and [`pmix`] (long/short mixing, in memory and streamed) on the same parts;
//! [`rows_plan`] writes a plan as data and makes `pack`'s rows again from it.

pub mod gather;
pub mod input;
mod kernels;
mod memory;
mod options;
pub use options::LossWeights;
pub mod plan;
pub mod pmix;
pub mod rows_plan;

use std::str::FromStr;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};

use crate::error::{PackError, Result};
use gather::{check_discarded, output_schema, Discarded, Gather, Piece};
use input::{BatchView, Layout};
use plan::{plan, Plan, Strategy};
pub use rows_plan::{pack_from_plan, pack_plan, plan_schema, PackPlan};

/// What to do with a sample longer than `seq_len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Fail, naming the row and its length.
    Error,
    /// Keep the first `seq_len` tokens (counted).
    Truncate,
    /// Leave the sample out (counted).
    Drop,
    /// Cut it into `seq_len` pieces, each its own document (counted).
    Split,
}

impl FromStr for Overflow {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "error" => Ok(Overflow::Error),
            "truncate" => Ok(Overflow::Truncate),
            "drop" => Ok(Overflow::Drop),
            "split" => Ok(Overflow::Split),
            other => Err(PackError::InvalidArgument(format!(
                "unknown overflow policy '{other}'; expected one of 'error', 'truncate', 'drop', 'split'"
            ))),
        }
    }
}

/// Options of [`pack`].
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Row capacity in tokens.
    pub seq_len: usize,
    /// Planner.
    pub strategy: Strategy,
    /// Policy for samples longer than `seq_len`.
    pub overflow: Overflow,
    /// Threads of the gather pool; `None` = all cores.
    pub num_threads: Option<usize>,
    /// Pad every row to this many tokens (>= `seq_len`); the pad is its own segment.
    pub pad_to: Option<usize>,
    /// Token id of the padding.
    pub pad_id: i32,
    /// Number of the first input row in error messages (a stream's window starts past 0).
    pub row_offset: usize,
    /// Write a `loss_weights` column of this scheme.
    pub loss_weights: Option<LossWeights>,
    /// Pad every document to a multiple of this many tokens (context parallelism needs `2 * cp`):
    /// the planner places padded lengths, the padding follows each document inside its segment
    /// (mask 0, label -100), and a `seq_lengths_unpadded` column gives the real lengths.
    pub pad_documents_to: Option<usize>,
}

impl PackOptions {
    /// Defaults of the Python API: 64k rows, best-fit decreasing, fail on overflow.
    pub fn new(seq_len: usize) -> Self {
        PackOptions {
            seq_len,
            strategy: Strategy::Bfd,
            overflow: Overflow::Error,
            num_threads: None,
            pad_to: None,
            pad_id: 0,
            row_offset: 0,
            loss_weights: None,
            pad_documents_to: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PackError::InvalidArgument(m));
        options::check_common(self.seq_len, self.num_threads)?;
        if let Some(p) = self.pad_to {
            if p < self.seq_len || p > i32::MAX as usize {
                return bad(format!(
                    "pad_to must be at least seq_len={} and at most {} (got {p})",
                    self.seq_len,
                    i32::MAX
                ));
            }
        }
        if self.pad_id < 0 {
            return bad(format!("pad_id must be >= 0 (got {})", self.pad_id));
        }
        options::check_pad_documents(self.pad_documents_to, self.seq_len, self.pad_to)
    }

    /// `pad_documents_to` as the planner and the gather take it.
    pub(crate) fn document_multiple(&self) -> Option<u32> {
        self.pad_documents_to.map(|m| m as u32)
    }
}

/// Counts that describe one packing run. Token counts exclude padding unless named so.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PackStats {
    /// Input samples (rows of the input).
    pub input_samples: u64,
    /// Tokens over all input samples.
    pub input_tokens: u64,
    /// Samples with no tokens (skipped: an empty document has no boundary to keep).
    pub empty_samples: u64,
    /// Output rows.
    pub rows: u64,
    /// Documents placed (one per kept sample, more for split samples).
    pub documents: u64,
    /// Real tokens in the output.
    pub output_tokens: u64,
    /// Padding tokens added by `pad_to` (after the last document of a row).
    pub pad_tokens: u64,
    /// Padding tokens added by `pad_documents_to` (after each document, inside its segment).
    pub document_pad_tokens: u64,
    /// `output_tokens / (rows * seq_len)`; 0 when there are no rows.
    pub fill_rate: f64,
    /// Samples cut to `seq_len` by `overflow = truncate`.
    pub truncated_samples: u64,
    /// Tokens removed by truncation.
    pub truncated_tokens: u64,
    /// Samples left out by `overflow = drop`.
    pub dropped_samples: u64,
    /// Tokens of the dropped samples.
    pub dropped_tokens: u64,
    /// Samples cut into pieces by `overflow = split`.
    pub split_samples: u64,
    /// Pieces made from them.
    pub split_pieces: u64,
    /// Most documents in one row.
    pub max_documents_per_row: u64,
    /// Fewest real tokens in a row (0 when there are no rows).
    pub min_row_tokens: u64,
}

/// The result of [`pack`]: the output batches, their schema and the statistics.
#[derive(Debug, Clone)]
pub struct Packed {
    /// Output schema (see [`output_schema`]).
    pub schema: SchemaRef,
    /// Output rows, in batches of at most [`rows_per_batch`](gather::rows_per_batch) rows.
    pub batches: Vec<RecordBatch>,
    /// What happened.
    pub stats: PackStats,
}

/// Packs `batches` (all with `schema`) into rows of at most `opts.seq_len` real tokens.
pub fn pack(schema: &Schema, batches: &[RecordBatch], opts: &PackOptions) -> Result<Packed> {
    let Prepared {
        layout,
        views,
        pieces,
        discarded,
        plan: the_plan,
        stats,
    } = prepare(schema, batches, opts)?;
    gather_rows(&views, &pieces, &discarded, &the_plan, layout, opts, stats)
}

/// Gathers the planned rows (after checking the tokens the overflow policy leaves out) and counts
/// them: the end of [`pack`] and [`pack_from_plan`].
fn gather_rows(
    views: &[BatchView],
    pieces: &[Piece],
    discarded: &[Discarded],
    the_plan: &Plan,
    layout: Layout,
    opts: &PackOptions,
    mut stats: PackStats,
) -> Result<Packed> {
    let out_schema = output_schema(
        layout,
        opts.loss_weights.is_some(),
        opts.pad_documents_to.is_some(),
    );
    let pool = options::thread_pool(opts.num_threads)?;
    let out_batches = pool.install(|| -> Result<Vec<RecordBatch>> {
        check_discarded(views, discarded)?;
        Gather {
            views,
            pieces,
            plan: the_plan,
            seq_len: opts.seq_len,
            pad_to: opts.pad_to,
            pad_id: opts.pad_id,
            layout,
            schema: out_schema.clone(),
            long_views: None,
            loss_weights: opts.loss_weights,
            pad_documents_to: opts.document_multiple(),
        }
        .run()
    })?;
    let lengths: Vec<u32> = pieces.iter().map(|p| p.len).collect();
    row_stats(&mut stats, the_plan, &lengths, opts);
    Ok(Packed {
        schema: out_schema,
        batches: out_batches,
        stats,
    })
}

/// What [`pack`] and [`pack_plan`] share: the input views, the documents and their plan.
struct Prepared<'a> {
    layout: Layout,
    views: Vec<BatchView<'a>>,
    pieces: Vec<Piece>,
    discarded: Vec<Discarded>,
    plan: Plan,
    /// Input and overflow counts (the row counts are [`row_stats`]'s).
    stats: PackStats,
}

/// Checks the options and the input's shape, applies the overflow policy and plans the rows.
fn prepare<'a>(
    schema: &Schema,
    batches: &'a [RecordBatch],
    opts: &PackOptions,
) -> Result<Prepared<'a>> {
    opts.validate()?;
    let layout = Layout::of(schema)?;
    let mut views = Vec::with_capacity(batches.len());
    let mut first_row = opts.row_offset;
    for b in batches {
        views.push(BatchView::new(b, layout, first_row)?);
        first_row += b.num_rows();
    }
    if batches.len() > u32::MAX as usize {
        return Err(PackError::InvalidArgument(
            "too many input batches; concatenate them first".into(),
        ));
    }
    let mut stats = PackStats::default();
    let (pieces, discarded) = cut(&views, opts, &mut stats)?;
    let multiple = opts.document_multiple();
    let lengths: Vec<u32> = pieces
        .iter()
        .map(|p| options::slot(p.len, multiple))
        .collect();
    let plan = plan(&lengths, opts.seq_len as u32, opts.strategy);
    Ok(Prepared {
        layout,
        views,
        pieces,
        discarded,
        plan,
        stats,
    })
}

/// Fills the row statistics of `stats` from the plan and the documents' real `lengths`.
fn row_stats(stats: &mut PackStats, the_plan: &Plan, lengths: &[u32], opts: &PackOptions) {
    stats.rows = the_plan.rows() as u64;
    stats.documents = the_plan.items.len() as u64;
    stats.output_tokens = the_plan
        .items
        .iter()
        .map(|&i| lengths[i as usize] as u64)
        .sum();
    let multiple = opts.document_multiple();
    let slots: u64 = the_plan
        .items
        .iter()
        .map(|&i| options::slot(lengths[i as usize], multiple) as u64)
        .sum();
    stats.document_pad_tokens = slots - stats.output_tokens;
    if let Some(p) = opts.pad_to {
        stats.pad_tokens = stats.rows * p as u64 - slots;
    }
    if stats.rows > 0 {
        stats.fill_rate = stats.output_tokens as f64 / (stats.rows as f64 * opts.seq_len as f64);
        let mut min_tokens = u64::MAX;
        for r in 0..the_plan.rows() {
            let row = the_plan.row(r);
            stats.max_documents_per_row = stats.max_documents_per_row.max(row.len() as u64);
            let t: u64 = row.iter().map(|&i| lengths[i as usize] as u64).sum();
            min_tokens = min_tokens.min(t);
        }
        stats.min_row_tokens = min_tokens;
    }
}

/// Applies the overflow policy: documents to place, and token ranges to validate only.
fn cut(
    views: &[BatchView],
    opts: &PackOptions,
    stats: &mut PackStats,
) -> Result<(Vec<Piece>, Vec<Discarded>)> {
    let cap = opts.seq_len;
    let mut pieces = Vec::with_capacity(views.iter().map(|v| v.rows).sum());
    let mut discarded = Vec::new();
    for (b, v) in views.iter().enumerate() {
        for r in 0..v.rows {
            let len = v.ids.offsets.len(r);
            stats.input_samples += 1;
            stats.input_tokens += len as u64;
            if len > u32::MAX as usize {
                return Err(PackError::InvalidArgument(format!(
                    "row {} has {len} tokens; samples above {} tokens are not supported",
                    v.first_row + r,
                    u32::MAX
                )));
            }
            let piece = |skip: usize, n: usize| Piece {
                batch: b as u32,
                row: r as u32,
                skip: skip as u32,
                len: n as u32,
            };
            if len == 0 {
                stats.empty_samples += 1;
            } else if len <= cap {
                pieces.push(piece(0, len));
            } else {
                match opts.overflow {
                    Overflow::Error => {
                        return Err(PackError::TooLong {
                            row: v.first_row + r,
                            length: len,
                            seq_len: cap,
                        })
                    }
                    Overflow::Truncate => {
                        stats.truncated_samples += 1;
                        stats.truncated_tokens += (len - cap) as u64;
                        pieces.push(piece(0, cap));
                        discarded.push(piece(cap, len - cap));
                    }
                    Overflow::Drop => {
                        stats.dropped_samples += 1;
                        stats.dropped_tokens += len as u64;
                        discarded.push(piece(0, len));
                    }
                    Overflow::Split => {
                        stats.split_samples += 1;
                        let mut skip = 0;
                        while skip < len {
                            let n = cap.min(len - skip);
                            pieces.push(piece(skip, n));
                            stats.split_pieces += 1;
                            skip += n;
                        }
                    }
                }
            }
        }
    }
    if pieces.len() >= u32::MAX as usize {
        return Err(PackError::InvalidArgument(
            "more than 4 billion documents in one call; pack in several calls or use the streaming path".into(),
        ));
    }
    Ok((pieces, discarded))
}
