//! A packing plan as data: which slice of which input sample each document of each packed row is,
//! without the tokens ([`pack_plan`]), and the packed rows made again from such a plan and the
//! same input ([`pack_from_plan`]), byte for byte what [`pack`](super::pack) writes.
//!
//! A plan is small (three numbers per document), so a run can keep it beside the tokenized input
//! and re-materialise rows on demand, or plan again for another `seq_len` or strategy without
//! rewriting any token.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

use super::gather::Piece;
use super::input::{BatchView, Layout};
use super::plan::Plan;
use super::{row_stats, PackOptions, PackStats, Packed};
use crate::error::{PackError, Result};

/// Plan column: global index of the input sample (row of the input, 0-based) of each document.
pub const PLAN_SAMPLE_INDEX: &str = "sample_index";
/// Plan column: tokens of the sample before the document (non-zero for `split` pieces only).
pub const PLAN_TOKEN_OFFSET: &str = "token_offset";
/// Plan column: tokens of each document (its real length, without any padding: the packed rows'
/// `seq_lengths` without `pad_to`, their `seq_lengths_unpadded` with `pad_documents_to`).
pub const PLAN_SEQ_LENGTHS: &str = "seq_lengths";

/// Plan items per output batch, so `list` offsets never overflow.
const PLAN_BATCH_ITEMS: usize = 1 << 26;

/// The Arrow schema of a plan: one row per packed row, three lists of one entry per document.
pub fn plan_schema() -> SchemaRef {
    let list = |name: &str, item: DataType| {
        Field::new(
            name,
            DataType::List(Arc::new(Field::new_list_field(item, true))),
            false,
        )
    };
    Arc::new(Schema::new(vec![
        list(PLAN_SAMPLE_INDEX, DataType::Int64),
        list(PLAN_TOKEN_OFFSET, DataType::Int64),
        list(PLAN_SEQ_LENGTHS, DataType::Int32),
    ]))
}

/// The result of [`pack_plan`]: the plan as record batches and the statistics `pack` would report.
#[derive(Debug, Clone)]
pub struct PackPlan {
    /// [`plan_schema`].
    pub schema: SchemaRef,
    /// One row per packed row.
    pub batches: Vec<RecordBatch>,
    /// The statistics of the `pack` call this plan stands for.
    pub stats: PackStats,
}

/// Plans `pack(schema, batches, opts)` from lengths alone: no token is read or checked.
///
/// The plan's rows are the rows `pack` writes, in its order; [`pack_from_plan`] makes them. Token
/// values (negative ids, masks other than 0/1) are checked when rows are made, so bad values in
/// samples the overflow policy leaves out are not reported here (`pack` reports them).
pub fn pack_plan(schema: &Schema, batches: &[RecordBatch], opts: &PackOptions) -> Result<PackPlan> {
    let planned = super::prepare(schema, batches, opts)?;
    let mut starts = Vec::with_capacity(planned.views.len());
    let mut first = 0u64;
    for v in &planned.views {
        starts.push(first);
        first += v.rows as u64;
    }
    let the_plan = &planned.plan;
    let pieces = &planned.pieces;
    let schema = plan_schema();
    let mut out = Vec::new();
    let mut r0 = 0;
    while r0 < the_plan.rows() {
        let mut r1 = r0;
        let mut items = 0usize;
        while r1 < the_plan.rows()
            && (r1 == r0 || items + the_plan.row(r1).len() <= PLAN_BATCH_ITEMS)
        {
            items += the_plan.row(r1).len();
            r1 += 1;
        }
        let mut offsets = Vec::with_capacity(r1 - r0 + 1);
        offsets.push(0i32);
        let (mut sample, mut skip, mut len) = (Vec::new(), Vec::new(), Vec::new());
        for r in r0..r1 {
            for &i in the_plan.row(r) {
                let p = &pieces[i as usize];
                sample.push((starts[p.batch as usize] + p.row as u64) as i64);
                skip.push(p.skip as i64);
                len.push(p.len as i32);
            }
            offsets.push(sample.len() as i32);
        }
        let list = |values: ArrayRef, item: DataType| -> ArrayRef {
            Arc::new(ListArray::new(
                Arc::new(Field::new_list_field(item, true)),
                OffsetBuffer::new(ScalarBuffer::from(offsets.clone())),
                values,
                None,
            ))
        };
        let columns = vec![
            list(Arc::new(Int64Array::from(sample)), DataType::Int64),
            list(Arc::new(Int64Array::from(skip)), DataType::Int64),
            list(Arc::new(Int32Array::from(len)), DataType::Int32),
        ];
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(arrow_error)?);
        r0 = r1;
    }
    let mut stats = planned.stats;
    let lengths: Vec<u32> = pieces.iter().map(|p| p.len).collect();
    row_stats(&mut stats, the_plan, &lengths, opts);
    Ok(PackPlan {
        schema,
        batches: out,
        stats,
    })
}

