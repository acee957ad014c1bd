//! Quadratic reference planners, the models that the fast ones in [`crate::pack::plan`] are checked
//! against by the unit tests and the `plan` fuzz target.
//!
//! Compiled only for tests and fuzzing (`cfg(any(test, fuzzing))`; cargo-fuzz passes
//! `--cfg fuzzing` to every crate it builds): not part of the public API.

/// Reference first fit decreasing: scan every open bin (quadratic). Returns each item's bin,
/// bins numbered in the order they were opened.
pub fn naive_ffd(lengths: &[u32], cap: u32) -> Vec<u32> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    let mut space: Vec<u32> = Vec::new();
    let mut bin_of = vec![0u32; lengths.len()];
    for i in order {
        let b = match space.iter().position(|&s| s >= lengths[i]) {
            Some(b) => b,
            None => {
                space.push(cap);
                space.len() - 1
            }
        };
        space[b] -= lengths[i];
        bin_of[i] = b as u32;
    }
    bin_of
}

/// Reference best fit decreasing (quadratic): the number of bins it opens. Rows with equal space
/// are interchangeable for the rest of the run, so the row count matches whatever the
/// tie-breaking.
pub fn naive_bfd_rows(lengths: &[u32], cap: u32) -> usize {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(lengths[i]), i));
    let mut space: Vec<u32> = Vec::new();
    for i in order {
        let l = lengths[i];
        let best = space
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= l)
            .min_by_key(|(_, &s)| s)
            .map(|(b, _)| b);
        match best {
            Some(b) => space[b] -= l,
            None => space.push(cap - l),
        }
    }
    space.len()
}
