//! Tests of `pack` over real Arrow batches, through the public API: invariants (proptest) and
//! error paths.

mod common;

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{Array, ArrayRef, Int32Array, RecordBatch, StringArray};
use proptest::prelude::*;

use common::{batch, list_i32, proptest_config};
use longmagpie_core::{pack, Overflow, PackError, PackOptions, Packed, Strategy};

/// Where proptest keeps the failing cases of this file.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/tests/pack.txt"
);

/// Samples whose token ids encode (sample, position) so any misplacement is visible.
fn samples(lengths: &[usize]) -> Vec<Vec<i32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|p| (s * 100_000 + p) as i32).collect())
        .collect()
}

fn masks(lengths: &[usize]) -> Vec<Vec<i32>> {
    lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|p| ((s + p) % 2) as i32).collect())
        .collect()
}

struct Rows {
    ids: Vec<Vec<i32>>,
    seq_lengths: Vec<Vec<i32>>,
    masks: Vec<Vec<i8>>,
    lengths: Vec<i32>,
}

fn rows_of(p: &Packed) -> Rows {
    let mut out = Rows {
        ids: vec![],
        seq_lengths: vec![],
        masks: vec![],
        lengths: vec![],
    };
    for b in &p.batches {
        let ids = b.column(0).as_list::<i32>();
        let sl = b.column(1).as_list::<i32>();
        let m = b.column(2).as_list::<i32>();
        let len = b
            .column_by_name("length")
            .expect("length")
            .as_primitive::<Int32Type>();
        for r in 0..b.num_rows() {
            out.ids
                .push(ids.value(r).as_primitive::<Int32Type>().values().to_vec());
            out.seq_lengths
                .push(sl.value(r).as_primitive::<Int32Type>().values().to_vec());
            out.masks
                .push(m.value(r).as_primitive::<Int8Type>().values().to_vec());
            out.lengths.push(len.value(r));
        }
    }
    out
}

fn run(
    lengths: &[usize],
    seq_len: usize,
    strategy: Strategy,
    overflow: Overflow,
    threads: usize,
) -> Result<Packed, PackError> {
    let ids = list_i32(&samples(lengths));
    let m = list_i32(&masks(lengths));
    let b = batch(vec![("input_ids", ids), ("assistant_masks", m)]);
    let mut o = PackOptions::new(seq_len);
    o.strategy = strategy;
    o.overflow = overflow;
    o.num_threads = Some(threads);
    pack(&b.schema(), &[b], &o)
}

proptest! {
    #![proptest_config(proptest_config(128, REGRESSIONS))]

    #[test]
    fn tokens_kept_once_in_order_with_aligned_masks(
        lengths in proptest::collection::vec(0usize..90, 0..60),
        seq_len in 1usize..64,
        s in 0usize..3,
        o in 0usize..4,
    ) {
        let strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][s];
        let overflow = [Overflow::Error, Overflow::Truncate, Overflow::Drop, Overflow::Split][o];
        let result = run(&lengths, seq_len, strategy, overflow, 2);
        if overflow == Overflow::Error && lengths.iter().any(|&l| l > seq_len) {
            let first = lengths.iter().position(|&l| l > seq_len).expect("some");
            prop_assert!(
                matches!(result, Err(PackError::TooLong { row, .. }) if row == first),
                "first too-long row must be named"
            );
            return Ok(());
        }
        let packed = result.expect("packs");
        let rows = rows_of(&packed);
        let expect = samples(&lengths);
        let expect_masks = masks(&lengths);
        // Reassemble every sample from its documents.
        let mut got: Vec<Vec<i32>> = vec![vec![]; lengths.len()];
        let mut got_masks: Vec<Vec<i8>> = vec![vec![]; lengths.len()];
        for r in 0..rows.ids.len() {
            prop_assert!(rows.ids[r].len() <= seq_len);
            prop_assert_eq!(rows.ids[r].len(), rows.lengths[r] as usize);
            prop_assert_eq!(rows.masks[r].len(), rows.ids[r].len());
            let total: i32 = rows.seq_lengths[r].iter().sum();
            prop_assert_eq!(total, rows.lengths[r]);
            let mut pos = 0usize;
            for &d in &rows.seq_lengths[r] {
                prop_assert!(d > 0);
                let doc = &rows.ids[r][pos..pos + d as usize];
                let sample = (doc[0] / 100_000) as usize;
                // A document is one contiguous run of one sample.
                for (k, &t) in doc.iter().enumerate() {
                    prop_assert_eq!(t, doc[0] + k as i32);
                }
                prop_assert_eq!((doc[0] % 100_000) as usize, got[sample].len(), "pieces in order");
                got[sample].extend_from_slice(doc);
                got_masks[sample].extend_from_slice(&rows.masks[r][pos..pos + d as usize]);
                pos += d as usize;
            }
        }
        let st = &packed.stats;
        for (i, want) in expect.iter().enumerate() {
            let n = want.len();
            let kept = match overflow {
                _ if n <= seq_len => n,
                Overflow::Truncate => seq_len,
                Overflow::Drop => 0,
                _ => n,
            };
            prop_assert_eq!(&got[i][..], &want[..kept]);
            let wm: Vec<i8> = expect_masks[i][..kept].iter().map(|&x| x as i8).collect();
            prop_assert_eq!(&got_masks[i][..], &wm[..]);
        }
        let total_in: usize = lengths.iter().sum();
        prop_assert_eq!(st.input_tokens as usize, total_in);
        prop_assert_eq!(
            st.output_tokens + st.truncated_tokens + st.dropped_tokens,
            st.input_tokens
        );
        prop_assert_eq!(st.rows as usize, rows.ids.len());
        prop_assert_eq!(st.empty_samples as usize, lengths.iter().filter(|&&l| l == 0).count());
    }

    #[test]
    fn same_output_for_one_and_many_threads(
        lengths in proptest::collection::vec(1usize..200, 0..80),
        seq_len in 50usize..300,
        s in 0usize..3,
    ) {
        let strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][s];
        let a = run(&lengths, seq_len, strategy, Overflow::Split, 1).expect("packs");
        let b = run(&lengths, seq_len, strategy, Overflow::Split, 3).expect("packs");
        prop_assert_eq!(a.batches, b.batches);
        prop_assert_eq!(a.stats, b.stats);
    }
}

