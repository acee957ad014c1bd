//! Shared by every packer: a row plan over document *pieces* becomes Arrow record batches.
//!
//! Rows are gathered in parallel on the caller's pool; each piece's tokens are copied once, straight
//! into pre-sized buffers, and validated during that copy. Faults are reduced with `min`, so the
//! reported error never depends on the thread count.

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{ArrayRef, Float32Array, Int32Array, Int8Array, ListArray, RecordBatch};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use rayon::prelude::*;

#[cfg(test)]
use super::input::IntValues;
use super::input::{BatchView, Layout, ASSISTANT_MASKS, IGNORE_INDEX, INPUT_IDS, LABELS, SOURCE};
use super::plan::Plan;
use super::{kernels, memory, options, LossWeights};
use crate::error::{PackError, Result};

/// A slice of one input sample placed as one document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Piece {
    /// Index of the input batch (view).
    pub batch: u32,
    /// Row inside that batch.
    pub row: u32,
    /// Tokens of the sample skipped before this piece.
    pub skip: u32,
    /// Tokens in the piece.
    pub len: u32,
}

/// Tokens the overflow policy leaves out; checked, never copied.
pub(crate) type Discarded = Piece;

/// Name of the per-segment kind column of p-mix output.
pub const KIND: &str = "kind";

/// A batch's copy order: `(piece, offset in the batch)`.
type Order = Vec<(u32, usize)>;

/// Pieces per parallel copy task.
const COPY_CHUNK: usize = 64;

/// Bytes per parallel task of the mask fill.
const FILL_CHUNK: usize = 1 << 21;

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

/// Name of the optional per-token loss-weight column (see [`LossWeights`]).
pub const LOSS_WEIGHTS: &str = "loss_weights";

/// Name of the real (unpadded) segment lengths written with `pad_documents_to`: one entry per
/// entry of `seq_lengths`, the document's own tokens (0 for a row's trailing pad segment).
pub const SEQ_LENGTHS_UNPADDED: &str = "seq_lengths_unpadded";

/// The output schema for an input with the given optional columns:
/// `input_ids` list<int32>, `seq_lengths` list<int32>, [`seq_lengths_unpadded` list<int32>],
/// `assistant_masks` list<int8>, [`labels` list<int32>], [`loss_weights` list<float32>],
/// `length` int32, [`source` list<string>].
pub fn output_schema(layout: Layout, loss_weights: bool, unpadded: bool) -> SchemaRef {
    schema_with(layout, false, loss_weights, unpadded)
}

/// [`output_schema`], plus a per-segment `kind` list<string> (`long`/`short`) for p-mix.
pub fn schema_with(
    layout: Layout,
    with_kind: bool,
    loss_weights: bool,
    unpadded: bool,
) -> SchemaRef {
    let mut fields = vec![
        list_field(INPUT_IDS, DataType::Int32),
        list_field("seq_lengths", DataType::Int32),
    ];
    if unpadded {
        fields.push(list_field(SEQ_LENGTHS_UNPADDED, DataType::Int32));
    }
    fields.push(list_field(ASSISTANT_MASKS, DataType::Int8));
    if layout.has_labels {
        fields.push(list_field(LABELS, DataType::Int32));
    }
    if loss_weights {
        fields.push(list_field(LOSS_WEIGHTS, DataType::Float32));
    }
    fields.push(Field::new("length", DataType::Int32, true));
    if layout.has_source {
        fields.push(list_field(SOURCE, DataType::Utf8));
    }
    if with_kind {
        fields.push(list_field(KIND, DataType::Utf8));
    }
    Arc::new(Schema::new(fields))
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

pub(crate) fn check_discarded(views: &[BatchView], discarded: &[Discarded]) -> Result<()> {
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

/// The output buffers of one batch, shared by the copying threads. Every piece writes its own
/// disjoint range `[offset, offset + len)`, so no two threads ever touch the same element.
#[derive(Clone, Copy)]
struct Out {
    ids: *mut i32,
    mask: *mut i8,
    labels: *mut i32,
    /// The mask is already written (all ones): pieces leave it alone.
    mask_done: bool,
}

// SAFETY: the pointers are only used to build slices over disjoint ranges (see `Out`), while the
// buffers they point into are alive and not otherwise borrowed (`Gather::batch`).
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

/// Everything the gather needs: inputs, pieces, the row plan and the output shape.
pub(crate) struct Gather<'a> {
    /// Views of the input batches.
    pub views: &'a [BatchView<'a>],
    /// Documents to place.
    pub pieces: &'a [Piece],
    /// Rows of piece indices, each row in output order.
    pub plan: &'a Plan,
    /// Row capacity in real tokens (sizes the output batches).
    pub seq_len: usize,
    /// Pad rows to this many tokens.
    pub pad_to: Option<usize>,
    /// Padding token id.
    pub pad_id: i32,
    /// Optional columns present.
    pub layout: Layout,
    /// Output schema (from [`schema_with`]).
    pub schema: SchemaRef,
    /// For p-mix: whether each view holds long samples (emits `kind`).
    pub long_views: Option<&'a [bool]>,
    /// Write `loss_weights` of this scheme.
    pub loss_weights: Option<LossWeights>,
    /// Pad each document to a multiple of this many tokens (and write `seq_lengths_unpadded`).
    pub pad_documents_to: Option<u32>,
}

