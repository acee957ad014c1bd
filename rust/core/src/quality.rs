//! Quality filters over text columns: near-duplicate removal (MinHash + LSH, verified by exact
//! Jaccard) and n-gram decontamination against evaluation texts.
//!
//! Both read Arrow string arrays without copying, hash in parallel on a dedicated pool, and decide
//! sequentially in input order, so the result is the same for any thread count or batch size.
//!
//! **Words.** A text is cut into words at every character that is not alphanumeric (Unicode), an
//! apostrophe inside a word excepted (it is skipped), and each word is lower-cased: punctuation,
//! case and spacing never change a shingle. A script
//! without spaces (Chinese, Japanese) gives long "words"; such texts dedup as whole runs.
//!
//! **Hashes.** Words are hashed with FNV-1a over their lower-cased UTF-8 bytes, then mixed
//! (SplitMix64); a shingle of `k` words folds its word hashes. The hash is this crate's own, so
//! signatures are the same on every machine and Rust version.

use std::collections::HashMap;

use arrow_array::ArrayRef;
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};
use rayon::prelude::*;

use crate::columns::str_column;
use crate::error::AssembleError;

type Result<T> = std::result::Result<T, AssembleError>;

const MERSENNE_61: u64 = (1 << 61) - 1;
const NONE: u32 = u32::MAX;

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `(a * x + b) mod (2^61 - 1)` for `a, x, b < 2^61 - 1`, by the Mersenne folding (no division).
#[inline]
fn affine_mod_61(a: u64, x: u64, b: u64) -> u64 {
    let m = MERSENNE_61 as u128;
    let p = a as u128 * x as u128 + b as u128;
    let r = (p & m) + (p >> 61);
    let r = ((r & m) + (r >> 61)) as u64;
    if r >= MERSENNE_61 {
        r - MERSENNE_61
    } else {
        r
    }
}

/// Whether `c` is an apostrophe (ASCII or typographic): inside a word it is skipped, so "Smeaton's" and
/// "Smeatons", "don't" and "dont" are the same word.
fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{02bc}')
}

/// The hash of every word of `text`: lower-cased, cut at non-alphanumeric characters (an apostrophe
/// inside a word is skipped).
pub fn word_hashes(text: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut in_word = false;
    let mut buf = [0u8; 4];
    for c in text.chars() {
        if c.is_alphanumeric() {
            in_word = true;
            for lc in c.to_lowercase() {
                for &b in lc.encode_utf8(&mut buf).as_bytes() {
                    h ^= b as u64;
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
        } else if in_word && is_apostrophe(c) {
            continue;
        } else if in_word {
            out.push(mix(h));
            h = 0xcbf2_9ce4_8422_2325;
            in_word = false;
        }
    }
    if in_word {
        out.push(mix(h));
    }
    out
}

/// The hash of the `n` words starting at each position (`words.len() - n + 1` of them).
fn gram_hashes(words: &[u64], n: usize) -> impl Iterator<Item = u64> + '_ {
    words.windows(n).map(move |w| {
        let h = w
            .iter()
            .fold(n as u64, |acc, &x| mix(acc.rotate_left(17) ^ x));
        mix(h)
    })
}

/// Sorted, distinct 32-bit shingle hashes of a text: its `k`-word shingles, or one shingle of all
/// its words when it has fewer than `k` (so a short text still has a signature).
pub fn shingles(text: &str, k: usize) -> Vec<u32> {
    let words = word_hashes(text);
    if words.is_empty() {
        return Vec::new();
    }
    let n = k.min(words.len());
    let mut s: Vec<u32> = gram_hashes(&words, n).map(|h| (h >> 32) as u32).collect();
    s.sort_unstable();
    s.dedup();
    s
}

/// Jaccard similarity of two sorted, distinct sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / (a.len() + b.len() - common) as f64
}

