//! `pack`: tokenized samples in, fixed-capacity rows with document boundaries out.
//!
//! 1. Views of every input batch are built (zero-copy) and the overflow policy cuts samples into
//!    *documents* of at most `seq_len` tokens.
//! 2. A [`plan`] assigns documents to rows from their lengths alone (sequential, deterministic).
//! 3. Rows are gathered in parallel on a dedicated pool: each document's tokens are copied once,
//!    straight into pre-sized Arrow buffers, and validated during that copy.
//!
//! The output never depends on the number of threads: the plan is sequential and every row is
//! written to its own fixed place.

use std::str::FromStr;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int32Array, Int8Array, ListArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

use crate::columns::{BatchView, Layout, ASSISTANT_MASKS, INPUT_IDS, LABELS, SOURCE};
use crate::error::{PackError, Result};
use crate::kernels;
use crate::memory;
use crate::plan::{plan, Plan, Strategy};

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
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PackError::InvalidArgument(m));
        if self.seq_len == 0 || self.seq_len > i32::MAX as usize {
            return bad(format!(
                "seq_len must be in 1..={} (got {})",
                i32::MAX,
                self.seq_len
            ));
        }
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
        if self.num_threads == Some(0) {
            return bad("num_threads must be >= 1 (or None for all cores)".into());
        }
        Ok(())
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
    /// Padding tokens added by `pad_to`.
    pub pad_tokens: u64,
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
    /// Output rows, in batches of at most [`rows_per_batch`] rows.
    pub batches: Vec<RecordBatch>,
    /// What happened.
    pub stats: PackStats,
}

/// A slice of one input sample placed as one document.
#[derive(Debug, Clone, Copy)]
struct Piece {
    batch: u32,
    row: u32,
    skip: u32,
    len: u32,
}

/// Tokens the overflow policy leaves out; checked, never copied.
type Discarded = Piece;

/// Output batches hold about this many token slots, so `list<int32>` offsets never overflow.
const BATCH_TOKENS: usize = 1 << 26;

/// Rows per output batch for a given row capacity (fixed by the arguments, not by threads).
pub fn rows_per_batch(row_capacity: usize) -> usize {
    (BATCH_TOKENS / row_capacity.max(1)).max(1)
}

fn list_field(name: &str, item: DataType) -> Field {
    Field::new(
        name,
        DataType::List(Arc::new(Field::new_list_field(item, true))),
        true,
    )
}

/// The output schema for an input with the given optional columns:
/// `input_ids` list<int32>, `seq_lengths` list<int32>, `assistant_masks` list<int8>,
/// [`labels` list<int32>], `length` int32, [`source` list<string>].
pub fn output_schema(layout: Layout) -> SchemaRef {
    let mut fields = vec![
        list_field(INPUT_IDS, DataType::Int32),
        list_field("seq_lengths", DataType::Int32),
        list_field(ASSISTANT_MASKS, DataType::Int8),
    ];
    if layout.has_labels {
        fields.push(list_field(LABELS, DataType::Int32));
    }
    fields.push(Field::new("length", DataType::Int32, true));
    if layout.has_source {
        fields.push(list_field(SOURCE, DataType::Utf8));
    }
    Arc::new(Schema::new(fields))
}

/// Packs `batches` (all with `schema`) into rows of at most `opts.seq_len` real tokens.
pub fn pack(schema: &Schema, batches: &[RecordBatch], opts: &PackOptions) -> Result<Packed> {
    opts.validate()?;
    let layout = Layout::of(schema)?;
    let out_schema = output_schema(layout);
    let mut views = Vec::with_capacity(batches.len());
    let mut first_row = 0usize;
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
    let lengths: Vec<u32> = pieces.iter().map(|p| p.len).collect();
    let the_plan = plan(&lengths, opts.seq_len as u32, opts.strategy);

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.num_threads.unwrap_or(0))
        .build()
        .map_err(|e| PackError::InvalidArgument(format!("cannot start threads: {e}")))?;
    let out_batches = pool.install(|| -> Result<Vec<RecordBatch>> {
        check_discarded(&views, &discarded)?;
        gather_all(&views, &pieces, &the_plan, opts, layout, &out_schema)
    })?;

    stats.rows = the_plan.rows() as u64;
    stats.documents = pieces.len() as u64;
    stats.output_tokens = lengths.iter().map(|&l| l as u64).sum();
    if let Some(p) = opts.pad_to {
        stats.pad_tokens = stats.rows * p as u64 - stats.output_tokens;
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
    Ok(Packed {
        schema: out_schema,
        batches: out_batches,
        stats,
    })
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

/// A bad value found while copying: global row, position in that row's list, value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Fault {
    row: usize,
    position: usize,
    column: u8, // 0 ids, 1 mask, 2 labels
    value: i128,
}