impl Gather<'_> {
    /// Tokens piece `i` occupies in its row (its length, padded to `pad_documents_to`).
    #[inline]
    fn slot(&self, i: u32) -> usize {
        options::slot(self.pieces[i as usize].len, self.pad_documents_to) as usize
    }

    /// Tokens the documents of plan row `r` occupy (the row before `pad_to`).
    fn used(&self, r: usize) -> usize {
        self.plan.row(r).iter().map(|&i| self.slot(i)).sum()
    }

    /// Gathers every row into record batches of at most [`rows_per_batch`] rows.
    pub fn run(&self) -> Result<Vec<RecordBatch>> {
        self.run_in(rows_per_batch(self.pad_to.unwrap_or(self.seq_len)), true)
    }

    /// [`run`](Self::run) with `per_batch` rows per batch; `by_index` off makes every batch sort
    /// its own copy order (the path p-mix takes), so tests can compare both orders' bytes.
    fn run_in(&self, per_batch: usize, by_index: bool) -> Result<Vec<RecordBatch>> {
        let rows = self.plan.rows();
        let mut out = Vec::with_capacity(rows.div_ceil(per_batch));
        let mut orders = by_index
            .then(|| self.input_orders(per_batch))
            .flatten()
            .map(Vec::into_iter);
        let mut r0 = 0;
        while r0 < rows {
            let r1 = (r0 + per_batch).min(rows);
            let order = orders.as_mut().and_then(Iterator::next);
            out.push(self.batch(r0..r1, order)?);
            r0 = r1;
        }
        Ok(out)
    }

    /// Copy orders of every output batch, when the pieces are made in input order (`pack`'s are):
    /// each batch's `(piece, offset in the batch)` by ascending piece index, i.e. by input
    /// position, from one pass over the pieces (a bucket sort by batch), where a sort per batch
    /// took about 5 % of the gather on 380 k short documents. `None` when the pieces are in another
    /// order (p-mix makes them in row order): each batch then sorts its own.
    fn input_orders(&self, per_batch: usize) -> Option<Vec<Order>> {
        let (pieces, the_plan) = (self.pieces, self.plan);
        let in_order = pieces
            .windows(2)
            .all(|w| (w[0].batch, w[0].row, w[0].skip) < (w[1].batch, w[1].row, w[1].skip));
        if !in_order {
            return None;
        }
        let rows = the_plan.rows();
        // Placement of every piece: its output batch and its offset there (u32::MAX: unplaced).
        let mut place = vec![(u32::MAX, 0usize); pieces.len()];
        let mut sizes = Vec::with_capacity(rows.div_ceil(per_batch));
        let mut pos = 0usize;
        for r in 0..rows {
            let b = r / per_batch;
            if b == sizes.len() {
                sizes.push(0usize);
                pos = 0;
            }
            let row = the_plan.row(r);
            sizes[b] += row.len();
            let start = pos;
            for &i in row {
                place[i as usize] = (b as u32, pos);
                pos += self.slot(i);
            }
            // `pad_to` pads the row after its documents (as `batch` lays it out).
            if let Some(p) = self.pad_to {
                pos = pos.max(start + p);
            }
        }
        let mut orders: Vec<Order> = sizes.into_iter().map(Vec::with_capacity).collect();
        for (i, &(b, offset)) in place.iter().enumerate() {
            if b != u32::MAX {
                orders[b as usize].push((i as u32, offset));
            }
        }
        Some(orders)
    }

    /// The copy order of a batch's pieces, `(piece, offset in the batch)` by input position
    /// (batch, row, skip) (`order` when [`input_orders`](Self::input_orders) made it), and the
    /// padding ranges `(offset, len)` of its rows and documents.
    fn order_and_pads(
        &self,
        rows: std::ops::Range<usize>,
        lengths: &[i32],
        order: Option<Order>,
    ) -> (Order, Vec<(usize, usize)>) {
        let (pieces, the_plan) = (self.pieces, self.plan);
        let sorted = order.is_some();
        let mut order = order.unwrap_or_default();
        let mut pads: Vec<(usize, usize)> = Vec::new();
        let mut start = 0usize;
        for (k, r) in rows.enumerate() {
            let mut pos = start;
            for &i in the_plan.row(r) {
                if !sorted {
                    order.push((i, pos));
                }
                let (len, slot) = (pieces[i as usize].len as usize, self.slot(i));
                if slot > len {
                    pads.push((pos + len, slot - len));
                }
                pos += slot;
            }
            let end = start + lengths[k] as usize;
            if pos < end {
                pads.push((pos, end - pos));
            }
            start = end;
        }
        if !sorted {
            order.sort_unstable_by_key(|&(i, _)| {
                let p = &pieces[i as usize];
                (p.batch, p.row, p.skip)
            });
        }
        (order, pads)
    }

    fn batch(&self, rows: std::ops::Range<usize>, order: Option<Order>) -> Result<RecordBatch> {
        let (views, pieces, the_plan, layout) = (self.views, self.pieces, self.plan, self.layout);
        // Row lengths and offsets.
        let mut row_offsets = Vec::with_capacity(rows.len() + 1);
        row_offsets.push(0i32);
        let mut total = 0usize;
        let mut seg_offsets = Vec::with_capacity(rows.len() + 1);
        seg_offsets.push(0i32);
        let mut seg_lengths = Vec::new();
        let mut unpadded = self.pad_documents_to.map(|_| Vec::new());
        let mut lengths = Vec::with_capacity(rows.len());
        for r in rows.clone() {
            let mut row_len = 0usize;
            for &i in the_plan.row(r) {
                let l = self.slot(i);
                seg_lengths.push(l as i32);
                if let Some(u) = unpadded.as_mut() {
                    u.push(pieces[i as usize].len as i32);
                }
                row_len += l;
            }
            if let Some(p) = self.pad_to {
                if p > row_len {
                    seg_lengths.push((p - row_len) as i32);
                    if let Some(u) = unpadded.as_mut() {
                        u.push(0);
                    }
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

        // Copy in input order, not row order: a row's documents lie scattered over the input
        // (best fit mixes them), and reading them in order lets the hardware prefetchers and the
        // kernel's read-ahead of memory-mapped input work; the writes land in their fixed places.
        let (order, pads) = self.order_and_pads(rows.clone(), &lengths, order);
        // Without a mask or labels in any input, every document token has mask 1: one sequential
        // fill of the whole buffer (pads are zeroed below) instead of one small fill per document.
        let ones = views.iter().all(|v| v.mask.is_none() && v.labels.is_none());
        if ones {
            mask.par_chunks_mut(FILL_CHUNK).for_each(|c| c.fill(1));
        }
        let out = Out {
            ids: ids.as_mut_ptr(),
            mask: mask.as_mut_ptr(),
            labels: labels
                .as_mut()
                .map_or(std::ptr::null_mut(), |l| l.as_mut_ptr()),
            mask_done: ones,
        };
        let worst = order
            .par_chunks(COPY_CHUNK)
            .filter_map(|chunk| {
                let mut worst: Option<Fault> = None;
                for &(i, offset) in chunk {
                    let p = &pieces[i as usize];
                    // SAFETY: `offset..offset + p.len` lies inside the buffers (row offsets were
                    // summed from the same lengths) and belongs to this piece alone.
                    worst = worst.min_some(unsafe { self.copy_piece(p, out, offset) });
                }
                worst
            })
            .min();
        if let Some(f) = worst {
            return Err(f.into_error());
        }
        for (offset, n) in pads {
            ids[offset..offset + n].fill(self.pad_id);
            mask[offset..offset + n].fill(0);
            if let Some(l) = labels.as_mut() {
                l[offset..offset + n].fill(IGNORE_INDEX);
            }
        }

        let weights = self.loss_weights.map(|scheme| {
            loss_weights(
                scheme,
                &row_offsets,
                &seg_offsets,
                &seg_lengths,
                &mask,
                labels.as_deref(),
            )
        });

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
        ];
        if let Some(u) = unpadded {
            columns.push(list(
                seg_offsets.clone(),
                Arc::new(Int32Array::from(u)),
                DataType::Int32,
            ));
        }
        columns.push(list(
            row_offsets.clone(),
            Arc::new(Int8Array::from(mask)),
            DataType::Int8,
        ));
        if let Some(labels) = labels {
            columns.push(list(
                row_offsets.clone(),
                Arc::new(Int32Array::from(labels)),
                DataType::Int32,
            ));
        }
        if let Some(weights) = weights {
            columns.push(list(
                row_offsets,
                Arc::new(Float32Array::from(weights)),
                DataType::Float32,
            ));
        }
        columns.push(Arc::new(Int32Array::from(lengths)));
        if layout.has_source {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for r in rows.clone() {
                for &i in the_plan.row(r) {
                    let p = &pieces[i as usize];
                    let v = &views[p.batch as usize];
                    let s = v.source.as_ref().and_then(|s| s.get(p.row as usize));
                    builder.values().append_option(s);
                }
                if self.pad_to.is_some_and(|t| t > self.used(r)) {
                    builder.values().append_null();
                }
                builder.append(true);
            }
            columns.push(Arc::new(builder.finish()));
        }
        if let Some(is_long) = self.long_views {
            let mut builder = ListBuilder::new(StringBuilder::new());
            for r in rows {
                for &i in the_plan.row(r) {
                    let long = is_long[pieces[i as usize].batch as usize];
                    builder
                        .values()
                        .append_value(if long { "long" } else { "short" });
                }
                if self.pad_to.is_some_and(|t| t > self.used(r)) {
                    builder.values().append_value("pad");
                }
                builder.append(true);
            }
            columns.push(Arc::new(builder.finish()));
        }
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| PackError::InvalidArgument(format!("internal: building output: {e}")))
    }

    /// Copies one piece (ids, labels, mask) to `offset` in the batch buffers.
    ///
    /// # Safety
    /// `offset..offset + p.len` must lie inside the buffers of `out` and be written by no one else
    /// while this runs.
    unsafe fn copy_piece(&self, p: &Piece, out: Out, offset: usize) -> Option<Fault> {
        let v = &self.views[p.batch as usize];
        let (r, n) = (p.row as usize, p.len as usize);
        let dst_ids = std::slice::from_raw_parts_mut(out.ids.add(offset), n);
        let dst_mask = std::slice::from_raw_parts_mut(out.mask.add(offset), n);
        let s = v.ids.offsets.start(r) + p.skip as usize;
        let mut worst = fault(v, p, 0, kernels::copy_ids(&v.ids.values, s, dst_ids));
        if !out.labels.is_null() {
            let l = v.labels.as_ref().expect("layout says labels");
            let dst = std::slice::from_raw_parts_mut(out.labels.add(offset), n);
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
            None if v.labels.is_none() && !out.mask_done => dst_mask.fill(1),
            None => {}
        }
        worst
    }
}

