//! Tests of `pad_documents_to` (context-parallel padding) in `pack`, `pack_from_plan` and p-mix:
//! every segment is a multiple, the padding is masked out, the real tokens and lengths are exact,
//! and the output does not depend on threads or, for p-mix, on streaming.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, Int32Type, Int8Type};
use arrow_array::{Array, RecordBatch};
use proptest::prelude::*;

use common::{batch, list_i32, proptest_config};
use longmagpie_core::pmix::{BatchSource, PmixStream};
use longmagpie_core::{
    pack, pack_from_plan, pack_plan, pack_pmix, Fill, LossWeights, Overflow, PackError,
    PackOptions, PmixOptions, Strategy,
};

/// Where proptest keeps the failing cases of this file.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/tests/pad_documents.txt"
);

const PAD_ID: i32 = 7;

/// Samples with ids `base + sample * 10_000 + position` (any misplacement shows), masks
/// alternating, labels -100 on every third token.
fn input(lengths: &[usize], base: usize) -> RecordBatch {
    let ids: Vec<Vec<i32>> = lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|p| (base + s * 10_000 + p) as i32).collect())
        .collect();
    let masks: Vec<Vec<i32>> = lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| (0..n).map(|p| ((s + p) % 2) as i32).collect())
        .collect();
    let labels: Vec<Vec<i32>> = ids
        .iter()
        .map(|row| {
            row.iter()
                .enumerate()
                .map(|(p, &t)| if p % 3 == 0 { -100 } else { t })
                .collect()
        })
        .collect();
    batch(vec![
        ("input_ids", list_i32(&ids)),
        ("assistant_masks", list_i32(&masks)),
        ("labels", list_i32(&labels)),
    ])
}

fn col<'a>(b: &'a RecordBatch, name: &str) -> &'a arrow_array::ListArray {
    b.column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_list::<i32>()
}

fn values_i32(l: &arrow_array::ListArray, r: usize) -> Vec<i32> {
    l.value(r).as_primitive::<Int32Type>().values().to_vec()
}

/// Checks every row of `batches` (padding id `pad`) and returns the real tokens of each segment, in row order, as
/// (first id, length) pairs.
fn check_rows(batches: &[RecordBatch], m: usize, seq_len: usize, pad: i32) -> Vec<(i32, usize)> {
    let mut docs = Vec::new();
    for b in batches {
        let (ids, seq, unp) = (
            col(b, "input_ids"),
            col(b, "seq_lengths"),
            col(b, "seq_lengths_unpadded"),
        );
        let (mask, labels) = (col(b, "assistant_masks"), col(b, "labels"));
        for r in 0..b.num_rows() {
            let (ids, seq, unp) = (values_i32(ids, r), values_i32(seq, r), values_i32(unp, r));
            let mask = mask.value(r).as_primitive::<Int8Type>().values().to_vec();
            let labels = values_i32(labels, r);
            assert!(ids.len() <= seq_len, "a row fits seq_len");
            assert_eq!(seq.len(), unp.len(), "one unpadded length per segment");
            assert_eq!(
                seq.iter().sum::<i32>() as usize,
                ids.len(),
                "seq_lengths tile the row"
            );
            let mut pos = 0usize;
            for (&s, &u) in seq.iter().zip(&unp) {
                let (s, u) = (s as usize, u as usize);
                assert_eq!(s % m, 0, "every segment is a multiple of {m}: {seq:?}");
                // A document's padding is under one multiple; a row's pad segment holds no token.
                assert!(
                    u <= s && (u == 0 || s - u < m),
                    "{u} real tokens in a {s}-token segment"
                );
                for k in pos + u..pos + s {
                    assert_eq!(
                        (ids[k], mask[k], labels[k]),
                        (pad, 0, -100),
                        "padding at {k}"
                    );
                }
                if u > 0 {
                    for k in 0..u {
                        assert_eq!(ids[pos + k], ids[pos] + k as i32, "one contiguous sample");
                    }
                    docs.push((ids[pos], u));
                }
                pos += s;
            }
        }
    }
    docs
}

fn pack_opts(seq_len: usize, m: usize, strategy: Strategy, threads: usize) -> PackOptions {
    let mut o = PackOptions::new(seq_len);
    o.strategy = strategy;
    o.overflow = Overflow::Split;
    o.pad_id = PAD_ID;
    o.pad_documents_to = Some(m);
    o.num_threads = Some(threads);
    o
}