impl Fault {
    fn into_error(self) -> PackError {
        let (column, hint) = match self.column {
            0 => (INPUT_IDS, "token ids must be in 0..=2147483647"),
            1 => (ASSISTANT_MASKS, "mask values must be 0 or 1"),
            _ => (
                LABELS,
                "labels must be -100 (ignored) or a token id in 0..=2147483647",
            ),
        };
        PackError::BadValue {
            column: column.into(),
            row: self.row,
            position: self.position,
            value: self.value,
            hint: hint.into(),
        }
    }
}

fn fault(v: &BatchView, p: &Piece, column: u8, bad: kernels::Bad) -> Option<Fault> {
    bad.map(|(pos, value)| Fault {
        row: v.first_row + p.row as usize,
        position: p.skip as usize + pos,
        column,
        value,
    })
}

fn check_discarded(views: &[BatchView], discarded: &[Discarded]) -> Result<()> {
    let worst = discarded
        .par_iter()
        .filter_map(|p| {
            let v = &views[p.batch as usize];
            let (row, len) = (p.row as usize, p.len as usize);
            let ids = v.ids.offsets.start(row) + p.skip as usize;
            let mut f = fault(v, p, 0, kernels::check_ids(&v.ids.values, ids, len));
            if let Some(m) = &v.mask {
                let s = m.offsets.start(row) + p.skip as usize;
                f = f.min_some(fault(v, p, 1, kernels::check_flags(&m.values, s, len)));
            }
            if let Some(l) = &v.labels {
                let s = l.offsets.start(row) + p.skip as usize;
                f = f.min_some(fault(v, p, 2, kernels::check_labels(&l.values, s, len)));
            }
            f
        })
        .min();
    worst.map_or(Ok(()), |f| Err(f.into_error()))
}

trait MinSome {
    fn min_some(self, other: Self) -> Self;
}

impl MinSome for Option<Fault> {
    fn min_some(self, other: Self) -> Self {
        match (self, other) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, None) => a,
            (None, b) => b,
        }
    }
}

/// Mutable per-row destinations inside a batch's buffers.
struct RowOut<'a> {
    row: usize,
    ids: &'a mut [i32],
    mask: &'a mut [i8],
    labels: Option<&'a mut [i32]>,
}

fn gather_all(
    views: &[BatchView],
    pieces: &[Piece],
    the_plan: &Plan,
    opts: &PackOptions,
    layout: Layout,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let row_cap = opts.pad_to.unwrap_or(opts.seq_len);
    let per_batch = rows_per_batch(row_cap);
    let rows = the_plan.rows();
    let mut out = Vec::with_capacity(rows.div_ceil(per_batch));
    let mut r0 = 0;
    while r0 < rows {
        let r1 = (r0 + per_batch).min(rows);
        out.push(gather_batch(
            views,
            pieces,
            the_plan,
            r0..r1,
            opts,
            layout,
            schema,
        )?);
        r0 = r1;
    }
    Ok(out)
}

