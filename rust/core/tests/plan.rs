//! `pack_plan` / `pack_from_plan`: a plan made from lengths, then rows made from it, equal `pack`'s
//! rows and statistics; a plan that does not fit the input is refused with the plan row named.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::RecordBatch;
use proptest::prelude::*;

use common::{batch, list_i32, proptest_config};
use longmagpie_core::{
    pack, pack_from_plan, pack_plan, Overflow, PackError, PackOptions, Strategy,
};

const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/tests/plan.txt"
);

/// One sample's ids, mask and labels.
type Sample = (Vec<i32>, Vec<i32>, Vec<i32>);

/// Input batches of `chunk` rows: ids encode (sample, position), masks alternate, labels follow them.
fn input(lengths: &[usize], chunk: usize) -> Vec<RecordBatch> {
    let rows: Vec<Sample> = lengths
        .iter()
        .enumerate()
        .map(|(s, &n)| {
            let ids: Vec<i32> = (0..n).map(|p| (s * 100_000 + p) as i32).collect();
            let mask: Vec<i32> = (0..n).map(|p| ((s + p) % 2) as i32).collect();
            let labels = ids
                .iter()
                .zip(&mask)
                .map(|(&t, &m)| if m == 1 { t } else { -100 })
                .collect();
            (ids, mask, labels)
        })
        .collect();
    rows.chunks(chunk.max(1))
        .map(|c| {
            let col =
                |f: &dyn Fn(&Sample) -> Vec<i32>| list_i32(&c.iter().map(f).collect::<Vec<_>>());
            batch(vec![
                ("input_ids", col(&|r| r.0.clone())),
                ("assistant_masks", col(&|r| r.1.clone())),
                ("labels", col(&|r| r.2.clone())),
            ])
        })
        .collect()
}

fn options(seq_len: usize, s: usize, o: usize, pad: bool) -> PackOptions {
    let mut opts = PackOptions::new(seq_len);
    opts.strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][s];
    opts.overflow = [Overflow::Truncate, Overflow::Drop, Overflow::Split][o];
    opts.pad_to = pad.then_some(seq_len + 3);
    opts.pad_id = 7;
    opts.num_threads = Some(2);
    opts
}

proptest! {
    #![proptest_config(proptest_config(128, REGRESSIONS))]

    #[test]
    fn rows_from_the_plan_are_packs_rows(
        lengths in proptest::collection::vec(0usize..90, 0..60),
        seq_len in 1usize..64,
        s in 0usize..3,
        o in 0usize..3,
        pad in any::<bool>(),
        chunk in 1usize..20,
    ) {
        let batches = input(&lengths, chunk);
        let schema = batches.first().map(|b| b.schema()).unwrap_or_else(|| input(&[1], 1)[0].schema());
        let opts = options(seq_len, s, o, pad);
        let packed = pack(&schema, &batches, &opts).expect("packs");
        let planned = pack_plan(&schema, &batches, &opts).expect("plans");
        prop_assert_eq!(&planned.stats, &packed.stats);
        let made = pack_from_plan(&schema, &batches, &planned.batches, &opts, None).expect("makes the rows");
        prop_assert_eq!(&made.batches, &packed.batches);
        // The row figures agree; the overflow counts are the plan's to report.
        let mut want = packed.stats.clone();
        (want.truncated_samples, want.truncated_tokens, want.dropped_samples) = (0, 0, 0);
        (want.dropped_tokens, want.split_samples, want.split_pieces) = (0, 0, 0);
        prop_assert_eq!(made.stats, want);
        // The plan's lengths are the rows' documents.
        let docs: Vec<Vec<i32>> = packed.batches.iter().flat_map(|b| {
            let sl = b.column(1).as_list::<i32>();
            (0..b.num_rows()).map(|r| sl.value(r).as_primitive::<Int32Type>().values().to_vec()).collect::<Vec<_>>()
        }).map(|mut d| { if pad { d.pop(); } d }).collect(); // pad_to > seq_len: every row has a pad segment
        let plan_docs: Vec<Vec<i32>> = planned.batches.iter().flat_map(|b| {
            let sl = b.column(2).as_list::<i32>();
            (0..b.num_rows()).map(|r| sl.value(r).as_primitive::<Int32Type>().values().to_vec()).collect::<Vec<_>>()
        }).collect();
        prop_assert_eq!(plan_docs, docs);
    }
}

