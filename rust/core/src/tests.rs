//! Tests of `pack` over real Arrow batches: invariants (proptest) and error paths.

use std::sync::Arc;

use arrow_array::builder::{Int64Builder, ListBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int8Type};
use arrow_array::{Array, ArrayRef, Int32Array, ListArray, RecordBatch, StringArray};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field, Schema};
use proptest::prelude::*;

use crate::{pack, Overflow, PackError, PackOptions, Strategy};

fn list_i32(rows: &[Vec<i32>]) -> ArrayRef {
    let mut offsets = vec![0i32];
    let mut values = Vec::new();
    for r in rows {
        values.extend_from_slice(r);
        offsets.push(values.len() as i32);
    }
    Arc::new(ListArray::new(
        Arc::new(Field::new_list_field(DataType::Int32, true)),
        OffsetBuffer::new(ScalarBuffer::from(offsets)),
        Arc::new(Int32Array::from(values)),
        None,
    ))
}

fn batch(cols: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = cols
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        cols.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("test batch")
}

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

fn rows_of(p: &crate::Packed) -> Rows {
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
) -> Result<crate::Packed, PackError> {
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
    #![proptest_config(ProptestConfig::with_cases(128))]

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

mod pmix {
    use super::*;
    use crate::pmix::{BatchSource, PmixStream};
    use crate::{pack_pmix, Exhausted, Fill, PmixOptions, PmixPacked};

    /// The stream over `batch` cut into chunks of `chunk` rows.
    fn chunked(batch: &RecordBatch, chunk: usize) -> BatchSource {
        let parts: Vec<_> = (0..batch.num_rows())
            .step_by(chunk.max(1))
            .map(|i| Ok(batch.slice(i, chunk.min(batch.num_rows() - i))))
            .collect();
        Box::new(parts.into_iter())
    }

    fn stream(long: &[usize], short: &[usize], o: &PmixOptions, chunk: usize) -> Vec<RecordBatch> {
        let (l, s) = (pool(long, true), pool(short, false));
        let st = PmixStream::new(
            &l.schema(),
            chunked(&l, chunk),
            &s.schema(),
            chunked(&s, chunk),
            o,
        )
        .expect("starts");
        st.map(|b| b.expect("batch")).collect()
    }

    /// Long ids are 50_000_000 + sample * 10_000 + position; short ids sample * 10_000 + position.
    fn pool(lengths: &[usize], long: bool) -> RecordBatch {
        let base = if long { 50_000_000 } else { 0 };
        let rows: Vec<Vec<i32>> = lengths
            .iter()
            .enumerate()
            .map(|(s, &n)| (0..n).map(|p| (base + s * 10_000 + p) as i32).collect())
            .collect();
        batch(vec![("input_ids", list_i32(&rows))])
    }

    fn mix(long: &[usize], short: &[usize], o: &PmixOptions) -> Result<PmixPacked, PackError> {
        let (l, s) = (pool(long, true), pool(short, false));
        pack_pmix(
            &l.schema(),
            std::slice::from_ref(&l),
            &s.schema(),
            std::slice::from_ref(&s),
            o,
        )
    }

    /// Rows as lists of (kind, sample, length) segments, checking ids along the way.
    fn segments(p: &PmixPacked) -> Vec<Vec<(bool, usize, usize)>> {
        let mut rows = vec![];
        for b in &p.batches {
            let ids = b.column(0).as_list::<i32>();
            let sl = b.column(1).as_list::<i32>();
            let kind = b.column_by_name("kind").expect("kind").as_list::<i32>();
            for r in 0..b.num_rows() {
                let ids = ids.value(r);
                let ids = ids.as_primitive::<Int32Type>().values();
                let lens = sl.value(r);
                let kinds = kind.value(r);
                let kinds = kinds.as_string::<i32>();
                let mut pos = 0;
                let mut row = vec![];
                for (k, &n) in lens.as_primitive::<Int32Type>().values().iter().enumerate() {
                    let doc = &ids[pos..pos + n as usize];
                    let long = doc[0] >= 50_000_000;
                    assert_eq!(kinds.value(k), if long { "long" } else { "short" });
                    let local = (doc[0] % 50_000_000) as usize;
                    assert_eq!(
                        local % 10_000,
                        0,
                        "a segment starts at its sample's first token"
                    );
                    for (i, &t) in doc.iter().enumerate() {
                        assert_eq!(t, doc[0] + i as i32);
                    }
                    row.push((long, local / 10_000, n as usize));
                    pos += n as usize;
                }
                assert_eq!(pos, ids.len());
                rows.push(row);
            }
        }
        rows
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        #[test]
        fn rows_open_with_shorts_and_samples_are_used_once(
            long in proptest::collection::vec(1usize..150, 0..40),
            short in proptest::collection::vec(1usize..40, 1..80),
            seq_len in 150usize..400,
            p in 0.0f64..=1.0,
            prefix in 0usize..3,
            best in proptest::bool::ANY,
            short_only in proptest::bool::ANY,
            seed in 0u64..1000,
        ) {
            let mut o = PmixOptions::new(seq_len);
            o.p_long = p;
            o.n_short_prefix = prefix;
            o.seed = seed;
            o.fill = if best { Fill::BestFit } else { Fill::Upstream };
            o.exhausted = if short_only { Exhausted::ShortOnly } else { Exhausted::Stop };
            o.num_threads = Some(2);
            o.overflow = Overflow::Drop; // long samples may not fit next to a prefix
            let packed = mix(&long, &short, &o).expect("mixes");
            let rows = segments(&packed);
            let mut seen_long = vec![false; long.len()];
            let mut seen_short = vec![false; short.len()];
            for row in &rows {
                let total: usize = row.iter().map(|s| s.2).sum();
                prop_assert!(total <= seq_len);
                for (k, &(is_long, _, _)) in row.iter().enumerate().take(prefix) {
                    prop_assert!(!is_long, "segment {} of a row is in the prefix", k);
                }
                for &(is_long, s, n) in row {
                    let (seen, lens) = if is_long { (&mut seen_long, &long) } else { (&mut seen_short, &short) };
                    prop_assert!(!seen[s], "sample used twice");
                    seen[s] = true;
                    prop_assert_eq!(n, lens[s], "whole samples only");
                }
            }
            let st = &packed.stats;
            prop_assert_eq!(st.rows as usize, rows.len());
            prop_assert_eq!(st.long_used as usize, seen_long.iter().filter(|&&x| x).count());
            prop_assert_eq!(
                st.long_used + st.long_unused + st.short_used + st.short_unused + st.dropped_samples,
                (long.len() + short.len()) as u64
            );
            if short_only && p > 0.0 && !rows.is_empty() {
                // With short_only the run ends only when the short pool is out.
                prop_assert!(st.short_unused < prefix.max(1) as u64 + 1 || st.long_unused == 0);
            }
            let again = {
                let mut o1 = o.clone();
                o1.num_threads = Some(1);
                mix(&long, &short, &o1).expect("mixes")
            };
            prop_assert_eq!(&again.batches, &packed.batches);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn stream_matches_in_memory_and_ignores_chunking(
            long in proptest::collection::vec(1usize..120, 0..40),
            short in proptest::collection::vec(1usize..40, 1..80),
            window in 1usize..800,
            best in proptest::bool::ANY,
            seed in 0u64..100,
        ) {
            let mut o = PmixOptions::new(200);
            o.seed = seed;
            o.overflow = Overflow::Drop;
            o.fill = if best { Fill::BestFit } else { Fill::Upstream };
            // A window as large as the input: the stream is the in-memory result.
            let whole = mix(&long, &short, &o).expect("mixes");
            let rows = |bs: &[RecordBatch]| -> Vec<RecordBatch> { bs.to_vec() };
            let streamed = stream(&long, &short, &o, 7);
            prop_assert_eq!(
                arrow_select_concat(&rows(&whole.batches)),
                arrow_select_concat(&streamed)
            );
            // A small window: same output whatever the input chunking; invariants hold.
            o.window_tokens = Some(window);
            let a = stream(&long, &short, &o, 1);
            let b = stream(&long, &short, &o, 5);
            prop_assert_eq!(arrow_select_concat(&a), arrow_select_concat(&b));
            let packed = crate::PmixPacked { schema: whole.schema.clone(), batches: a, stats: whole.stats.clone() };
            let mut seen = std::collections::HashSet::new();
            for row in segments(&packed) {
                prop_assert!(row.iter().map(|s| s.2).sum::<usize>() <= 200);
                prop_assert!(!row[0].0, "rows open with a short sample");
                for (is_long, s, _) in row {
                    prop_assert!(seen.insert((is_long, s)), "sample used twice");
                }
            }
        }
    }

    /// Rows of all batches as plain vectors (batch boundaries differ between runs).
    fn arrow_select_concat(batches: &[RecordBatch]) -> Vec<(Vec<i32>, Vec<i32>)> {
        let mut out = vec![];
        for b in batches {
            let ids = b.column(0).as_list::<i32>();
            let sl = b.column(1).as_list::<i32>();
            for r in 0..b.num_rows() {
                out.push((
                    ids.value(r).as_primitive::<Int32Type>().values().to_vec(),
                    sl.value(r).as_primitive::<Int32Type>().values().to_vec(),
                ));
            }
        }
        out
    }

    #[test]
    fn long_share_matches_p_long() {
        let long = vec![5usize; 4000];
        let short = vec![3usize; 6000];
        let mut o = PmixOptions::new(64);
        o.p_long = 0.3;
        o.seed = 7;
        let p = mix(&long, &short, &o).expect("mixes");
        let st = &p.stats;
        let body = (st.long_segments + st.short_segments - st.prefix_segments) as f64;
        let sd = (0.3f64 * 0.7 / body).sqrt();
        assert!(body > 5000.0, "{st:?}");
        assert!((st.long_segment_share - 0.3).abs() < 4.0 * sd, "{st:?}");
        // p_long = 0 and 1.
        o.p_long = 0.0;
        let p0 = mix(&long, &short, &o).expect("mixes");
        assert_eq!(p0.stats.long_segments, 0);
        o.p_long = 1.0;
        let p1 = mix(&long, &short, &o).expect("mixes");
        assert_eq!(p1.stats.short_segments, p1.stats.prefix_segments);
        assert_eq!(p1.stats.long_unused, 0);
    }

    #[test]
    fn best_fit_fills_rows_better() {
        let long: Vec<usize> = (0..300).map(|i| 100 + (i * 37) % 150).collect();
        let short: Vec<usize> = (0..3000).map(|i| 5 + (i * 13) % 60).collect();
        let mut o = PmixOptions::new(512);
        let up = mix(&long, &short, &o).expect("mixes");
        o.fill = Fill::BestFit;
        let bf = mix(&long, &short, &o).expect("mixes");
        assert!(
            bf.stats.fill_rate > up.stats.fill_rate,
            "{:?} vs {:?}",
            bf.stats,
            up.stats
        );
        assert!(bf.stats.best_fit_segments > 0);
        assert!(bf.stats.fill_rate > 0.99, "{:?}", bf.stats);
    }

    #[test]
    fn recycle_with_max_rows_reuses_samples() {
        let mut o = PmixOptions::new(100);
        o.exhausted = Exhausted::Recycle;
        o.max_rows = Some(50);
        let p = mix(&[30, 40], &[10, 20], &o).expect("mixes");
        assert_eq!(p.stats.rows, 50);
        assert!(p.stats.reused_placements > 0);
        o.max_rows = None;
        let p = mix(&[30, 40], &[10, 20], &o).expect("mixes");
        assert_eq!(p.stats.long_used, 2);
        assert_eq!(
            p.stats.long_segments, 2,
            "without max_rows every long sample once"
        );
    }

    #[test]
    fn bad_input() {
        let mut o = PmixOptions::new(100);
        o.p_long = 1.5;
        assert!(mix(&[5], &[5], &o).is_err());
        o = PmixOptions::new(100);
        let e = mix(&[5], &[], &o).expect_err("no shorts for the prefix");
        assert!(e.to_string().contains("short pool is empty"), "{e}");
        let e = mix(&[500], &[5], &o).expect_err("too long");
        assert!(
            e.to_string()
                .starts_with("in the long samples: row 0 has 500 tokens"),
            "{e}"
        );
        o.p_long = 1.0;
        let e = mix(&[98], &[5], &o).expect_err("does not fit next to the prefix");
        assert!(
            e.to_string().contains("only 95 of seq_len=100 remain"),
            "{e}"
        );
        o.overflow = Overflow::Truncate;
        let p = mix(&[98], &[5], &o).expect("truncates");
        assert_eq!(p.stats.truncated_tokens, 3);
        o.overflow = Overflow::Split;
        assert!(mix(&[5], &[5], &o).is_err());
        // Empty long pool: rows of shorts until the first long draw.
        let p = mix(&[], &[5, 5, 5], &PmixOptions::new(100)).expect("mixes");
        assert_eq!(p.stats.long_segments, 0);
    }
}