/// Options of [`NearDedup`].
#[derive(Clone, Debug)]
pub struct NearDedupOptions {
    /// Words per shingle.
    pub shingle: usize,
    /// LSH bands.
    pub bands: usize,
    /// MinHash values per band (the signature has `bands * rows` values).
    pub rows: usize,
    /// A row is a near-duplicate of an earlier kept row when their shingle Jaccard is at least this.
    pub threshold: f64,
    /// Seed of the MinHash permutations.
    pub seed: u64,
    /// Hashing threads (`None`: every core); the result does not depend on it.
    pub num_threads: Option<usize>,
}

impl NearDedupOptions {
    fn check(&self) -> Result<()> {
        let bad = |m: String| Err(AssembleError::InvalidArgument(m));
        if self.shingle < 1 {
            return bad(format!("shingle must be >= 1 (got {})", self.shingle));
        }
        if self.bands < 1 || self.rows < 1 || self.bands * self.rows > 1024 {
            return bad(format!(
                "bands and rows must be >= 1 with bands * rows <= 1024 (got {} x {})",
                self.bands, self.rows
            ));
        }
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad(format!(
                "threshold must be in (0, 1] (got {})",
                self.threshold
            ));
        }
        Ok(())
    }
}

/// What [`NearDedup::add`] decided for a batch, one entry per text.
#[derive(Debug, Default)]
pub struct DedupBatch {
    /// Global index of the kept row each text duplicates, `-1` for a kept text.
    pub dup_of: Vec<i64>,
    /// Exact shingle Jaccard to that row (`0` for a kept text).
    pub similarity: Vec<f32>,
    /// Texts with no word (or null): kept, never indexed, never a duplicate.
    pub empty: usize,
}

/// A streaming near-duplicate filter: rows are fed in input order, batch after batch; each row is
/// compared with the rows kept before it (LSH candidates, verified by exact Jaccard on the
/// shingles), and is a duplicate of the earliest one at or above the threshold.
///
/// Memory holds, per kept row, one 32-bit bucket entry per band and its 32-bit shingle hashes;
/// the texts are never kept.
pub struct NearDedup {
    opts: NearDedupOptions,
    perm_a: Vec<u64>,
    perm_b: Vec<u64>,
    buckets: Vec<HashMap<u32, u32>>,
    next: Vec<u32>,
    shingle_values: Vec<u32>,
    shingle_starts: Vec<u64>,
    kept_rows: Vec<u64>,
    seen: u64,
    pool: rayon::ThreadPool,
}

struct Hashed {
    shingles: Vec<u32>,
    keys: Vec<u32>,
}

impl NearDedup {
    /// A filter with no row seen yet.
    pub fn new(opts: NearDedupOptions) -> Result<Self> {
        opts.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
        let n = opts.bands * opts.rows;
        let perm_a = (0..n)
            .map(|_| 1 + rng.next_u64() % (MERSENNE_61 - 1))
            .collect();
        let perm_b = (0..n).map(|_| rng.next_u64() % MERSENNE_61).collect();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(opts.num_threads.unwrap_or(0))
            .build()
            .map_err(|e| AssembleError::InvalidArgument(format!("cannot start threads: {e}")))?;
        Ok(NearDedup {
            buckets: (0..opts.bands).map(|_| HashMap::new()).collect(),
            opts,
            perm_a,
            perm_b,
            next: Vec::new(),
            shingle_values: Vec::new(),
            shingle_starts: vec![0],
            kept_rows: Vec::new(),
            seen: 0,
            pool,
        })
    }

    fn hash(&self, text: Option<&str>) -> Hashed {
        let shingles = text
            .map(|t| shingles(t, self.opts.shingle))
            .unwrap_or_default();
        if shingles.is_empty() {
            return Hashed {
                shingles,
                keys: Vec::new(),
            };
        }
        let mut sig = vec![u64::MAX; self.perm_a.len()];
        for &s in &shingles {
            let x = mix(s as u64) % MERSENNE_61;
            for (m, (&a, &b)) in sig.iter_mut().zip(self.perm_a.iter().zip(&self.perm_b)) {
                let v = affine_mod_61(a, x, b);
                if v < *m {
                    *m = v;
                }
            }
        }
        let keys = sig
            .chunks(self.opts.rows)
            .enumerate()
            .map(|(band, chunk)| {
                let h = chunk
                    .iter()
                    .fold(band as u64, |acc, &v| mix(acc.rotate_left(23) ^ v));
                (h >> 32) as u32
            })
            .collect();
        Hashed { shingles, keys }
    }