#[test]
fn empty_input_gives_empty_output() {
    let b = batch(vec![("input_ids", list_i32(&[]))]);
    let p = pack(&b.schema(), &[b], &PackOptions::new(8)).expect("packs");
    assert_eq!(p.stats.rows, 0);
    assert!(p.batches.iter().all(|b| b.num_rows() == 0));
    assert_eq!(p.schema.fields().len(), 4);
    let none: Vec<RecordBatch> = vec![];
    let p = pack(&p.schema.clone(), &none, &PackOptions::new(8));
    assert!(p.is_ok(), "schema without rows works too");
}

#[test]
fn bfd_fills_rows_better_than_sequential() {
    let lengths: Vec<usize> = (0..400).map(|i| 1 + (i * 7919) % 60).collect();
    let bfd = run(&lengths, 64, Strategy::Bfd, Overflow::Error, 2).expect("packs");
    let seq = run(&lengths, 64, Strategy::Sequential, Overflow::Error, 2).expect("packs");
    assert!(bfd.stats.fill_rate > seq.stats.fill_rate);
    assert!(bfd.stats.fill_rate > 0.97, "fill {}", bfd.stats.fill_rate);
}

#[test]
fn labels_derive_the_mask_and_pad_is_its_own_segment() {
    let ids = list_i32(&[vec![5, 6, 7], vec![8, 9]]);
    let labels = list_i32(&[vec![-100, 6, 7], vec![-100, -100]]);
    let source: ArrayRef = Arc::new(StringArray::from(vec![Some("a"), None]));
    let b = batch(vec![
        ("input_ids", ids),
        ("labels", labels),
        ("source", source),
    ]);
    let mut o = PackOptions::new(6);
    o.pad_to = Some(8);
    o.pad_id = 1;
    o.strategy = Strategy::Sequential;
    let p = pack(&b.schema(), &[b], &o).expect("packs");
    let out = &p.batches[0];
    assert_eq!(out.num_rows(), 1);
    let row = |c: &str| out.column_by_name(c).expect(c).as_list::<i32>().value(0);
    assert_eq!(
        row("input_ids")
            .as_primitive::<Int32Type>()
            .values()
            .to_vec(),
        vec![5, 6, 7, 8, 9, 1, 1, 1]
    );
    assert_eq!(
        row("seq_lengths")
            .as_primitive::<Int32Type>()
            .values()
            .to_vec(),
        vec![3, 2, 3]
    );
    assert_eq!(
        row("assistant_masks")
            .as_primitive::<Int8Type>()
            .values()
            .to_vec(),
        vec![0, 1, 1, 0, 0, 0, 0, 0]
    );
    assert_eq!(
        row("labels").as_primitive::<Int32Type>().values().to_vec(),
        vec![-100, 6, 7, -100, -100, -100, -100, -100]
    );
    let src = row("source");
    let src = src.as_string::<i32>();
    assert_eq!(src.len(), 3);
    assert_eq!(src.value(0), "a");
    assert!(src.is_null(1) && src.is_null(2));
    assert_eq!(p.stats.pad_tokens, 3);
    assert_eq!(p.stats.output_tokens, 5);
}

