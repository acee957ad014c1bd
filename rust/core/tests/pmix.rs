//! Tests of p-mix (`pack_pmix` and `PmixStream`) through the public API: rows open with short
//! samples, every sample is used once, the stream equals the in-memory result, error paths.

mod common;

use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::RecordBatch;
use proptest::prelude::*;

use common::{batch, list_i32, proptest_config};
use longmagpie_core::pmix::{BatchSource, PmixStream};
use longmagpie_core::{pack_pmix, Exhausted, Fill, Overflow, PackError, PmixOptions, PmixPacked};

/// Where proptest keeps the failing cases of this file.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/proptest-regressions/tests/pmix.txt"
);

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
    #![proptest_config(proptest_config(96, REGRESSIONS))]

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
    #![proptest_config(proptest_config(48, REGRESSIONS))]

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
        let packed = PmixPacked { schema: whole.schema.clone(), batches: a, stats: whole.stats.clone() };
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