    fn kept_shingles(&self, kept: u32) -> &[u32] {
        let k = kept as usize;
        &self.shingle_values[self.shingle_starts[k] as usize..self.shingle_starts[k + 1] as usize]
    }

    /// Decides every text of `texts` (a string array), in order, after every row fed before.
    pub fn add(&mut self, texts: &ArrayRef, column: &str) -> Result<DedupBatch> {
        use arrow_array::Array;
        let col = str_column(texts, column)?;
        let n = texts.len();
        let hashed: Vec<Hashed> = self.pool.install(|| {
            (0..n)
                .into_par_iter()
                .map(|i| self.hash(col.get(i)))
                .collect()
        });
        let mut out = DedupBatch {
            dup_of: Vec::with_capacity(n),
            similarity: Vec::with_capacity(n),
            empty: 0,
        };
        let mut candidates: Vec<u32> = Vec::new();
        for h in hashed {
            let row = self.seen;
            self.seen += 1;
            if h.shingles.is_empty() {
                out.empty += 1;
                out.dup_of.push(-1);
                out.similarity.push(0.0);
                continue;
            }
            candidates.clear();
            for (band, key) in h.keys.iter().enumerate() {
                let mut at = self.buckets[band].get(key).copied().unwrap_or(NONE);
                while at != NONE {
                    candidates.push(at);
                    at = self.next[at as usize * self.opts.bands + band];
                }
            }
            candidates.sort_unstable();
            candidates.dedup();
            let hit = candidates.iter().find_map(|&c| {
                let j = jaccard(&h.shingles, self.kept_shingles(c));
                (j >= self.opts.threshold).then_some((c, j))
            });
            if let Some((c, j)) = hit {
                out.dup_of.push(self.kept_rows[c as usize] as i64);
                out.similarity.push(j as f32);
                continue;
            }
            let kept = u32::try_from(self.kept_rows.len()).map_err(|_| {
                AssembleError::InvalidArgument("over 4 billion distinct rows in one filter".into())
            })?;
            for (band, key) in h.keys.iter().enumerate() {
                let head = self.buckets[band].insert(*key, kept).unwrap_or(NONE);
                self.next.push(head);
            }
            self.shingle_values.extend_from_slice(&h.shingles);
            self.shingle_starts.push(self.shingle_values.len() as u64);
            self.kept_rows.push(row);
            out.dup_of.push(-1);
            out.similarity.push(0.0);
        }
        Ok(out)
    }

    /// Rows fed so far.
    pub fn rows(&self) -> u64 {
        self.seen
    }

    /// Rows kept and indexed so far (texts without words are kept but not indexed).
    pub fn indexed(&self) -> u64 {
        self.kept_rows.len() as u64
    }

    /// Bytes the index holds (buckets, chains, shingles, row numbers; capacity, not length).
    pub fn memory_bytes(&self) -> u64 {
        let buckets: usize = self
            .buckets
            .iter()
            .map(|b| b.capacity() * (2 * std::mem::size_of::<u32>() + 1))
            .sum();
        (buckets
            + self.next.capacity() * 4
            + self.shingle_values.capacity() * 4
            + self.shingle_starts.capacity() * 8
            + self.kept_rows.capacity() * 8) as u64
    }
}

/// An index of the word `n`-grams of evaluation texts, to find rows that share one with them.
///
/// An evaluation text of fewer than `n` but at least `min_words` words is indexed whole, and
/// matched as a run of that many words (a short question is found too); a shorter one (an answer
/// choice, a number) is skipped, since it would match any row that uses the same few words.
pub struct NgramIndex {
    n: usize,
    min_words: usize,
    grams: HashMap<u64, u32>,
    short_lengths: Vec<usize>,
    pool: rayon::ThreadPool,
}