#[test]
fn a_plan_is_rows_of_sample_offset_length() {
    let batches = input(&[5, 12, 3], 2);
    let mut opts = PackOptions::new(8);
    opts.strategy = Strategy::Sequential;
    opts.overflow = Overflow::Split;
    let planned = pack_plan(&batches[0].schema(), &batches, &opts).expect("plans");
    let b = &planned.batches[0];
    let col = |i: usize| -> Vec<Vec<i64>> {
        let l = b.column(i).as_list::<i32>();
        (0..b.num_rows())
            .map(|r| {
                let v = l.value(r);
                match i {
                    2 => v
                        .as_primitive::<Int32Type>()
                        .values()
                        .iter()
                        .map(|&x| x as i64)
                        .collect(),
                    _ => v.as_primitive::<Int64Type>().values().to_vec(),
                }
            })
            .collect()
    };
    // sample 1 (12 tokens) is split into 8 + 4; rows close when the next piece does not fit
    assert_eq!(col(0), vec![vec![0], vec![1], vec![1, 2]]);
    assert_eq!(col(1), vec![vec![0], vec![0], vec![8, 0]]);
    assert_eq!(col(2), vec![vec![5], vec![8], vec![4, 3]]);
    assert_eq!(
        (planned.stats.split_samples, planned.stats.split_pieces),
        (1, 2)
    );
}

#[test]
fn a_plan_that_does_not_fit_the_input_names_its_row() {
    let batches = input(&[5, 12, 3], 3);
    let schema = batches[0].schema();
    let mut opts = PackOptions::new(16);
    opts.strategy = Strategy::Sequential;
    let planned = pack_plan(&schema, &batches, &opts).expect("plans");
    // Fewer samples than the plan names (rows: [5], [12, 3]).
    let short = input(&[5, 12], 3);
    let err = pack_from_plan(&schema, &short, &planned.batches, &opts, None).expect_err("refused");
    assert!(
        matches!(&err, PackError::InvalidArgument(m) if m.contains("plan row 1") && m.contains("sample 2")),
        "{err}"
    );
    let counts = Some((planned.stats.input_samples, planned.stats.input_tokens));
    let err =
        pack_from_plan(&schema, &short, &planned.batches, &opts, counts).expect_err("refused");
    assert!(
        matches!(&err, PackError::InvalidArgument(m) if m.contains("made for 3 samples of 20 tokens, these are 2 samples of 17")),
        "{err}"
    );
    // A sample shorter than the plan takes from it.
    let shorter = input(&[5, 11, 3], 3);
    let err =
        pack_from_plan(&schema, &shorter, &planned.batches, &opts, None).expect_err("refused");
    assert!(
        matches!(&err, PackError::InvalidArgument(m) if m.contains("plan row 1") && m.contains("tokens 0..12 of sample 1, which has 11")),
        "{err}"
    );
    // Rows of the plan longer than seq_len.
    let mut small = opts.clone();
    small.seq_len = 12;
    let err =
        pack_from_plan(&schema, &batches, &planned.batches, &small, counts).expect_err("refused");
    assert!(
        matches!(&err, PackError::InvalidArgument(m) if m.contains("plan row 1: 15 tokens do not fit in seq_len=12")),
        "{err}"
    );
    // Not a plan.
    let err = pack_from_plan(&schema, &batches, &batches, &opts, counts).expect_err("refused");
    assert!(
        matches!(&err, PackError::MissingColumn { column, .. } if column == "sample_index"),
        "{err}"
    );
}