fn gather_batch(
    views: &[BatchView],
    pieces: &[Piece],
    the_plan: &Plan,
    rows: std::ops::Range<usize>,
    opts: &PackOptions,
    layout: Layout,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    // Row lengths and offsets.
    let mut row_offsets = Vec::with_capacity(rows.len() + 1);
    row_offsets.push(0i32);
    let mut total = 0usize;
    let mut seg_offsets = Vec::with_capacity(rows.len() + 1);
    seg_offsets.push(0i32);
    let mut seg_lengths = Vec::new();
    let mut lengths = Vec::with_capacity(rows.len());
    for r in rows.clone() {
        let mut row_len = 0usize;
        for &i in the_plan.row(r) {
            let l = pieces[i as usize].len as usize;
            seg_lengths.push(l as i32);
            row_len += l;
        }
        if let Some(p) = opts.pad_to {
            if p > row_len {
                seg_lengths.push((p - row_len) as i32);
                row_len = p;
            }
        }
        total += row_len;
        row_offsets.push(total as i32);
        seg_offsets.push(seg_lengths.len() as i32);
        lengths.push(row_len as i32);
    }

    // Buffers: zeroed allocations are lazily mapped (huge pages where possible); each page is
    // touched once, by the copy.
    let mut ids = memory::zeroed_vec::<i32>(total);
    let mut mask = memory::zeroed_vec::<i8>(total);
    let mut labels = layout.has_labels.then(|| memory::zeroed_vec::<i32>(total));

    let mut outs = Vec::with_capacity(rows.len());
    {
        let (mut ids_rest, mut mask_rest) = (ids.as_mut_slice(), mask.as_mut_slice());
        let mut labels_rest = labels.as_deref_mut();
        for (k, r) in rows.clone().enumerate() {
            let n = lengths[k] as usize;
            let (a, b) = std::mem::take(&mut ids_rest).split_at_mut(n);
            ids_rest = b;
            let (c, d) = std::mem::take(&mut mask_rest).split_at_mut(n);
            mask_rest = d;
            let lab = match labels_rest.take() {
                Some(rest) => {
                    let (e, f) = rest.split_at_mut(n);
                    labels_rest = Some(f);
                    Some(e)
                }
                None => None,
            };
            outs.push(RowOut {
                row: r,
                ids: a,
                mask: c,
                labels: lab,
            });
        }
    }
    let worst = outs
        .into_par_iter()
        .with_min_len(4)
        .filter_map(|o| gather_row(views, pieces, the_plan, opts, o))
        .min();
    if let Some(f) = worst {
        return Err(f.into_error());
    }

    // Arrow arrays, wrapping the vectors without copying.
    let list = |offsets: Vec<i32>, values: ArrayRef, item: DataType| -> ArrayRef {
        Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(item, true)),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values,
            None,
        ))
    };
    let mut columns: Vec<ArrayRef> = vec![
        list(
            row_offsets.clone(),
            Arc::new(Int32Array::from(ids)),
            DataType::Int32,
        ),
        list(
            seg_offsets.clone(),
            Arc::new(Int32Array::from(seg_lengths)),
            DataType::Int32,
        ),
        list(
            row_offsets.clone(),
            Arc::new(Int8Array::from(mask)),
            DataType::Int8,
        ),
    ];
    if let Some(labels) = labels {
        columns.push(list(
            row_offsets,
            Arc::new(Int32Array::from(labels)),
            DataType::Int32,
        ));
    }
    columns.push(Arc::new(Int32Array::from(lengths)));
    if layout.has_source {
        let mut builder = ListBuilder::new(StringBuilder::new());
        for r in rows {
            let row_docs = the_plan.row(r);
            let mut row_tokens = 0usize;
            for &i in row_docs {
                let p = &pieces[i as usize];
                row_tokens += p.len as usize;
                let v = &views[p.batch as usize];
                let s = v.source.as_ref().and_then(|s| s.get(p.row as usize));
                builder.values().append_option(s);
            }
            if opts.pad_to.is_some_and(|t| t > row_tokens) {
                builder.values().append_null();
            }
            builder.append(true);
        }
        columns.push(Arc::new(builder.finish()));
    }
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| PackError::InvalidArgument(format!("internal: building output: {e}")))
}

fn gather_row(
    views: &[BatchView],
    pieces: &[Piece],
    the_plan: &Plan,
    opts: &PackOptions,
    o: RowOut,
) -> Option<Fault> {
    let RowOut {
        row,
        ids,
        mask,
        mut labels,
    } = o;
    let mut worst: Option<Fault> = None;
    let mut pos = 0usize;
    let docs = the_plan.row(row);
    for (k, &i) in docs.iter().enumerate() {
        if let Some(&next) = docs.get(k + 1) {
            let q = &pieces[next as usize];
            let w = &views[q.batch as usize];
            let s = w.ids.offsets.start(q.row as usize) + q.skip as usize;
            kernels::prefetch(&w.ids.values, s, q.len as usize);
        }
        let p = &pieces[i as usize];
        let v = &views[p.batch as usize];
        let (r, n) = (p.row as usize, p.len as usize);
        let dst_ids = &mut ids[pos..pos + n];
        let s = v.ids.offsets.start(r) + p.skip as usize;
        worst = worst.min_some(fault(v, p, 0, kernels::copy_ids(&v.ids.values, s, dst_ids)));
        let dst_mask = &mut mask[pos..pos + n];
        if let Some(lab) = labels.as_deref_mut() {
            let l = v.labels.as_ref().expect("layout says labels");
            let dst = &mut lab[pos..pos + n];
            let s = l.offsets.start(r) + p.skip as usize;
            worst = worst.min_some(fault(v, p, 2, kernels::copy_labels(&l.values, s, dst)));
            if v.mask.is_none() {
                kernels::flags_from_labels(dst, dst_mask);
            }
        }
        match &v.mask {
            Some(m) => {
                let s = m.offsets.start(r) + p.skip as usize;
                worst = worst.min_some(fault(v, p, 1, kernels::copy_flags(&m.values, s, dst_mask)));
            }
            None if v.labels.is_none() => dst_mask.fill(1),
            None => {}
        }
        pos += n;
    }
    if pos < ids.len() {
        ids[pos..].fill(opts.pad_id);
        mask[pos..].fill(0);
        if let Some(lab) = labels {
            lab[pos..].fill(crate::columns::IGNORE_INDEX);
        }
    }
    worst
}
