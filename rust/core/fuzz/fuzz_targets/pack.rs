//! Fuzz target `pack`: arbitrary samples through the whole pipeline, checked against a model.
//!
//! From the fuzzer's bytes: up to 256 samples (lengths 0..=2*seq_len+2, biased so that empty,
//! short and too-long samples are all common), seq_len in 1..=300, strategy, overflow, pad_to, pad_id, the Arrow types
//! of `input_ids` / `assistant_masks` / `labels` (list or large_list; mask and labels optional),
//! 1-3 input batches (independent, or slices of one batch so offsets do not start at 0), rare
//! injected faults (negative or too-large id, mask value 2, label -1, null row) and rare invalid
//! options. Every token id encodes its sample and position, so misplacements are visible.
//!
//! Checked: no panic; an error exactly when one is due, and the right one (invalid option, null
//! row, first too-long row under overflow=error, an injected bad value); on success every row has
//! at most seq_len real tokens (exactly pad_to with padding), seq_lengths add up to the row length,
//! each sample's tokens come out exactly once, in order, with their mask and labels, cut as the
//! overflow policy says; documents within a row are in input order; sequential is next-fit and
//! bfd/ffd leave at most one row half full; all statistics agree with the output; and (on a coin
//! flip) the result does not depend on the thread count.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, Int8Array, LargeListArray, ListArray,
    RecordBatch, UInt32Array, UInt8Array,
};
use arrow_buffer::{NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{Field, Schema, SchemaRef};
use libfuzzer_sys::fuzz_target;
use longmagpie_core::{pack, Overflow, PackError, PackOptions, Packed, Strategy};

const MAX_SAMPLES: usize = 256;
/// Positions per sample in the id encoding (lengths stay below 2 * 300 + 3).
const STRIDE: i64 = 1024;
const BIG_PAD_ID: i32 = 1 << 24;
const IGNORE: i32 = -100;

#[derive(Arbitrary, Debug)]
struct RawSample {
    len: u16,
    /// 251: bad id, 252: bad mask, 253: bad label, 254: null row; anything else: clean.
    defect: u8,
    at: u16,
    seed: u8,
}

#[derive(Arbitrary, Debug)]
struct Case {
    seq_len: u16,
    strategy: u8,
    overflow: u8,
    pad: Option<u8>,
    pad_id: u8,
    threads: u8,
    id_type: u8,
    mask_type: u8,
    labels_type: u8,
    batching: u8,
    cuts: (u16, u16),
    compare_threads: bool,
    samples: Vec<RawSample>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    Id(usize),
    Mask(usize),
    Label(usize),
    Null,
}

#[derive(Debug)]
struct Sample {
    len: usize,
    defect: Defect,
    seed: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IdType {
    I32,
    I64,
    U32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MaskType {
    I8,
    I32,
    U8,
    Bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LabelType {
    I32,
    I64,
}

#[derive(Debug)]
struct Setup {
    samples: Vec<Sample>,
    opts: PackOptions,
    id_type: IdType,
    large: bool,
    mask: Option<MaskType>,
    labels: Option<LabelType>,
}

fn encode(sample: usize, pos: usize) -> i64 {
    1 + sample as i64 * STRIDE + pos as i64
}

fn mask_value(s: &Sample, pos: usize) -> i8 {
    ((s.seed as usize + pos / 3) % 2) as i8
}

fn label_value(i: usize, s: &Sample, pos: usize) -> i32 {
    if (s.seed as usize + pos).is_multiple_of(3) {
        IGNORE
    } else {
        encode(i, pos) as i32
    }
}

/// The value stored at (sample, pos) of `input_ids`, with the injected fault if any.
fn stored_id(setup: &Setup, i: usize, pos: usize) -> i64 {
    let s = &setup.samples[i];
    if s.defect == Defect::Id(pos) {
        match setup.id_type {
            IdType::I32 => -1 - (pos as i64),
            IdType::I64 if pos.is_multiple_of(2) => -1 - (pos as i64),
            IdType::I64 | IdType::U32 => i32::MAX as i64 + 1 + pos as i64,
        }
    } else {
        encode(i, pos)
    }
}

fn stored_mask(setup: &Setup, i: usize, pos: usize) -> i64 {
    let s = &setup.samples[i];
    match (s.defect, setup.mask) {
        (Defect::Mask(p), Some(MaskType::I8 | MaskType::I32)) if p == pos && pos % 2 == 1 => -1,
        (Defect::Mask(p), Some(MaskType::I8 | MaskType::I32 | MaskType::U8)) if p == pos => 2,
        _ => mask_value(s, pos) as i64,
    }
}

fn stored_label(setup: &Setup, i: usize, pos: usize) -> i64 {
    let s = &setup.samples[i];
    if s.defect == Defect::Label(pos) {
        -1 - (pos as i64 % 50)
    } else {
        label_value(i, s, pos) as i64
    }
}

fn setup(case: &Case) -> Setup {
    let seq_len = case.seq_len as usize % 300 + 1;
    let samples: Vec<Sample> = case
        .samples
        .iter()
        .take(MAX_SAMPLES)
        .map(|r| {
            // Top two bits pick a range, so rows of many short documents are common too.
            let raw = (r.len & 0x3fff) as usize;
            let len = match r.len >> 14 {
                0 => raw % (seq_len / 4 + 2),
                1 => raw % (seq_len + 1),
                _ => raw % (2 * seq_len + 3),
            };
            let at = if len > 0 { r.at as usize % len } else { 0 };
            let defect = match r.defect {
                251 if len > 0 => Defect::Id(at),
                252 if len > 0 => Defect::Mask(at),
                253 if len > 0 => Defect::Label(at),
                254 => Defect::Null,
                _ => Defect::None,
            };
            Sample {
                len,
                defect,
                seed: r.seed,
            }
        })
        .collect();
    let mut opts = PackOptions::new(seq_len);
    opts.strategy =
        [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][case.strategy as usize % 3];
    opts.overflow = [
        Overflow::Error,
        Overflow::Truncate,
        Overflow::Drop,
        Overflow::Split,
    ][case.overflow as usize % 4];
    opts.pad_to = case.pad.map(|p| seq_len + p as usize % 8);
    opts.pad_id = match case.pad_id % 16 {
        15 => -1, // invalid
        k if k % 2 == 0 => 0,
        _ => BIG_PAD_ID,
    };
    opts.num_threads = match case.threads % 16 {
        15 => Some(0), // invalid
        k => Some(1 + k as usize % 2),
    };
    let id_type = [IdType::I32, IdType::I64, IdType::U32][case.id_type as usize % 3];
    let large = case.id_type / 3 % 2 == 1;
    let mask = match case.mask_type % 5 {
        0 => None,
        1 => Some(MaskType::I8),
        2 => Some(MaskType::I32),
        3 => Some(MaskType::U8),
        _ => Some(MaskType::Bool),
    };
    let labels = match case.labels_type % 3 {
        0 => None,
        1 => Some(LabelType::I32),
        _ => Some(LabelType::I64),
    };
    Setup {
        samples,
        opts,
        id_type,
        large,
        mask,
        labels,
    }
}

fn list(values: ArrayRef, offsets: &[usize], nulls: Option<NullBuffer>, large: bool) -> ArrayRef {
    let field = Arc::new(Field::new_list_field(values.data_type().clone(), true));
    if large {
        let o: Vec<i64> = offsets.iter().map(|&x| x as i64).collect();
        Arc::new(LargeListArray::new(
            field,
            OffsetBuffer::new(ScalarBuffer::from(o)),
            values,
            nulls,
        ))
    } else {
        let o: Vec<i32> = offsets.iter().map(|&x| x as i32).collect();
        Arc::new(ListArray::new(
            field,
            OffsetBuffer::new(ScalarBuffer::from(o)),
            values,
            nulls,
        ))
    }
}

/// One batch holding samples `range` (global indices, so ids and faults are the global ones).
fn build_batch(setup: &Setup, range: std::ops::Range<usize>) -> RecordBatch {
    let mut offsets = vec![0usize];
    let (mut ids, mut masks, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut valid = Vec::new();
    for i in range {
        let s = &setup.samples[i];
        for pos in 0..s.len {
            ids.push(stored_id(setup, i, pos));
            masks.push(stored_mask(setup, i, pos));
            labels.push(stored_label(setup, i, pos));
        }
        offsets.push(ids.len());
        valid.push(s.defect != Defect::Null);
    }
    let nulls = valid
        .iter()
        .any(|&v| !v)
        .then(|| NullBuffer::from(valid.clone()));
    let id_values: ArrayRef = match setup.id_type {
        IdType::I32 => Arc::new(Int32Array::from_iter_values(ids.iter().map(|&v| v as i32))),
        IdType::I64 => Arc::new(Int64Array::from(ids)),
        IdType::U32 => Arc::new(UInt32Array::from_iter_values(ids.iter().map(|&v| v as u32))),
    };
    let mut cols = vec![("input_ids", list(id_values, &offsets, nulls, setup.large))];
    if let Some(t) = setup.mask {
        let values: ArrayRef = match t {
            MaskType::I8 => Arc::new(Int8Array::from_iter_values(masks.iter().map(|&v| v as i8))),
            MaskType::I32 => Arc::new(Int32Array::from_iter_values(
                masks.iter().map(|&v| v as i32),
            )),
            MaskType::U8 => Arc::new(UInt8Array::from_iter_values(masks.iter().map(|&v| v as u8))),
            MaskType::Bool => Arc::new(BooleanArray::from(
                masks.iter().map(|&v| v != 0).collect::<Vec<bool>>(),
            )),
        };
        // The mask keeps list (not large_list) whatever the ids use: mixing is allowed.
        cols.push(("assistant_masks", list(values, &offsets, None, false)));
    }
    if let Some(t) = setup.labels {
        let values: ArrayRef = match t {
            LabelType::I32 => Arc::new(Int32Array::from_iter_values(
                labels.iter().map(|&v| v as i32),
            )),
            LabelType::I64 => Arc::new(Int64Array::from(labels)),
        };
        cols.push(("labels", list(values, &offsets, None, setup.large)));
    }
    let schema = Schema::new(
        cols.iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(Arc::new(schema), cols.into_iter().map(|(_, a)| a).collect())
        .expect("fuzz input batch")
}

/// The input batches: 1-3 parts, built separately or sliced from one batch; sometimes none.
fn batches(setup: &Setup, case: &Case) -> (SchemaRef, Vec<RecordBatch>) {
    let n = setup.samples.len();
    let whole = build_batch(setup, 0..n);
    let schema = whole.schema();
    if n == 0 && case.batching.is_multiple_of(7) {
        return (schema, vec![]);
    }
    let parts = 1 + (case.batching as usize / 2) % 3;
    let mut cuts = vec![
        case.cuts.0 as usize % (n + 1),
        case.cuts.1 as usize % (n + 1),
    ];
    cuts.truncate(parts - 1);
    cuts.sort_unstable();
    cuts.insert(0, 0);
    cuts.push(n);
    let out = cuts
        .windows(2)
        .map(|w| {
            if case.batching.is_multiple_of(2) {
                whole.slice(w[0], w[1] - w[0])
            } else {
                build_batch(setup, w[0]..w[1])
            }
        })
        .collect();
    (schema, out)
}

/// Faults that must surface as `BadValue`: (column, row, position, value).
fn faults(setup: &Setup) -> Vec<(&'static str, usize, usize, i128)> {
    let mut out = Vec::new();
    for (i, s) in setup.samples.iter().enumerate() {
        match s.defect {
            Defect::Id(p) => out.push(("input_ids", i, p, stored_id(setup, i, p) as i128)),
            Defect::Mask(p) if matches!(setup.mask, Some(t) if t != MaskType::Bool) => {
                out.push(("assistant_masks", i, p, stored_mask(setup, i, p) as i128))
            }
            Defect::Label(p) if setup.labels.is_some() => {
                out.push(("labels", i, p, stored_label(setup, i, p) as i128))
            }
            _ => {}
        }
    }
    out
}

fn check_error(setup: &Setup, err: Option<&PackError>) {
    let o = &setup.opts;
    let invalid_option = o.pad_id < 0 || o.num_threads == Some(0);
    if invalid_option {
        assert!(
            matches!(err, Some(PackError::InvalidArgument(_))),
            "invalid option accepted or misreported: {err:?}"
        );
        return;
    }
    if let Some(row) = setup.samples.iter().position(|s| s.defect == Defect::Null) {
        let want = PackError::Null {
            column: "input_ids".into(),
            row,
            detail: String::new(),
        };
        assert_eq!(err, Some(&want), "null row");
        return;
    }
    if o.overflow == Overflow::Error {
        if let Some(row) = setup.samples.iter().position(|s| s.len > o.seq_len) {
            let want = PackError::TooLong {
                row,
                length: setup.samples[row].len,
                seq_len: o.seq_len,
            };
            assert_eq!(err, Some(&want), "first too-long row");
            return;
        }
    }
    let faults = faults(setup);
    if faults.is_empty() {
        assert!(err.is_none(), "unexpected error: {err:?}");
        return;
    }
    match err {
        Some(PackError::BadValue {
            column,
            row,
            position,
            value,
            ..
        }) => assert!(
            faults.contains(&(column.as_str(), *row, *position, *value)),
            "reported {column}[{row}][{position}] = {value} is not an injected fault: {faults:?}"
        ),
        other => panic!("faults {faults:?} not reported: {other:?}"),
    }
}

/// A document found in the output: (sample, first position, length).
type Doc = (usize, usize, usize);

fn expected_pieces(s: &Sample, o: &PackOptions) -> Vec<(usize, usize)> {
    let (len, cap) = (s.len, o.seq_len);
    if len == 0 {
        return vec![];
    }
    if len <= cap {
        return vec![(0, len)];
    }
    match o.overflow {
        Overflow::Error => unreachable!("too-long sample under overflow=error packed"),
        Overflow::Truncate => vec![(0, cap)],
        Overflow::Drop => vec![],
        Overflow::Split => (0..len)
            .step_by(cap)
            .map(|p| (p, cap.min(len - p)))
            .collect(),
    }
}

fn check_output(setup: &Setup, packed: &Packed) {
    let o = &setup.opts;
    let cap = o.seq_len;
    let n = setup.samples.len();
    let mut names = vec!["input_ids", "seq_lengths", "assistant_masks"];
    if setup.labels.is_some() {
        names.push("labels");
    }
    names.push("length");
    let got: Vec<&str> = packed
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(got, names, "output columns");

    let mut pieces: Vec<Vec<(usize, usize)>> = vec![vec![]; n];
    let mut row_docs: Vec<Vec<Doc>> = vec![];
    let mut row_real: Vec<usize> = vec![];
    let mut pad_tokens = 0usize;
    for b in &packed.batches {
        assert_eq!(b.schema(), packed.schema, "batch schema");
        let col = |name: &str| b.column_by_name(name).expect("output column");
        let ids = col("input_ids").as_list::<i32>();
        let segs = col("seq_lengths").as_list::<i32>();
        let masks = col("assistant_masks").as_list::<i32>();
        let labels = setup
            .labels
            .map(|_| b.column_by_name("labels").expect("labels").as_list::<i32>());
        let lengths = col("length").as_primitive::<Int32Type>();
        for r in 0..b.num_rows() {
            let row_ids = ids.value(r);
            let row_ids = row_ids.as_primitive::<Int32Type>().values();
            let row_mask = masks.value(r);
            let row_mask = row_mask.as_primitive::<Int8Type>().values();
            let row_labels = labels.map(|l| l.value(r));
            let row_labels = row_labels
                .as_ref()
                .map(|l| l.as_primitive::<Int32Type>().values());
            let row_segs = segs.value(r);
            let row_segs = row_segs.as_primitive::<Int32Type>().values();
            let length = lengths.value(r) as usize;
            assert_eq!(row_ids.len(), length, "ids vs length");
            assert_eq!(row_mask.len(), length, "mask vs length");
            if let Some(l) = row_labels {
                assert_eq!(l.len(), length, "labels vs length");
            }
            assert!(
                row_segs.iter().all(|&d| d > 0),
                "empty segment: {row_segs:?}"
            );
            let total: usize = row_segs.iter().map(|&d| d as usize).sum();
            assert_eq!(total, length, "seq_lengths sum to the row length");
            match o.pad_to {
                Some(p) => assert_eq!(length, p, "padded row length"),
                None => assert!(length <= cap, "row of {length} > seq_len {cap}"),
            }
            let mut docs = vec![];
            let mut pos = 0usize;
            let mut real = 0usize;
            let mut row_pad = 0usize;
            for (k, &d) in row_segs.iter().enumerate() {
                let d = d as usize;
                let span = pos..pos + d;
                let doc_ids = &row_ids[span.clone()];
                if o.pad_to.is_some() && k + 1 == row_segs.len() && doc_ids[0] == o.pad_id {
                    assert!(doc_ids.iter().all(|&t| t == o.pad_id), "pad ids");
                    assert!(row_mask[span.clone()].iter().all(|&m| m == 0), "pad mask");
                    if let Some(l) = row_labels {
                        assert!(l[span].iter().all(|&x| x == IGNORE), "pad labels");
                    }
                    row_pad += d;
                    pad_tokens += d;
                    pos += d;
                    continue;
                }
                let first = doc_ids[0] as i64 - 1;
                assert!(first >= 0, "id {} decodes to nothing", doc_ids[0]);
                let (i, p0) = ((first / STRIDE) as usize, (first % STRIDE) as usize);
                assert!(i < n, "id {} names sample {i} of {n}", doc_ids[0]);
                let s = &setup.samples[i];
                assert!(p0 + d <= s.len, "document runs past sample {i}");
                for k in 0..d {
                    let p = p0 + k;
                    assert_eq!(doc_ids[k] as i64, encode(i, p), "id of sample {i} at {p}");
                    let want_mask = match (setup.mask, setup.labels) {
                        (Some(_), _) => mask_value(s, p),
                        (None, Some(_)) => (label_value(i, s, p) != IGNORE) as i8,
                        (None, None) => 1,
                    };
                    assert_eq!(row_mask[pos + k], want_mask, "mask of sample {i} at {p}");
                    if let Some(l) = row_labels {
                        assert_eq!(l[pos + k], label_value(i, s, p), "label of {i} at {p}");
                    }
                }
                pieces[i].push((p0, d));
                docs.push((i, p0, d));
                real += d;
                pos += d;
            }
            assert!(real >= 1, "row without a document");
            assert!(real <= cap, "row of {real} real tokens > seq_len {cap}");
            assert_eq!(real + row_pad, length, "real + pad tokens");
            if let Some(p) = o.pad_to {
                assert_eq!(row_pad > 0, real < p, "pad segment iff the row is short");
            }
            assert!(
                docs.windows(2).all(|w| w[0] < w[1]),
                "row out of input order: {docs:?}"
            );
            row_docs.push(docs);
            row_real.push(real);
        }
    }

    // Each sample's tokens exactly once, in order, cut as the policy says.
    for (i, s) in setup.samples.iter().enumerate() {
        let mut got = pieces[i].clone();
        got.sort_unstable();
        assert_eq!(
            got,
            expected_pieces(s, o),
            "pieces of sample {i} (len {})",
            s.len
        );
    }

    match o.strategy {
        Strategy::Sequential => {
            let all: Vec<Doc> = row_docs.iter().flatten().copied().collect();
            assert!(all.windows(2).all(|w| w[0] < w[1]), "sequential reorders");
            for r in 1..row_docs.len() {
                assert!(
                    row_real[r - 1] + row_docs[r][0].2 > cap,
                    "sequential closed row {} early",
                    r - 1
                );
            }
        }
        Strategy::Bfd | Strategy::Ffd => {
            let light = row_real.iter().filter(|&&t| 2 * t <= cap).count();
            assert!(light <= 1, "{light} rows at most half full: {row_real:?}");
        }
    }

    // Statistics.
    let st = &packed.stats;
    let lens: Vec<usize> = setup.samples.iter().map(|s| s.len).collect();
    let input_tokens: usize = lens.iter().sum();
    let too_long: Vec<usize> = lens.iter().copied().filter(|&l| l > cap).collect();
    let output_tokens: usize = row_real.iter().sum();
    let documents: usize = row_docs.iter().map(Vec::len).sum();
    assert_eq!(st.input_samples as usize, n, "input_samples");
    assert_eq!(st.input_tokens as usize, input_tokens, "input_tokens");
    assert_eq!(
        st.empty_samples as usize,
        lens.iter().filter(|&&l| l == 0).count(),
        "empty_samples"
    );
    assert_eq!(st.rows as usize, row_docs.len(), "rows");
    assert_eq!(st.documents as usize, documents, "documents");
    assert_eq!(st.output_tokens as usize, output_tokens, "output_tokens");
    assert_eq!(st.pad_tokens as usize, pad_tokens, "pad_tokens");
    assert_eq!(
        st.output_tokens + st.truncated_tokens + st.dropped_tokens,
        st.input_tokens,
        "output + truncated + dropped == input"
    );
    let (mut ts, mut tt, mut ds, mut dt, mut ss, mut sp) = (0, 0, 0, 0, 0, 0);
    match o.overflow {
        Overflow::Error => assert!(too_long.is_empty()),
        Overflow::Truncate => {
            ts = too_long.len();
            tt = too_long.iter().map(|&l| l - cap).sum();
        }
        Overflow::Drop => {
            ds = too_long.len();
            dt = too_long.iter().sum();
        }
        Overflow::Split => {
            ss = too_long.len();
            sp = too_long.iter().map(|&l| l.div_ceil(cap)).sum();
        }
    }
    assert_eq!(
        (
            st.truncated_samples as usize,
            st.truncated_tokens as usize,
            st.dropped_samples as usize,
            st.dropped_tokens as usize,
            st.split_samples as usize,
            st.split_pieces as usize
        ),
        (ts, tt, ds, dt, ss, sp),
        "overflow counts (truncated, dropped, split)"
    );
    let max_docs = row_docs.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(
        st.max_documents_per_row as usize, max_docs,
        "max_documents_per_row"
    );
    assert_eq!(
        st.min_row_tokens as usize,
        row_real.iter().copied().min().unwrap_or(0),
        "min_row_tokens"
    );
    let fill = if row_docs.is_empty() {
        0.0
    } else {
        output_tokens as f64 / (row_docs.len() as f64 * cap as f64)
    };
    assert!(
        (st.fill_rate - fill).abs() <= 1e-12,
        "fill_rate {} vs {fill}",
        st.fill_rate
    );
    assert!(st.fill_rate <= 1.0 + 1e-12, "fill_rate above 1");
}

fuzz_target!(|case: Case| {
    let setup = setup(&case);
    let (schema, inputs) = batches(&setup, &case);
    let result = pack(&schema, &inputs, &setup.opts);
    check_error(&setup, result.as_ref().err());
    if let Ok(packed) = &result {
        check_output(&setup, packed);
    }
    if case.compare_threads {
        // Same bytes, same stats, same error whatever the thread count.
        let mut other = setup.opts.clone();
        other.num_threads = match other.num_threads {
            Some(1) => Some(3),
            t => t.map(|_| 1),
        };
        let again = pack(&schema, &inputs, &other);
        match (&result, &again) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a.batches, b.batches, "output depends on threads");
                assert_eq!(a.stats, b.stats, "stats depend on threads");
            }
            (Err(a), Err(b)) if !matches!(a, PackError::InvalidArgument(_)) => {
                assert_eq!(a, b, "error depends on threads")
            }
            (Err(PackError::InvalidArgument(_)), _) => {}
            (a, b) => panic!("threads change the outcome: {a:?} vs {b:?}"),
        }
    }
});
