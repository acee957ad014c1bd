//! Bin-packing plans over lengths alone: which item goes into which row.
//!
//! All planners are sequential and deterministic (the plan never depends on a thread count). They
//! return a [`Plan`]: rows in the order they were opened, and within a row the items in ascending
//! item index, so a row reads in input order.

use std::str::FromStr;

use crate::error::PackError;

/// How items are assigned to rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Best-fit decreasing: longest first, each into the open row it fills most tightly
    /// (O(n log L) with a hierarchical bitset over remaining capacities).
    Bfd,
    /// First-fit decreasing: longest first, each into the earliest opened row it fits
    /// (O(n log n) with a max segment tree over rows).
    Ffd,
    /// Order-preserving greedy (next-fit): items in input order; a row closes when the next item
    /// does not fit.
    Sequential,
}

impl FromStr for Strategy {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bfd" => Ok(Strategy::Bfd),
            "ffd" => Ok(Strategy::Ffd),
            "sequential" => Ok(Strategy::Sequential),
            other => Err(PackError::InvalidArgument(format!(
                "unknown strategy '{other}'; expected one of 'bfd', 'ffd', 'sequential'"
            ))),
        }
    }
}

impl Strategy {
    /// The name used in the Python API.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Bfd => "bfd",
            Strategy::Ffd => "ffd",
            Strategy::Sequential => "sequential",
        }
    }
}

/// Rows of item indices: row `r` holds `items[row_offsets[r]..row_offsets[r + 1]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// `rows + 1` offsets into `items`.
    pub row_offsets: Vec<usize>,
    /// Item indices grouped by row, ascending within a row.
    pub items: Vec<u32>,
}

impl Plan {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.row_offsets.len().saturating_sub(1)
    }

    /// Items of row `r`.
    pub fn row(&self, r: usize) -> &[u32] {
        &self.items[self.row_offsets[r]..self.row_offsets[r + 1]]
    }
}

/// Plans rows of capacity `cap` for items of the given `lengths`.
///
/// Every length must be in `1..=cap` (the caller applies the overflow policy first and drops empty
/// items); violating that is a programming error and panics.
pub fn plan(lengths: &[u32], cap: u32, strategy: Strategy) -> Plan {
    assert!(cap > 0, "capacity must be positive");
    assert!(
        lengths.len() < u32::MAX as usize,
        "at most u32::MAX - 1 items per plan"
    );
    debug_assert!(lengths.iter().all(|&l| l >= 1 && l <= cap));
    let (bin_of, n_bins) = match strategy {
        Strategy::Sequential => next_fit(lengths, cap),
        Strategy::Bfd => best_fit_decreasing(lengths, cap),
        Strategy::Ffd => first_fit_decreasing(lengths, cap),
    };
    group_by_bin(&bin_of, n_bins)
}

/// Counting sort of items by bin; items keep ascending index within their bin.
fn group_by_bin(bin_of: &[u32], n_bins: usize) -> Plan {
    let mut row_offsets = vec![0usize; n_bins + 1];
    for &b in bin_of {
        row_offsets[b as usize + 1] += 1;
    }
    for r in 0..n_bins {
        row_offsets[r + 1] += row_offsets[r];
    }
    let mut cursor = row_offsets[..n_bins].to_vec();
    let mut items = vec![0u32; bin_of.len()];
    for (i, &b) in bin_of.iter().enumerate() {
        let c = &mut cursor[b as usize];
        items[*c] = i as u32;
        *c += 1;
    }
    Plan { row_offsets, items }
}

fn next_fit(lengths: &[u32], cap: u32) -> (Vec<u32>, usize) {
    let mut bin_of = Vec::with_capacity(lengths.len());
    let mut bins = 0usize;
    let mut used = cap; // forces a new bin for the first item
    for &l in lengths {
        if used + l > cap {
            bins += 1;
            used = 0;
        }
        used += l;
        bin_of.push((bins - 1) as u32);
    }
    (bin_of, bins)
}

/// Item indices by decreasing length, ties by increasing index (a stable counting sort, O(n + L)).
fn decreasing_order(lengths: &[u32], cap: u32) -> Vec<u32> {
    let mut start = vec![0usize; cap as usize + 2];
    // Bucket k holds length cap - k, so ascending buckets are descending lengths.
    for &l in lengths {
        start[(cap - l) as usize + 1] += 1;
    }
    for k in 0..=cap as usize {
        start[k + 1] += start[k];
    }
    let mut order = vec![0u32; lengths.len()];
    for (i, &l) in lengths.iter().enumerate() {
        let s = &mut start[(cap - l) as usize];
        order[*s] = i as u32;
        *s += 1;
    }
    order
}

const NONE: u32 = u32::MAX;

/// Hierarchical bitset over `0..n` with "smallest set element >= x" in O(log64 n).
pub(crate) struct SuccessorSet {
    levels: Vec<Vec<u64>>, // levels[0] = one bit per element; levels[k+1] = one bit per word of levels[k]
}