impl NgramIndex {
    /// An empty index of `n`-grams that skips evaluation texts of fewer than `min_words` words.
    pub fn new(n: usize, min_words: usize, num_threads: Option<usize>) -> Result<Self> {
        if n < 1 || min_words < 1 || min_words > n {
            return Err(AssembleError::InvalidArgument(format!(
                "ngram must be >= 1 and min_words in 1..=ngram (got ngram {n}, min_words {min_words})"
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(num_threads.unwrap_or(0))
            .build()
            .map_err(|e| AssembleError::InvalidArgument(format!("cannot start threads: {e}")))?;
        Ok(NgramIndex {
            n,
            min_words,
            grams: HashMap::new(),
            short_lengths: Vec::new(),
            pool,
        })
    }

    /// Adds the `n`-grams of `texts` (nulls and texts of fewer than `min_words` words skipped),
    /// attributed to `source` (the first source that added a gram keeps it). Returns the texts
    /// that added grams and the texts skipped as too short.
    pub fn add(&mut self, texts: &ArrayRef, source: u32, column: &str) -> Result<(usize, usize)> {
        use arrow_array::Array;
        let col = str_column(texts, column)?;
        let (n, min_words) = (self.n, self.min_words);
        let per_text: Vec<(usize, Vec<u64>)> = self.pool.install(|| {
            (0..texts.len())
                .into_par_iter()
                .map(|i| {
                    let words = col.get(i).map(word_hashes).unwrap_or_default();
                    let len = words.len().min(n);
                    let grams = if len < min_words {
                        Vec::new()
                    } else {
                        gram_hashes(&words, len).collect()
                    };
                    (len, grams)
                })
                .collect()
        });
        let (mut added, mut short) = (0, 0);
        for (len, grams) in per_text {
            if grams.is_empty() {
                short += usize::from(len > 0);
                continue;
            }
            added += 1;
            if len < n && !self.short_lengths.contains(&len) {
                self.short_lengths.push(len);
                self.short_lengths.sort_unstable();
            }
            for g in grams {
                self.grams.entry(g).or_insert(source);
            }
        }
        Ok((added, short))
    }

    /// Distinct grams indexed.
    pub fn len(&self) -> usize {
        self.grams.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.grams.is_empty()
    }

    /// For each text, the smallest source it shares a gram with, or `-1`.
    pub fn first_match(&self, texts: &ArrayRef, column: &str) -> Result<Vec<i32>> {
        use arrow_array::Array;
        let col = str_column(texts, column)?;
        let lengths: Vec<usize> = std::iter::once(self.n)
            .chain(self.short_lengths.iter().copied())
            .collect();
        Ok(self.pool.install(|| {
            (0..texts.len())
                .into_par_iter()
                .map(|i| {
                    let words = col.get(i).map(word_hashes).unwrap_or_default();
                    let mut best: Option<u32> = None;
                    for &len in &lengths {
                        if words.len() < len {
                            continue;
                        }
                        for g in gram_hashes(&words, len) {
                            if let Some(&s) = self.grams.get(&g) {
                                best = Some(best.map_or(s, |b| b.min(s)));
                            }
                        }
                    }
                    best.map_or(-1, |s| s as i32)
                })
                .collect()
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::StringArray;

    use super::*;

    fn texts(v: &[&str]) -> ArrayRef {
        Arc::new(StringArray::from(v.to_vec()))
    }

    fn opts(threshold: f64) -> NearDedupOptions {
        NearDedupOptions {
            shingle: 2,
            bands: 20,
            rows: 3,
            threshold,
            seed: 0,
            num_threads: Some(2),
        }
    }

    #[test]
    fn words_ignore_case_and_punctuation() {
        assert_eq!(
            word_hashes("What is, the CAUSE?"),
            word_hashes("what is the cause")
        );
        assert_eq!(word_hashes("  ...  ").len(), 0);
        assert_eq!(word_hashes("Smeaton's don’t"), word_hashes("smeatons dont"));
        assert_eq!(word_hashes("the students' books").len(), 3);
        assert_eq!(word_hashes("Ünïcode wörds").len(), 2);
    }

    #[test]
    fn near_duplicates_point_at_the_first_kept_row() {
        let mut d = NearDedup::new(opts(0.7)).expect("options");
        let batch = texts(&[
            "What does the report say about the cause of the flood in the valley?",
            "Who wrote the second chapter of the book on river management?",
            "what does the report say about the cause of the flood in the valley",
            "",
        ]);
        let out = d.add(&batch, "query").expect("adds");
        assert_eq!(out.dup_of, vec![-1, -1, 0, -1]);
        assert_eq!(out.similarity[2], 1.0);
        assert_eq!(out.empty, 1);
        let more = texts(&[
            "What does the report say about the cause of the flood in the valley? Please answer.",
        ]);
        let out = d.add(&more, "query").expect("adds");
        assert_eq!(out.dup_of, vec![0]);
        assert!(out.similarity[0] >= 0.7 && out.similarity[0] < 1.0);
        assert_eq!((d.rows(), d.indexed()), (5, 2));
    }

    #[test]
    fn the_result_does_not_depend_on_batches_or_threads() {
        let all: Vec<String> = (0..300)
            .map(|i| {
                format!(
                    "question number {} about topic {} and detail {}",
                    i % 40,
                    i % 7,
                    i % 3
                )
            })
            .collect();
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let run = |threads: usize, batch: usize| {
            let mut o = opts(0.8);
            o.num_threads = Some(threads);
            let mut d = NearDedup::new(o).expect("options");
            let mut dup = Vec::new();
            for chunk in refs.chunks(batch) {
                dup.extend(d.add(&texts(chunk), "q").expect("adds").dup_of);
            }
            dup
        };
        let a = run(1, 300);
        assert_eq!(a, run(2, 7));
        assert_eq!(a, run(3, 1));
        assert!(a.iter().filter(|&&x| x < 0).count() >= 120); // 120 distinct texts, near-dups of them
    }

    #[test]
    fn bad_options_are_named() {
        let mut o = opts(0.0);
        assert!(
            matches!(NearDedup::new(o.clone()), Err(AssembleError::InvalidArgument(m)) if m.contains("threshold"))
        );
        o.threshold = 0.5;
        o.bands = 0;
        assert!(NearDedup::new(o).is_err());
        assert!(NgramIndex::new(0, 1, None).is_err());
        assert!(NgramIndex::new(5, 6, None).is_err());
    }

    #[test]
    fn ngram_index_finds_shared_runs_and_short_texts() {
        let mut idx = NgramIndex::new(5, 2, Some(2)).expect("index");
        idx.add(
            &texts(&["the quick brown fox jumps over the lazy dog"]),
            0,
            "eval",
        )
        .expect("adds");
        let (added, short) = idx
            .add(&texts(&["Name the capital.", "Paris", ""]), 1, "eval")
            .expect("adds");
        assert_eq!((added, short), (1, 1));
        let found = idx
            .first_match(
                &texts(&[
                    "I saw that THE QUICK, brown fox jumps! today",
                    "a quick brown fox",
                    "please name the capital of France",
                    "nothing here at all, Paris",
                ]),
                "query",
            )
            .expect("matches");
        assert_eq!(found, vec![0, -1, 1, -1]);
    }

    proptest::proptest! {
        #[test]
        fn mersenne_folding_equals_the_remainder(a in 1u64..MERSENNE_61, x in 0u64..MERSENNE_61, b in 0u64..MERSENNE_61) {
            let want = ((a as u128 * x as u128 + b as u128) % MERSENNE_61 as u128) as u64;
            proptest::prop_assert_eq!(affine_mod_61(a, x, b), want);
        }


        #[test]
        fn jaccard_is_symmetric_and_bounded(a in proptest::collection::btree_set(0u32..50, 0..20), b in proptest::collection::btree_set(0u32..50, 0..20)) {
            let a: Vec<u32> = a.into_iter().collect();
            let b: Vec<u32> = b.into_iter().collect();
            let j = jaccard(&a, &b);
            proptest::prop_assert!((0.0..=1.0).contains(&j));
            proptest::prop_assert_eq!(j, jaccard(&b, &a));
            proptest::prop_assert_eq!(jaccard(&a, &a), 1.0);
        }
    }
}