proptest! {
    #![proptest_config(proptest_config(96, REGRESSIONS))]

    #[test]
    fn pack_pads_every_document_and_keeps_every_token(
        lengths in proptest::collection::vec(0usize..70, 0..50),
        m in 1usize..9,
        k in 1usize..12,
        s in 0usize..3,
        pad_rows in any::<bool>(),
    ) {
        let seq_len = m * k;
        let strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][s];
        let b = input(&lengths, 0);
        let mut o = pack_opts(seq_len, m, strategy, 2);
        o.pad_to = pad_rows.then_some(seq_len + 2 * m);
        let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
        let docs = check_rows(&p.batches, m, seq_len + 2 * m, PAD_ID);
        // Every sample comes back whole, in pieces of at most seq_len.
        let mut got = vec![0usize; lengths.len()];
        for &(first, n) in &docs {
            let sample = (first / 10_000) as usize;
            prop_assert_eq!((first % 10_000) as usize, got[sample], "pieces in order");
            got[sample] += n;
        }
        prop_assert_eq!(&got, &lengths);
        let st = &p.stats;
        let slots: usize = docs.iter().map(|&(_, n)| n.div_ceil(m) * m).sum();
        prop_assert_eq!(st.output_tokens as usize, lengths.iter().sum::<usize>());
        prop_assert_eq!(st.document_pad_tokens as usize, slots - st.output_tokens as usize);
        let row_pad = if pad_rows { st.rows as usize * (seq_len + 2 * m) - slots } else { 0 };
        prop_assert_eq!(st.pad_tokens as usize, row_pad);
        // One thread or three: the same bytes; a plan makes them again.
        let one = pack(&b.schema(), std::slice::from_ref(&b), &PackOptions { num_threads: Some(1), ..o.clone() })
            .expect("packs");
        prop_assert_eq!(&one.batches, &p.batches);
        let plan = pack_plan(&b.schema(), std::slice::from_ref(&b), &o).expect("plans");
        prop_assert_eq!(&plan.stats, &p.stats);
        let again = pack_from_plan(&b.schema(), std::slice::from_ref(&b), &plan.batches, &o, None)
            .expect("makes rows");
        prop_assert_eq!(&again.batches, &p.batches);
    }

    #[test]
    fn pmix_pads_every_segment_and_streams_the_same(
        long in proptest::collection::vec(1usize..120, 0..25),
        short in proptest::collection::vec(1usize..40, 1..60),
        m in 1usize..6,
        k in 40usize..80,
        best_fit in any::<bool>(),
        chunk in 1usize..9,
    ) {
        let seq_len = m * k;
        let mut o = PmixOptions::new(seq_len);
        o.pad_documents_to = Some(m);
        o.overflow = Overflow::Truncate;
        o.fill = if best_fit { Fill::BestFit } else { Fill::Upstream };
        o.seed = 3;
        let (l, s) = (input(&long, 50_000_000), input(&short, 0));
        let p = pack_pmix(&l.schema(), std::slice::from_ref(&l), &s.schema(), std::slice::from_ref(&s), &o)
            .expect("mixes");
        // p-mix pads with id 0.
        let docs = check_rows(&p.batches, m, seq_len, 0);
        let real: usize = docs.iter().map(|&(_, n)| n).sum();
        let slots: usize = docs.iter().map(|&(_, n)| n.div_ceil(m) * m).sum();
        prop_assert_eq!(p.stats.output_tokens as usize, real);
        prop_assert_eq!(p.stats.document_pad_tokens as usize, slots - real);
        let chunks = |b: &RecordBatch| -> BatchSource {
            let parts: Vec<_> = (0..b.num_rows())
                .step_by(chunk)
                .map(|i| Ok(b.slice(i, chunk.min(b.num_rows() - i))))
                .collect();
            Box::new(parts.into_iter())
        };
        let streamed: Vec<RecordBatch> = PmixStream::new(&l.schema(), chunks(&l), &s.schema(), chunks(&s), &o)
            .expect("starts")
            .map(|b| b.expect("batch"))
            .collect();
        prop_assert_eq!(concat_ids(&streamed), concat_ids(&p.batches));
    }
}