#[test]
fn errors_name_column_and_row() {
    // Negative id in row 1.
    let ids = list_i32(&[vec![1, 2], vec![3, -4]]);
    let b = batch(vec![("input_ids", ids)]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("negative id");
    assert_eq!(
        e.to_string(),
        "column 'input_ids' has invalid value -4 at row 1, position 1: token ids must be in 0..=2147483647"
    );

    // Mask of another length.
    let b = batch(vec![
        ("input_ids", list_i32(&[vec![1, 2], vec![3]])),
        ("assistant_masks", list_i32(&[vec![1, 0], vec![1, 1]])),
    ]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("length");
    assert!(matches!(
        e,
        PackError::LengthMismatch {
            row: 1,
            expected: 1,
            found: 2,
            ..
        }
    ));

    // Mask value 2 hidden in a dropped sample is still reported.
    let b = batch(vec![
        ("input_ids", list_i32(&[vec![1; 10]])),
        (
            "assistant_masks",
            list_i32(&[vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 2]]),
        ),
    ]);
    let mut o = PackOptions::new(8);
    o.overflow = Overflow::Drop;
    let e = pack(&b.schema(), &[b], &o).expect_err("bad mask in dropped sample");
    assert!(
        matches!(
            e,
            PackError::BadValue {
                row: 0,
                position: 9,
                ..
            }
        ),
        "{e}"
    );

    // Missing column, wrong type.
    let b = batch(vec![("tokens", list_i32(&[vec![1]]))]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("missing");
    assert!(e.to_string().contains("missing column 'input_ids'"), "{e}");
    let b = batch(vec![(
        "input_ids",
        Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef,
    )]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("type");
    assert!(e.is_type_error());
}

#[test]
fn null_rows_and_null_elements_are_named() {
    let mut builder = ListBuilder::new(Int64Builder::new());
    builder.append_value([Some(1), Some(2)]);
    builder.append_value([Some(3), None]);
    builder.append_null();
    let b = batch(vec![("input_ids", Arc::new(builder.finish()) as ArrayRef)]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("nulls");
    assert_eq!(
        e.to_string(),
        "column 'input_ids' is null at row 2; drop or fill such rows before packing"
    );
    let mut builder = ListBuilder::new(Int64Builder::new());
    builder.append_value([Some(1), Some(2)]);
    builder.append_value([Some(3), None]);
    let b = batch(vec![("input_ids", Arc::new(builder.finish()) as ArrayRef)]);
    let e = pack(&b.schema(), &[b], &PackOptions::new(8)).expect_err("null element");
    assert!(
        e.to_string()
            .contains("null at row 1 (element 1 of the list)"),
        "{e}"
    );
}

#[test]
fn rows_of_several_batches_are_numbered_globally() {
    let b1 = batch(vec![("input_ids", list_i32(&[vec![1], vec![2]]))]);
    let b2 = batch(vec![("input_ids", list_i32(&[vec![3], vec![1; 20]]))]);
    let e = pack(&b1.schema(), &[b1, b2], &PackOptions::new(8)).expect_err("too long");
    assert_eq!(
        e,
        PackError::TooLong {
            row: 3,
            length: 20,
            seq_len: 8
        }
    );
}

#[test]
fn bad_options_are_rejected() {
    let b = batch(vec![("input_ids", list_i32(&[vec![1]]))]);
    let mut o = PackOptions::new(0);
    assert!(pack(&b.schema(), std::slice::from_ref(&b), &o).is_err());
    o = PackOptions::new(8);
    o.pad_to = Some(4);
    assert!(pack(&b.schema(), std::slice::from_ref(&b), &o).is_err());
    o = PackOptions::new(8);
    o.num_threads = Some(0);
    assert!(pack(&b.schema(), &[b], &o).is_err());
}

#[test]
fn loss_weights_per_sequence_and_per_token() {
    use arrow_array::types::Float32Type;
    use longmagpie_core::LossWeights;
    // Two documents: mask [0,1,1,1] (3 trained, none first) and [1,1,0] (first not counted: 1).
    let ids = list_i32(&[vec![1, 2, 3, 4], vec![5, 6, 7]]);
    let m = list_i32(&[vec![0, 1, 1, 1], vec![1, 1, 0]]);
    let b = batch(vec![("input_ids", ids), ("assistant_masks", m)]);
    let weights = |scheme: Option<LossWeights>, pad_to: Option<usize>| -> Vec<Vec<f32>> {
        let mut o = PackOptions::new(8);
        o.strategy = Strategy::Sequential;
        o.loss_weights = scheme;
        o.pad_to = pad_to;
        let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
        let col = p.batches[0]
            .column_by_name("loss_weights")
            .expect("loss_weights")
            .as_list::<i32>()
            .clone();
        (0..col.len())
            .map(|r| col.value(r).as_primitive::<Float32Type>().values().to_vec())
            .collect()
    };
    let third = 1.0f32 / 3.0;
    assert_eq!(
        weights(Some(LossWeights::PerSequence), None),
        vec![vec![0.0, third, third, third, 0.0, 1.0, 0.0]]
    );
    assert_eq!(
        weights(Some(LossWeights::PerToken), Some(9)),
        vec![vec![0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]
    );
    let mut o = PackOptions::new(8);
    o.loss_weights = None;
    let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
    assert!(p.batches[0].column_by_name("loss_weights").is_none());
}
