//! Fuzz target `plan`: the planners over raw lengths.
//!
//! Invariants: every item lands in exactly one row, rows are non-empty, ascending in item index and
//! within capacity; `sequential` is next-fit in input order; `bfd`/`ffd` leave at most one row at
//! most half full; `ffd` equals a naive first-fit-decreasing and `bfd` opens as many rows as a
//! naive best-fit-decreasing (for small inputs, where the quadratic references are cheap).

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use longmagpie_core::reference::{naive_bfd_rows, naive_ffd};
use longmagpie_core::{plan, Strategy};

#[derive(Arbitrary, Debug)]
struct Case {
    /// Capacity selector: small capacities and ones around the 64-bit word / 2^16 boundaries.
    cap: u32,
    strategy: u8,
    lengths: Vec<u32>,
}

const NAIVE_MAX_ITEMS: usize = 2_000;

fn capacity(raw: u32) -> u32 {
    match raw % 8 {
        // Near the word boundaries of the successor set's levels.
        0 => 63 + (raw >> 3) % 3,
        1 => 4095 + (raw >> 3) % 3,
        2 => 65_535 + (raw >> 3) % 3,
        3 => 262_143 + (raw >> 3) % 3,
        _ => 1 + (raw >> 3) % 300,
    }
}

fuzz_target!(|case: Case| {
    let cap = capacity(case.cap);
    let strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][case.strategy as usize % 3];
    // Lengths in 1..=cap; small raw values stay as they are so the fuzzer controls exact sizes.
    let lengths: Vec<u32> = case.lengths.iter().map(|&l| l % cap + 1).collect();
    let p = plan(&lengths, cap, strategy);

    assert_eq!(
        p.row_offsets.first().copied().unwrap_or(0),
        0,
        "offsets start at 0"
    );
    assert_eq!(p.items.len(), lengths.len(), "one entry per item");
    assert_eq!(
        *p.row_offsets.last().unwrap_or(&0),
        p.items.len(),
        "offsets end at items"
    );
    let mut seen = vec![false; lengths.len()];
    let mut sums = Vec::with_capacity(p.rows());
    for r in 0..p.rows() {
        let row = p.row(r);
        assert!(!row.is_empty(), "row {r} is empty");
        assert!(
            row.windows(2).all(|w| w[0] < w[1]),
            "row {r} not ascending: {row:?}"
        );
        let sum: u64 = row.iter().map(|&i| lengths[i as usize] as u64).sum();
        assert!(sum <= cap as u64, "row {r} holds {sum} > cap {cap}");
        for &i in row {
            assert!(!seen[i as usize], "item {i} placed twice");
            seen[i as usize] = true;
        }
        sums.push(sum);
    }
    assert!(seen.iter().all(|&s| s), "some item not placed");

    match strategy {
        Strategy::Sequential => {
            // Input order across rows, and a row closes only when the next item does not fit.
            assert!(
                p.items.windows(2).all(|w| w[0] < w[1]),
                "sequential reorders"
            );
            for r in 1..p.rows() {
                let first = lengths[p.row(r)[0] as usize] as u64;
                assert!(
                    sums[r - 1] + first > cap as u64,
                    "row {} closed early",
                    r - 1
                );
            }
        }
        Strategy::Bfd | Strategy::Ffd => {
            let light = sums.iter().filter(|&&s| 2 * s <= cap as u64).count();
            assert!(light <= 1, "{light} rows at most half full: {sums:?}");
            if lengths.len() <= NAIVE_MAX_ITEMS {
                if strategy == Strategy::Ffd {
                    let reference = naive_ffd(&lengths, cap);
                    for r in 0..p.rows() {
                        for &i in p.row(r) {
                            assert_eq!(reference[i as usize] as usize, r, "ffd item {i}");
                        }
                    }
                } else {
                    assert_eq!(p.rows(), naive_bfd_rows(&lengths, cap), "bfd row count");
                }
            }
        }
    }
});