fn concat_ids(batches: &[RecordBatch]) -> Vec<Vec<i32>> {
    batches
        .iter()
        .flat_map(|b| {
            let ids = col(b, "input_ids");
            (0..b.num_rows())
                .map(|r| values_i32(ids, r))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_multiple_of_one_changes_nothing_but_the_extra_column() {
    let lengths = [5, 9, 3, 12, 1, 7];
    let b = input(&lengths, 0);
    let mut plain = PackOptions::new(16);
    plain.pad_to = Some(18);
    let a = pack(&b.schema(), std::slice::from_ref(&b), &plain).expect("packs");
    let mut o = plain.clone();
    o.pad_documents_to = Some(1);
    let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
    for name in ["input_ids", "seq_lengths", "assistant_masks", "labels"] {
        assert_eq!(col(&a.batches[0], name), col(&p.batches[0], name), "{name}");
    }
    let seq = col(&p.batches[0], "seq_lengths");
    let unp = col(&p.batches[0], "seq_lengths_unpadded");
    for r in 0..seq.len() {
        let (s, u) = (values_i32(seq, r), values_i32(unp, r));
        let last = s.len() - 1;
        assert_eq!(s[..last], u[..last], "documents are not padded");
        assert_eq!(u[last], 0, "the row's pad segment has no real token");
    }
    assert!(a.batches[0]
        .column_by_name("seq_lengths_unpadded")
        .is_none());
    assert_eq!(p.stats.document_pad_tokens, 0);
}

#[test]
fn planner_places_padded_lengths() {
    // Multiple 4, rows of 8: lengths 5, 3, 3 occupy 8, 4, 4, so best fit needs two rows
    // (unpadded, 5 + 3 fit one row of 8 and 3 a second, the same count, but a different split).
    let b = input(&[5, 3, 3], 0);
    let mut o = pack_opts(8, 4, Strategy::Bfd, 1);
    o.overflow = Overflow::Error;
    let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
    let seq = col(&p.batches[0], "seq_lengths");
    let unp = col(&p.batches[0], "seq_lengths_unpadded");
    let rows: Vec<(Vec<i32>, Vec<i32>)> = (0..seq.len())
        .map(|r| (values_i32(seq, r), values_i32(unp, r)))
        .collect();
    assert_eq!(
        rows,
        vec![(vec![8], vec![5]), (vec![4, 4], vec![3, 3])],
        "a 5-token document fills a row of 8 once padded"
    );
    assert_eq!(p.stats.document_pad_tokens, 3 + 1 + 1);
    assert!(
        (p.stats.fill_rate - 11.0 / 16.0).abs() < 1e-12,
        "fill counts real tokens"
    );
}

#[test]
fn loss_weights_skip_the_padding() {
    let b = input(&[5], 0);
    let mut o = pack_opts(8, 4, Strategy::Bfd, 1);
    o.loss_weights = Some(LossWeights::PerToken);
    let p = pack(&b.schema(), std::slice::from_ref(&b), &o).expect("packs");
    let w = col(&p.batches[0], "loss_weights");
    let w = w.value(0).as_primitive::<Float32Type>().values().to_vec();
    // mask (s=0): 0,1,0,1,0 ; labels -100 at 0 and 3; first token never: trained = position 1.
    assert_eq!(w, vec![0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
}

#[test]
fn a_multiple_that_does_not_divide_the_row_is_refused() {
    let b = input(&[5], 0);
    let check = |o: PackOptions, needle: &str| {
        let e = pack(&b.schema(), std::slice::from_ref(&b), &o).expect_err("refused");
        assert!(
            matches!(&e, PackError::InvalidArgument(m) if m.contains(needle)),
            "{e}"
        );
    };
    check(pack_opts(10, 4, Strategy::Bfd, 1), "must divide seq_len=10");
    let mut o = pack_opts(8, 4, Strategy::Bfd, 1);
    o.pad_to = Some(10);
    check(o, "must divide pad_to=10");
    check(
        pack_opts(8, 0, Strategy::Bfd, 1),
        "pad_documents_to must be >= 1",
    );
    let mut p = PmixOptions::new(10);
    p.pad_documents_to = Some(4);
    let (l, s) = (input(&[3], 50_000_000), input(&[2], 0));
    let e = pack_pmix(
        &l.schema(),
        std::slice::from_ref(&l),
        &s.schema(),
        std::slice::from_ref(&s),
        &p,
    )
    .expect_err("refused");
    assert!(e.to_string().contains("must divide seq_len=10"), "{e}");
}