/// The per-token weights of one output batch, rows in parallel: row `r` spans
/// `row_offsets[r]..row_offsets[r + 1]` of `mask` (and `labels`) and holds the segments
/// `seg_lengths[seg_offsets[r]..seg_offsets[r + 1]]` (documents, then a pad), end to end. See
/// [`LossWeights`] for the rule.
fn loss_weights(
    scheme: LossWeights,
    row_offsets: &[i32],
    seg_offsets: &[i32],
    seg_lengths: &[i32],
    mask: &[i8],
    labels: Option<&[i32]>,
) -> Vec<f32> {
    let mut weights = memory::zeroed_vec::<f32>(mask.len());
    let mut rows: Vec<(usize, &mut [f32])> =
        Vec::with_capacity(row_offsets.len().saturating_sub(1));
    let mut rest = weights.as_mut_slice();
    for r in 0..row_offsets.len().saturating_sub(1) {
        let n = (row_offsets[r + 1] - row_offsets[r]) as usize;
        let (row, tail) = rest.split_at_mut(n);
        rows.push((r, row));
        rest = tail;
    }
    rows.into_par_iter().for_each(|(r, row)| {
        let base = row_offsets[r] as usize;
        let segments = &seg_lengths[seg_offsets[r] as usize..seg_offsets[r + 1] as usize];
        let row_labels = labels.map(|l| &l[base..base + row.len()]);
        segment_weights(
            scheme,
            segments,
            &mask[base..base + row.len()],
            row_labels,
            row,
        );
    });
    weights
}