impl SuccessorSet {
    pub(crate) fn new(n: usize) -> Self {
        let mut levels = Vec::new();
        let mut len = n.max(1);
        loop {
            let words = len.div_ceil(64);
            levels.push(vec![0u64; words]);
            if words == 1 {
                break;
            }
            len = words;
        }
        SuccessorSet { levels }
    }

    pub(crate) fn insert(&mut self, mut x: usize) {
        for level in &mut self.levels {
            let (w, b) = (x / 64, x % 64);
            let was_empty = level[w] == 0;
            level[w] |= 1u64 << b;
            if !was_empty {
                return;
            }
            x = w;
        }
    }

    pub(crate) fn remove(&mut self, mut x: usize) {
        for level in &mut self.levels {
            let (w, b) = (x / 64, x % 64);
            level[w] &= !(1u64 << b);
            if level[w] != 0 {
                return;
            }
            x = w;
        }
    }

    /// Smallest element `>= x`, if any.
    pub(crate) fn successor(&self, x: usize) -> Option<usize> {
        let mut x = x;
        let mut depth = 0;
        // Climb until a word holds a set bit at or after the position.
        loop {
            let level = &self.levels[depth];
            let (w, b) = (x / 64, x % 64);
            if w < level.len() {
                let masked = level[w] & (u64::MAX << b);
                if masked != 0 {
                    x = w * 64 + masked.trailing_zeros() as usize;
                    break;
                }
            }
            if depth + 1 == self.levels.len() {
                return None;
            }
            depth += 1;
            x = w + 1;
        }
        // Descend to the smallest set bit below.
        while depth > 0 {
            depth -= 1;
            let word = self.levels[depth][x];
            x = x * 64 + word.trailing_zeros() as usize;
        }
        Some(x)
    }
}

fn best_fit_decreasing(lengths: &[u32], cap: u32) -> (Vec<u32>, usize) {
    let order = decreasing_order(lengths, cap);
    let mut bin_of = vec![0u32; lengths.len()];
    // Open bins keyed by remaining space: an intrusive LIFO list per space value.
    let mut head = vec![NONE; cap as usize + 1];
    let mut next: Vec<u32> = Vec::new();
    let mut spaces = SuccessorSet::new(cap as usize + 1);
    let mut n_bins = 0usize;
    for &i in &order {
        let l = lengths[i as usize];
        let (bin, space) = match spaces.successor(l as usize) {
            Some(s) => {
                let b = head[s];
                head[s] = next[b as usize];
                if head[s] == NONE {
                    spaces.remove(s);
                }
                (b, s as u32 - l)
            }
            None => {
                next.push(NONE);
                n_bins += 1;
                ((n_bins - 1) as u32, cap - l)
            }
        };
        bin_of[i as usize] = bin;
        if space > 0 {
            let s = space as usize;
            next[bin as usize] = head[s];
            if head[s] == NONE {
                spaces.insert(s);
            }
            head[s] = bin;
        }
    }
    (bin_of, n_bins)
}

/// Max segment tree over bins in opening order; finds the leftmost bin with space >= l.
struct FirstFitTree {
    size: usize,
    tree: Vec<u32>,
}

impl FirstFitTree {
    fn new(max_bins: usize) -> Self {
        let size = max_bins.next_power_of_two().max(1);
        FirstFitTree {
            size,
            tree: vec![0; 2 * size],
        }
    }

    fn set(&mut self, bin: usize, space: u32) {
        let mut i = bin + self.size;
        self.tree[i] = space;
        while i > 1 {
            i /= 2;
            self.tree[i] = self.tree[2 * i].max(self.tree[2 * i + 1]);
        }
    }

    fn leftmost_at_least(&self, l: u32) -> Option<usize> {
        if self.tree[1] < l {
            return None;
        }
        let mut i = 1;
        while i < self.size {
            i = if self.tree[2 * i] >= l {
                2 * i
            } else {
                2 * i + 1
            };
        }
        Some(i - self.size)
    }
}

fn first_fit_decreasing(lengths: &[u32], cap: u32) -> (Vec<u32>, usize) {
    let order = decreasing_order(lengths, cap);
    let mut bin_of = vec![0u32; lengths.len()];
    let mut tree = FirstFitTree::new(lengths.len());
    let mut space: Vec<u32> = Vec::new();
    for &i in &order {
        let l = lengths[i as usize];
        let bin = match tree.leftmost_at_least(l) {
            Some(b) => b,
            None => {
                space.push(cap);
                space.len() - 1
            }
        };
        space[bin] -= l;
        tree.set(bin, space[bin]);
        bin_of[i as usize] = bin as u32;
    }
    let n = space.len();
    (bin_of, n)
}

#[cfg(test)]
mod tests {
    use super::Strategy;
    use super::*;
    use crate::reference::{naive_bfd_rows, naive_ffd};
    use proptest::prelude::*;