/// Makes the packed rows of `plan` (batches of [`plan_schema`], e.g. from [`pack_plan`]) out of
/// `batches`, the input the plan was made for.
///
/// The rows are what `pack` writes for the plan's own input and options, byte for byte; `opts`
/// gives the output shape (`seq_len`, `pad_to`, `pad_id`, threads; strategy and overflow are the
/// plan's). The statistics count the input and the rows made; overflow counts are the plan's to
/// report, so they are 0 here. Every plan entry is checked against the input: the message names
/// the plan row, the entry and the fix. `expected_input` (samples, tokens), the input counts the
/// plan recorded, is checked first, so the wrong input is named as such.
pub fn pack_from_plan(
    schema: &Schema,
    batches: &[RecordBatch],
    plan_batches: &[RecordBatch],
    opts: &PackOptions,
    expected_input: Option<(u64, u64)>,
) -> Result<Packed> {
    opts.validate()?;
    let layout = Layout::of(schema)?;
    let mut views = Vec::with_capacity(batches.len());
    let mut starts = Vec::with_capacity(batches.len());
    let mut first_row = 0usize;
    let mut stats = PackStats::default();
    for b in batches {
        let v = BatchView::new(b, layout, first_row + opts.row_offset)?;
        for r in 0..v.rows {
            let len = v.ids.offsets.len(r);
            stats.input_samples += 1;
            stats.input_tokens += len as u64;
            stats.empty_samples += u64::from(len == 0);
        }
        starts.push(first_row);
        first_row += b.num_rows();
        views.push(v);
    }
    if batches.len() > u32::MAX as usize {
        return Err(PackError::InvalidArgument(
            "too many input batches; concatenate them first".into(),
        ));
    }
    let total_samples = first_row;
    if let Some((samples, tokens)) = expected_input {
        if (samples, tokens) != (stats.input_samples, stats.input_tokens) {
            return Err(PackError::InvalidArgument(format!(
                "the plan was made for {samples} samples of {tokens} tokens, these are {} samples of {} \
                 tokens: pass the samples the plan was made for (or plan again with longmagpie.pack_plan)",
                stats.input_samples, stats.input_tokens
            )));
        }
    }

    let mut pieces: Vec<Piece> = Vec::new();
    let mut row_offsets = vec![0usize];
    let mut plan_row = 0usize;
    for pb in plan_batches {
        let (sample, skip, len) = plan_columns(pb)?;
        for r in 0..pb.num_rows() {
            let bad = |what: String| {
                PackError::InvalidArgument(format!(
                    "plan row {plan_row}: {what}; pass the plan longmagpie.pack_plan made for this input, unchanged \
                     in its lengths"
                ))
            };
            let row = |l: &ListArray| (!l.is_null(r)).then(|| l.value(r));
            let (Some(s), Some(k), Some(l)) = (row(sample), row(skip), row(len)) else {
                return Err(bad("a null list".into()));
            };
            let (s, k, l) = (
                s.as_primitive::<Int64Type>(),
                k.as_primitive::<Int64Type>(),
                l.as_primitive::<Int32Type>(),
            );
            if s.len() != k.len() || s.len() != l.len() {
                return Err(bad(format!(
                    "'{PLAN_SAMPLE_INDEX}', '{PLAN_TOKEN_OFFSET}' and '{PLAN_SEQ_LENGTHS}' have {}, {} and {} entries",
                    s.len(),
                    k.len(),
                    l.len()
                )));
            }
            if s.null_count() + k.null_count() + l.null_count() > 0 {
                return Err(bad("a null entry".into()));
            }
            let mut row_tokens = 0u64;
            for e in 0..s.len() {
                let (index, offset, n) = (s.value(e), k.value(e), l.value(e));
                if index < 0 || index as u64 >= total_samples as u64 {
                    return Err(bad(format!(
                        "entry {e} names sample {index}, but the input has {total_samples} samples"
                    )));
                }
                let index = index as usize;
                let b = starts.partition_point(|&st| st <= index) - 1;
                let row = index - starts[b];
                let sample_len = views[b].ids.offsets.len(row) as u64;
                if n < 1 || offset < 0 || offset as u64 + n as u64 > sample_len {
                    return Err(bad(format!(
                        "entry {e} takes tokens {offset}..{} of sample {index}, which has {sample_len}",
                        offset as i128 + n as i128
                    )));
                }
                row_tokens += super::options::slot(n as u32, opts.document_multiple()) as u64;
                pieces.push(Piece {
                    batch: b as u32,
                    row: row as u32,
                    skip: offset as u32,
                    len: n as u32,
                });
            }
            if row_tokens > opts.seq_len as u64 {
                let padded = opts.pad_documents_to.map_or(String::new(), |m| {
                    format!(" (documents padded to multiples of {m})")
                });
                return Err(PackError::InvalidArgument(format!(
                    "plan row {plan_row}: {row_tokens} tokens{padded} do not fit in seq_len={}; make the rows with \
                     the seq_len the plan was made for (or plan again for this one)",
                    opts.seq_len
                )));
            }
            if pieces.len() >= u32::MAX as usize {
                return Err(PackError::InvalidArgument(
                    "more than 4 billion documents in one plan; materialise it in parts".into(),
                ));
            }
            row_offsets.push(pieces.len());
            plan_row += 1;
        }
    }
    let the_plan = Plan {
        row_offsets,
        items: (0..pieces.len() as u32).collect(),
    };
    super::gather_rows(&views, &pieces, &[], &the_plan, layout, opts, stats)
}

type PlanColumns<'a> = (&'a ListArray, &'a ListArray, &'a ListArray);

fn plan_columns(batch: &RecordBatch) -> Result<PlanColumns<'_>> {
    let get = |name: &str, item: DataType| -> Result<&ListArray> {
        let col = batch
            .column_by_name(name)
            .ok_or_else(|| PackError::MissingColumn {
                column: name.into(),
                hint: "a plan has the columns longmagpie.pack_plan writes (sample_index, token_offset, seq_lengths)"
                    .into(),
            })?;
        let wrong = || PackError::WrongType {
            column: name.into(),
            found: col.data_type().to_string(),
            expected: format!("list<{item}>"),
        };
        let list = col.as_list_opt::<i32>().ok_or_else(wrong)?;
        if list.value_type() != item {
            return Err(wrong());
        }
        Ok(list)
    };
    Ok((
        get(PLAN_SAMPLE_INDEX, DataType::Int64)?,
        get(PLAN_TOKEN_OFFSET, DataType::Int64)?,
        get(PLAN_SEQ_LENGTHS, DataType::Int32)?,
    ))
}

fn arrow_error(e: arrow_schema::ArrowError) -> PackError {
    PackError::InvalidArgument(format!("building the plan's Arrow batch: {e}"))
}