/// The weights of one row, segment by segment: one pass writes 1.0 on trained tokens (and counts
/// them), a second scales them; both are straight loops over slices, which the compiler vectorises.
fn segment_weights(
    scheme: LossWeights,
    segments: &[i32],
    mask: &[i8],
    labels: Option<&[i32]>,
    out: &mut [f32],
) {
    let mut start = 0usize;
    for &n in segments {
        let end = start + n as usize;
        // The first token of a document is predicted by no token of it: it stays 0.
        let first = (start + 1).min(end);
        let w = &mut out[first..end];
        let m = &mask[first..end];
        let mut count = 0.0f32;
        match labels {
            Some(l) => {
                for ((w, &m), &l) in w.iter_mut().zip(m).zip(&l[first..end]) {
                    let t = f32::from(u8::from(m == 1 && l != IGNORE_INDEX));
                    *w = t;
                    count += t;
                }
            }
            None => {
                for (w, &m) in w.iter_mut().zip(m) {
                    let t = f32::from(u8::from(m == 1));
                    *w = t;
                    count += t;
                }
            }
        }
        if scheme == LossWeights::PerSequence && count > 0.0 {
            let scale = 1.0 / count;
            for w in w.iter_mut() {
                *w *= scale;
            }
        }
        start = end;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int32Type, Int8Type};
    use arrow_array::{ArrayRef, Int32Array, Int8Array, ListArray, RecordBatch};
    use arrow_buffer::{OffsetBuffer, ScalarBuffer};
    use arrow_schema::{Field, Schema};
    use proptest::prelude::*;

    use super::*;
    use crate::pack::plan::{plan, Strategy};

    fn list(values: ArrayRef, lengths: &[usize]) -> ArrayRef {
        let mut offsets = vec![0i32];
        for &n in lengths {
            offsets.push(offsets[offsets.len() - 1] + n as i32);
        }
        Arc::new(ListArray::new(
            Arc::new(Field::new_list_field(values.data_type().clone(), true)),
            OffsetBuffer::new(ScalarBuffer::from(offsets)),
            values,
            None,
        ))
    }

    /// One input batch: ids encode (sample, position); an optional 0/1 mask, or labels with -100
    /// on every third token.
    fn input(lengths: &[usize], columns: usize) -> RecordBatch {
        let ids: Vec<i32> = lengths
            .iter()
            .enumerate()
            .flat_map(|(s, &n)| (0..n).map(move |p| (s * 1000 + p) as i32))
            .collect();
        let n = ids.len();
        let mut cols = vec![("input_ids", list(Arc::new(Int32Array::from(ids)), lengths))];
        if columns == 1 {
            let m: Vec<i8> = (0..n).map(|k| (k % 2) as i8).collect();
            cols.push((ASSISTANT_MASKS, list(Arc::new(Int8Array::from(m)), lengths)));
        } else if columns == 2 {
            let l: Vec<i32> = (0..n)
                .map(|k| if k % 3 == 0 { IGNORE_INDEX } else { k as i32 })
                .collect();
            cols.push((LABELS, list(Arc::new(Int32Array::from(l)), lengths)));
        }
        let fields: Vec<Field> = cols
            .iter()
            .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            cols.into_iter().map(|(_, a)| a).collect(),
        )
        .expect("test batch")
    }

    /// Rows of the output as (ids, mask) lists, over all batches.
    fn rows_of(batches: &[RecordBatch]) -> Vec<(Vec<i32>, Vec<i8>)> {
        let mut out = Vec::new();
        for b in batches {
            let ids = b.column_by_name(INPUT_IDS).expect("ids").as_list::<i32>();
            let mask = b
                .column_by_name(ASSISTANT_MASKS)
                .expect("mask")
                .as_list::<i32>();
            for r in 0..b.num_rows() {
                out.push((
                    ids.value(r).as_primitive::<Int32Type>().values().to_vec(),
                    mask.value(r).as_primitive::<Int8Type>().values().to_vec(),
                ));
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// The copy orders (pieces by index, bucketed per batch; or sorted per batch) and the
        /// mask written in one fill give exactly the bytes of the plain row-by-row copy, for any
        /// batch size, thread count, padding and optional columns.
        #[test]
        fn copy_orders_give_the_plain_copy(
            lengths in proptest::collection::vec(1usize..40, 0..70),
            seq_len in 40usize..120,
            per_batch in 1usize..6,
            columns in 0usize..3,
            pad in 0usize..3,
            threads in 1usize..4,
        ) {
            let b = input(&lengths, columns);
            let layout = Layout::of(&b.schema()).expect("layout");
            let views = vec![BatchView::new(&b, layout, 0).expect("view")];
            let pieces: Vec<Piece> = lengths
                .iter()
                .enumerate()
                .map(|(r, &n)| Piece { batch: 0, row: r as u32, skip: 0, len: n as u32 })
                .collect();
            let lens: Vec<u32> = lengths.iter().map(|&n| n as u32).collect();
            let the_plan = plan(&lens, seq_len as u32, Strategy::Bfd);
            let pad_to = (pad == 1).then_some(seq_len + 3);
            let multiple = (pad == 2).then_some(1u32);
            let gather = Gather {
                views: &views,
                pieces: &pieces,
                plan: &the_plan,
                seq_len,
                pad_to,
                pad_id: 7,
                layout,
                schema: output_schema(layout, false, multiple.is_some()),
                long_views: None,
                loss_weights: None,
                pad_documents_to: multiple,
            };
            let pool = options::thread_pool(Some(threads)).expect("pool");
            let by_index = pool.install(|| gather.run_in(per_batch, true)).expect("gathers");
            let sorted = pool.install(|| gather.run_in(per_batch, false)).expect("gathers");
            prop_assert_eq!(&by_index, &sorted);
            // The plain copy, row by row.
            let ids = views[0].ids.values.clone();
            let flat = |v: &IntValues, k: usize| -> i64 {
                match v {
                    IntValues::I32(x) => x[k] as i64,
                    IntValues::I8(x) => x[k] as i64,
                    _ => unreachable!("test columns are int32 and int8"),
                }
            };
            let mut want = Vec::new();
            for r in 0..the_plan.rows() {
                let (mut row_ids, mut row_mask) = (Vec::new(), Vec::new());
                for &i in the_plan.row(r) {
                    let p = pieces[i as usize];
                    let s = views[0].ids.offsets.start(p.row as usize);
                    for k in s..s + p.len as usize {
                        row_ids.push(flat(&ids, k) as i32);
                        row_mask.push(match (&views[0].mask, &views[0].labels) {
                            (Some(m), _) => flat(&m.values, k) as i8,
                            (None, Some(l)) => i8::from(flat(&l.values, k) != IGNORE_INDEX as i64),
                            (None, None) => 1,
                        });
                    }
                }
                if let Some(t) = pad_to {
                    row_mask.resize(t, 0);
                    row_ids.resize(t, 7);
                }
                want.push((row_ids, row_mask));
            }
            prop_assert_eq!(rows_of(&by_index), want);
            prop_assert_eq!(by_index.len(), the_plan.rows().div_ceil(per_batch));
        }
    }
}