    fn row_sums(p: &Plan, lengths: &[u32]) -> Vec<u64> {
        (0..p.rows())
            .map(|r| p.row(r).iter().map(|&i| lengths[i as usize] as u64).sum())
            .collect()
    }

    #[test]
    fn bfd_prefers_tightest_row() {
        // 6 opens row0 (space 4), 5 opens row1 (space 5), then 4 goes to row0 (exact), 5 to row1.
        let p = plan(&[6, 5, 4, 5], 10, Strategy::Bfd);
        assert_eq!(p.rows(), 2);
        assert_eq!(p.row(0), &[0, 2]);
        assert_eq!(p.row(1), &[1, 3]);
    }

    #[test]
    fn ffd_takes_first_row_that_fits() {
        // order: 7(0) 5(1) 3(2) 2(3): 7 -> r0 (3 left), 5 -> r1 (5 left), 3 -> r0 (first fit), 2 -> r1.
        let p = plan(&[7, 5, 3, 2], 10, Strategy::Ffd);
        assert_eq!(p.row(0), &[0, 2]);
        assert_eq!(p.row(1), &[1, 3]);
    }

    #[test]
    fn equal_spaces_break_ties_to_the_latest_row() {
        // Rows 0 and 1 both have space 4 when the 3 arrives: ffd takes row 0, bfd the latest (row 1).
        let lengths = [6, 6, 3];
        assert_eq!(plan(&lengths, 10, Strategy::Ffd).row(0), &[0, 2]);
        assert_eq!(plan(&lengths, 10, Strategy::Bfd).row(1), &[1, 2]);
    }

    #[test]
    fn sequential_keeps_order() {
        let p = plan(&[4, 4, 4, 1, 9], 10, Strategy::Sequential);
        assert_eq!(p.row(0), &[0, 1]);
        assert_eq!(p.row(1), &[2, 3]);
        assert_eq!(p.row(2), &[4]);
    }

    #[test]
    fn successor_set_walks_levels() {
        let mut s = SuccessorSet::new(70_000);
        assert_eq!(s.successor(0), None);
        s.insert(65_536);
        s.insert(3);
        assert_eq!(s.successor(0), Some(3));
        assert_eq!(s.successor(4), Some(65_536));
        s.remove(65_536);
        assert_eq!(s.successor(4), None);
        assert_eq!(s.successor(69_999), None);
    }

    #[test]
    fn empty_input_gives_no_rows() {
        for s in [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential] {
            let p = plan(&[], 8, s);
            assert_eq!(p.rows(), 0);
            assert!(p.items.is_empty());
        }
    }

    proptest! {
        #[test]
        fn every_item_once_and_rows_within_cap(
            cap in 1u32..200,
            raw in proptest::collection::vec(1u32..1000, 0..300),
            s in 0usize..3,
        ) {
            let strategy = [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential][s];
            let lengths: Vec<u32> = raw.iter().map(|&l| (l - 1) % cap + 1).collect();
            let p = plan(&lengths, cap, strategy);
            let mut seen = vec![false; lengths.len()];
            for r in 0..p.rows() {
                let row = p.row(r);
                prop_assert!(!row.is_empty());
                prop_assert!(row.windows(2).all(|w| w[0] < w[1]));
                let sum: u64 = row.iter().map(|&i| lengths[i as usize] as u64).sum();
                prop_assert!(sum <= cap as u64);
                for &i in row {
                    prop_assert!(!seen[i as usize]);
                    seen[i as usize] = true;
                }
            }
            prop_assert!(seen.iter().all(|&x| x));
            // Any-fit property: at most one row is at most half full.
            if strategy != Strategy::Sequential {
                let sums = row_sums(&p, &lengths);
                let light = sums.iter().filter(|&&s| 2 * s <= cap as u64).count();
                prop_assert!(light <= 1, "more than one row at most half full: {:?}", sums);
            }
        }

        #[test]
        fn bfd_matches_naive_best_fit_row_count(
            cap in 1u32..120,
            raw in proptest::collection::vec(1u32..500, 0..120),
        ) {
            let lengths: Vec<u32> = raw.iter().map(|&l| (l - 1) % cap + 1).collect();
            let p = plan(&lengths, cap, Strategy::Bfd);
            prop_assert_eq!(p.rows(), naive_bfd_rows(&lengths, cap));
        }

        #[test]
        fn ffd_matches_naive_first_fit_exactly(
            cap in 1u32..120,
            raw in proptest::collection::vec(1u32..500, 0..120),
        ) {
            let lengths: Vec<u32> = raw.iter().map(|&l| (l - 1) % cap + 1).collect();
            let p = plan(&lengths, cap, Strategy::Ffd);
            let reference = naive_ffd(&lengths, cap);
            for r in 0..p.rows() {
                for &i in p.row(r) {
                    prop_assert_eq!(reference[i as usize] as usize, r);
                }
            }
        }
    }
}
