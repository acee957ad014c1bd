//! `pack_pmix`: p-mix long/short mixing (LongMagpie's "p-Mix").
//!
//! Every row opens with `n_short_prefix` short samples; then, until the row is full, the next
//! segment is a long sample with probability `p_long`, else a short one. Both pools are shuffled
//! and drawn without replacement by a ChaCha8 generator seeded from `seed`, so the plan is the same
//! on every machine; tokens are gathered like `pack`'s (parallel, byte-identical for any thread
//! count). Unlike the upstream script every segment keeps its own boundary (`seq_lengths`) and its
//! `kind`, and the sample that does not fit is carried to the next row instead of being cut.
//!
//! The same engine serves inputs larger than memory ([`PmixStream`]): each pool is read in blocks
//! of about `window_tokens` tokens, shuffled within the block, and rows are gathered into output
//! batches as they close, so memory holds two blocks and one output batch. With a window as large
//! as the input, the stream and [`pack_pmix`] give the same bytes.

use std::str::FromStr;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::gather::{check_discarded, rows_per_batch, schema_with, Discarded, Gather, Piece};
use super::input::{BatchView, Layout};
use super::options;
use super::plan::{Plan, SuccessorSet};
use super::LossWeights;
use super::Overflow;
use crate::error::{PackError, Result};

/// A stream of input record batches (e.g. an Arrow C stream imported from Python).
pub type BatchSource = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// What to do when the drawn sample does not fit in the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Close the row (the upstream behaviour, minus the cut): the sample opens the next row's body.
    Upstream,
    /// First fill the remaining space with the best-fitting unused short samples (largest that
    /// fits, repeatedly), then close the row.
    BestFit,
}

impl FromStr for Fill {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "upstream" => Ok(Fill::Upstream),
            "best_fit" => Ok(Fill::BestFit),
            o => Err(PackError::InvalidArgument(format!(
                "unknown fill '{o}'; expected 'upstream' or 'best_fit'"
            ))),
        }
    }
}

/// What to do when a pool runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Stop when a draw finds its pool empty (the row in progress is kept). Every sample is used
    /// at most once.
    Stop,
    /// When the long pool is empty, go on with short samples only until they run out too.
    ShortOnly,
    /// Reshuffle an exhausted pool and reuse it (the upstream behaviour). Without `max_rows`,
    /// packing ends when every long sample has been used once (short samples are reused as
    /// needed); with `max_rows`, both pools are reused until that many rows exist.
    Recycle,
}

impl FromStr for Exhausted {
    type Err = PackError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "stop" => Ok(Exhausted::Stop),
            "short_only" => Ok(Exhausted::ShortOnly),
            "recycle" => Ok(Exhausted::Recycle),
            o => Err(PackError::InvalidArgument(format!(
                "unknown exhausted policy '{o}'; expected 'stop', 'short_only' or 'recycle'"
            ))),
        }
    }
}

/// Options of [`pack_pmix`].
#[derive(Debug, Clone)]
pub struct PmixOptions {
    /// Row capacity in tokens.
    pub seq_len: usize,
    /// Probability that the next segment after the prefix is long (upstream `choose_rate`: 0.4).
    pub p_long: f64,
    /// Short samples that open every row (upstream `short_data_num`: 1).
    pub n_short_prefix: usize,
    /// Seed of the ChaCha8 generator (shuffles and draws).
    pub seed: u64,
    /// Row closing rule.
    pub fill: Fill,
    /// Samples that cannot fit in a row next to its prefix: `Error`, `Truncate` (to the space
    /// left) or `Drop`. `Split` is not allowed.
    pub overflow: Overflow,
    /// Pool exhaustion rule.
    pub exhausted: Exhausted,
    /// Stop after this many rows.
    pub max_rows: Option<usize>,
    /// Threads of the gather pool; `None` = all cores.
    pub num_threads: Option<usize>,
    /// Shuffle window per pool, in tokens: samples are loaded in blocks of about this many tokens
    /// (cut at sample boundaries) and shuffled within the block. `None` = the whole input.
    pub window_tokens: Option<usize>,
    /// Write a `loss_weights` column of this scheme.
    pub loss_weights: Option<LossWeights>,
    /// Pad every segment to a multiple of this many tokens, as `pack`'s option of that name.
    pub pad_documents_to: Option<usize>,
}

impl PmixOptions {
    /// The upstream defaults: 64k rows, `p_long` 0.4, one short prefix.
    pub fn new(seq_len: usize) -> Self {
        PmixOptions {
            seq_len,
            p_long: 0.4,
            n_short_prefix: 1,
            seed: 0,
            fill: Fill::Upstream,
            overflow: Overflow::Error,
            exhausted: Exhausted::Stop,
            max_rows: None,
            num_threads: None,
            window_tokens: None,
            loss_weights: None,
            pad_documents_to: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PackError::InvalidArgument(m));
        options::check_common(self.seq_len, self.num_threads)?;
        if !(0.0..=1.0).contains(&self.p_long) {
            return bad(format!("p_long must be in [0, 1] (got {})", self.p_long));
        }
        if self.overflow == Overflow::Split {
            return bad(
                "overflow='split' is not available for p-mix (a split conversation loses its question or answer); \
                 use 'error', 'truncate' or 'drop'"
                    .into(),
            );
        }
        if self.exhausted == Exhausted::Recycle && self.max_rows.is_none() && self.p_long == 0.0 {
            return bad(
                "exhausted='recycle' with p_long=0 never ends: pass max_rows, or another exhausted policy".into(),
            );
        }
        if self.window_tokens == Some(0) {
            return bad("window_tokens must be >= 1 (or None for the whole input)".into());
        }
        if self.max_rows == Some(0) {
            return bad("max_rows must be >= 1 (or None)".into());
        }
        options::check_pad_documents(self.pad_documents_to, self.seq_len, None)
    }

    /// Tokens a segment of `len` tokens occupies in a row (see `pad_documents_to`).
    fn slot(&self, len: u32) -> usize {
        options::slot(len, self.pad_documents_to.map(|m| m as u32)) as usize
    }
}

/// Counts of one p-mix run. Token counts are real tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PmixStats {
    /// Output rows.
    pub rows: u64,
    /// Real tokens in the output.
    pub output_tokens: u64,
    /// Padding tokens added by `pad_documents_to` (after each segment, inside it).
    pub document_pad_tokens: u64,
    /// `output_tokens / (rows * seq_len)`.
    pub fill_rate: f64,
    /// Rows of the long input.
    pub long_samples: u64,
    /// Rows of the short input.
    pub short_samples: u64,
    /// Tokens of the long input.
    pub long_input_tokens: u64,
    /// Tokens of the short input.
    pub short_input_tokens: u64,
    /// Long samples placed at least once.
    pub long_used: u64,
    /// Short samples placed at least once.
    pub short_used: u64,
    /// Long samples never placed (not counting empty or dropped ones).
    pub long_unused: u64,
    /// Short samples never placed (not counting empty or dropped ones).
    pub short_unused: u64,
    /// Placements of samples already used before (`exhausted = recycle`).
    pub reused_placements: u64,
    /// Long segments in the output.
    pub long_segments: u64,
    /// Short segments in the output (prefix included).
    pub short_segments: u64,
    /// Short segments that open rows.
    pub prefix_segments: u64,
    /// Short segments placed by `fill = best_fit`.
    pub best_fit_segments: u64,
    /// Long segments / segments after the prefix (compare with `p_long`; `fill = best_fit` and
    /// `exhausted = short_only` lower it).
    pub long_segment_share: f64,
    /// Long tokens in the output.
    pub long_tokens: u64,
    /// Short tokens in the output.
    pub short_tokens: u64,
    /// `long_tokens / output_tokens`.
    pub long_token_share: f64,
    /// Empty samples skipped (both pools).
    pub empty_samples: u64,
    /// Samples cut by `overflow = truncate`.
    pub truncated_samples: u64,
    /// Tokens removed by truncation.
    pub truncated_tokens: u64,
    /// Samples left out by `overflow = drop`.
    pub dropped_samples: u64,
    /// Tokens of dropped samples.
    pub dropped_tokens: u64,
    /// Most segments in one row.
    pub max_documents_per_row: u64,
}

/// The result of [`pack_pmix`].
#[derive(Debug, Clone)]
pub struct PmixPacked {
    /// Output schema: `pack`'s plus `kind` list<string>.
    pub schema: SchemaRef,
    /// Output rows.
    pub batches: Vec<RecordBatch>,
    /// What happened.
    pub stats: PmixStats,
}

/// Portable draws from ChaCha8: the stream is value-stable across platforms and versions.
struct Draws(ChaCha8Rng);

impl Draws {
    fn new(seed: u64) -> Self {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Draws(ChaCha8Rng::from_seed(bytes))
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n` (multiply-shift; n is far below 2^64, so the bias is negligible).
    fn below(&mut self, n: usize) -> usize {
        ((self.0.next_u64() as u128 * n as u128) >> 64) as usize
    }

    fn shuffle(&mut self, v: &mut [u32]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

/// Unused short samples by length, for "largest sample that fits" in O(log L).
struct FitIndex {
    seq_len: usize,
    /// Samples of each length, in shuffled order.
    by_len: Vec<Vec<u32>>,
    cursor: Vec<u32>,
    /// Keys `seq_len - len` of non-empty buckets (successor = largest length that fits).
    keys: SuccessorSet,
}

impl FitIndex {
    fn new(order: &[u32], len: &[u32], seq_len: usize) -> Self {
        let mut by_len = vec![Vec::new(); seq_len + 1];
        let mut keys = SuccessorSet::new(seq_len + 1);
        for &s in order {
            let l = len[s as usize] as usize;
            if by_len[l].is_empty() {
                keys.insert(seq_len - l);
            }
            by_len[l].push(s);
        }
        FitIndex {
            seq_len,
            cursor: vec![0; seq_len + 1],
            by_len,
            keys,
        }
    }

    /// Takes the earliest (in shuffled order) unused sample of the largest length `<= room`.
    fn take_best(&mut self, room: usize, used: &[bool]) -> Option<u32> {
        loop {
            let key = self.keys.successor(self.seq_len - room.min(self.seq_len))?;
            let l = self.seq_len - key;
            let bucket = &self.by_len[l];
            let c = &mut self.cursor[l];
            while (*c as usize) < bucket.len() && used[bucket[*c as usize] as usize] {
                *c += 1;
            }
            if (*c as usize) < bucket.len() {
                let s = bucket[*c as usize];
                *c += 1;
                return Some(s);
            }
            self.keys.remove(key);
        }
    }
}

/// Which pool a sample comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Long,
    Short,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Long => "long",
            Kind::Short => "short",
        }
    }
}

/// One input stream, cut into blocks of about `window` tokens at sample boundaries.
struct Source {
    layout: Layout,
    batches: BatchSource,
    /// The rest of a batch cut by the previous block.
    pending: Option<RecordBatch>,
    done: bool,
    /// Pool-wide index of the next sample (error messages).
    rows_seen: usize,
}

/// The current block of one pool: where its samples are, their lengths, a shuffled order.
struct Pool {
    source: Source,
    /// Store id and row of each sample of the block.
    loc: Vec<(u32, u32)>,
    /// Pool-wide row index of each sample.
    gid: Vec<u64>,
    /// Tokens per sample (after `truncate` to `seq_len`).
    len: Vec<u32>,
    /// Samples that may still be drawn (not empty, not dropped).
    live: Vec<bool>,
    order: Vec<u32>,
    pos: usize,
    /// Used in the current pass over `order`.
    used: Vec<bool>,
    /// Used at least once (within this block).
    ever: Vec<bool>,
    /// Best-fit index (short pool, `fill = best_fit` only).
    index: Option<FitIndex>,
    /// Live samples loaded so far, over all blocks (for `unused = live - used`).
    live_loaded: u64,
    /// Samples placed at least once, over all blocks.
    used_count: u64,
    /// `pad_documents_to`: the best-fit index sorts samples by padded length.
    multiple: Option<u32>,
}

impl Pool {
    fn new(layout: Layout, batches: BatchSource, best_fit: bool, multiple: Option<u32>) -> Self {
        Pool {
            source: Source {
                layout,
                batches,
                pending: None,
                done: false,
                rows_seen: 0,
            },
            loc: Vec::new(),
            gid: Vec::new(),
            len: Vec::new(),
            live: Vec::new(),
            order: Vec::new(),
            pos: 0,
            used: Vec::new(),
            ever: Vec::new(),
            index: best_fit.then(|| FitIndex::new(&[], &[], 0)),
            live_loaded: 0,
            used_count: 0,
            multiple,
        }
    }

    fn reshuffle(&mut self, draws: &mut Draws, seq_len: usize) {
        self.order = (0..self.len.len() as u32)
            .filter(|&s| self.live[s as usize])
            .collect();
        draws.shuffle(&mut self.order);
        self.pos = 0;
        self.used.iter_mut().for_each(|u| *u = false);
        if self.index.is_some() {
            // Best fit finds the largest sample whose padded length fits the room.
            let index = match self.multiple {
                Some(m) => {
                    let slots: Vec<u32> = self
                        .len
                        .iter()
                        .map(|&l| options::slot(l, Some(m)))
                        .collect();
                    FitIndex::new(&self.order, &slots, seq_len)
                }
                None => FitIndex::new(&self.order, &self.len, seq_len),
            };
            self.index = Some(index);
        }
    }

    /// Next unused sample in the shuffled order, if any in this pass.
    fn next(&mut self) -> Option<u32> {
        while self.pos < self.order.len() {
            let s = self.order[self.pos];
            self.pos += 1;
            if !self.used[s as usize] && self.live[s as usize] {
                return Some(s);
            }
        }
        None
    }

    fn any_live(&self) -> bool {
        self.live.iter().any(|&l| l)
    }

    /// Unused live samples left in this pass, or more input to come.
    fn remaining(&self) -> bool {
        !self.source.done
            || self.source.pending.is_some()
            || self.order[self.pos..]
                .iter()
                .any(|&s| !self.used[s as usize] && self.live[s as usize])
    }
}

/// A sample drawn that did not fit its row; it opens the next row's body.
#[derive(Clone, Copy)]
struct Carry {
    kind: Kind,
    sid: u32,
    row: u32,
    len: u32,
    /// Pool-wide row (error messages).
    gid: u64,
    was_used: bool,
}

/// The p-mix engine over two streams; yields packed record batches.
///
/// Rows are planned sequentially (deterministic) and gathered every [`rows_per_batch`] rows on a
/// dedicated pool. Input batches stay alive only while a block or an ungathered row needs them.
pub struct PmixStream {
    opts: PmixOptions,
    window: usize,
    draws: Draws,
    long: Pool,
    short: Pool,
    /// Input batches by store id (`None` once no longer needed) and their first pool-wide row.
    store: Vec<Option<(RecordBatch, Kind, usize)>>,
    /// Pieces of closed rows not gathered yet, and their row offsets.
    pieces: Vec<Piece>,
    row_offsets: Vec<usize>,
    discarded: Vec<Discarded>,
    carry: Option<Carry>,
    stats: PmixStats,
    layout: Layout,
    schema: SchemaRef,
    long_exhausted: bool,
    finished: bool,
    rows_done: usize,
    pool: rayon::ThreadPool,
}

impl PmixStream {
    /// Starts a p-mix over two batch streams with the given schemas; reads the first block of
    /// each pool (long first, then short).
    pub fn new(
        long_schema: &Schema,
        long: BatchSource,
        short_schema: &Schema,
        short: BatchSource,
        opts: &PmixOptions,
    ) -> Result<Self> {
        opts.validate()?;
        let long_layout = Layout::of(long_schema).map_err(|e| e.in_pool("long"))?;
        let short_layout = Layout::of(short_schema).map_err(|e| e.in_pool("short"))?;
        if long_layout.has_labels != short_layout.has_labels {
            return Err(PackError::InvalidArgument(format!(
                "'labels' is in the {} samples but not in the {} ones; give labels to both pools or to neither",
                if long_layout.has_labels { "long" } else { "short" },
                if long_layout.has_labels { "short" } else { "long" },
            )));
        }
        let layout = Layout {
            has_mask: long_layout.has_mask || short_layout.has_mask,
            has_labels: long_layout.has_labels,
            has_source: long_layout.has_source || short_layout.has_source,
        };
        let pool = options::thread_pool(opts.num_threads)?;
        let best_fit = opts.fill == Fill::BestFit;
        let multiple = opts.pad_documents_to.map(|m| m as u32);
        let mut me = PmixStream {
            opts: opts.clone(),
            window: opts.window_tokens.unwrap_or(usize::MAX),
            draws: Draws::new(opts.seed),
            long: Pool::new(long_layout, long, false, multiple),
            short: Pool::new(short_layout, short, best_fit, multiple),
            store: Vec::new(),
            pieces: Vec::new(),
            row_offsets: vec![0],
            discarded: Vec::new(),
            carry: None,
            stats: PmixStats::default(),
            layout,
            schema: schema_with(
                layout,
                true,
                opts.loss_weights.is_some(),
                opts.pad_documents_to.is_some(),
            ),
            long_exhausted: false,
            finished: false,
            rows_done: 0,
            pool,
        };
        me.load_block(Kind::Long)?;
        me.load_block(Kind::Short)?;
        if opts.n_short_prefix > 0 && !me.short.any_live() {
            return Err(PackError::InvalidArgument(format!(
                "the short pool is empty, so no row can open with n_short_prefix={} short samples; \
                 give short samples or pass n_short_prefix=0",
                opts.n_short_prefix
            )));
        }
        Ok(me)
    }

    /// The output schema: `pack`'s plus `kind`.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Statistics over the rows produced so far (final once the stream is exhausted).
    pub fn stats(&self) -> PmixStats {
        let mut s = self.stats.clone();
        s.long_used = self.long.used_count;
        s.short_used = self.short.used_count;
        s.long_unused = self.long.live_loaded - self.long.used_count;
        s.short_unused = self.short.live_loaded - self.short.used_count;
        s.output_tokens = s.long_tokens + s.short_tokens;
        if s.rows > 0 {
            s.fill_rate = s.output_tokens as f64 / (s.rows as f64 * self.opts.seq_len as f64);
        }
        if s.output_tokens > 0 {
            s.long_token_share = s.long_tokens as f64 / s.output_tokens as f64;
        }
        let body = s.long_segments + s.short_segments - s.prefix_segments;
        if body > 0 {
            s.long_segment_share = s.long_segments as f64 / body as f64;
        }
        s
    }

    fn pool(&mut self, kind: Kind) -> &mut Pool {
        match kind {
            Kind::Long => &mut self.long,
            Kind::Short => &mut self.short,
        }
    }

    /// Replaces the block of `kind` with the next `window` tokens of its stream; false at the end.
    fn load_block(&mut self, kind: Kind) -> Result<bool> {
        let window = self.window;
        let cap = self.opts.seq_len;
        let overflow = self.opts.overflow;
        let (pool, store, stats, discarded) = match kind {
            Kind::Long => (
                &mut self.long,
                &mut self.store,
                &mut self.stats,
                &mut self.discarded,
            ),
            Kind::Short => (
                &mut self.short,
                &mut self.store,
                &mut self.stats,
                &mut self.discarded,
            ),
        };
        // Keep the current block (recycle may reuse it) unless the stream has more rows.
        while pool
            .source
            .pending
            .as_ref()
            .is_none_or(|b| b.num_rows() == 0)
        {
            if pool.source.done {
                return Ok(false);
            }
            match pool.source.batches.next() {
                Some(b) => pool.source.pending = Some(b.map_err(|e| e.in_pool(kind.name()))?),
                None => {
                    pool.source.done = true;
                    pool.source.pending = None;
                }
            }
        }
        pool.loc.clear();
        pool.gid.clear();
        pool.len.clear();
        pool.live.clear();
        let mut tokens = 0usize;
        while tokens < window {
            let batch = match pool.source.pending.take() {
                Some(b) => b,
                None if pool.source.done => break,
                None => match pool.source.batches.next() {
                    Some(b) => b.map_err(|e| e.in_pool(kind.name()))?,
                    None => {
                        pool.source.done = true;
                        break;
                    }
                },
            };
            // Take samples until the block reaches its window; the rest waits for the next block.
            let (take, rows) = {
                let view = BatchView::new(&batch, pool.source.layout, pool.source.rows_seen)
                    .map_err(|e| e.in_pool(kind.name()))?;
                let mut take = view.rows;
                for r in 0..view.rows {
                    tokens += view.ids.offsets.len(r);
                    if tokens >= window {
                        take = r + 1;
                        break;
                    }
                }
                (take, view.rows)
            };
            let (batch, rest) = if take < rows {
                (batch.slice(0, take), Some(batch.slice(take, rows - take)))
            } else {
                (batch, None)
            };
            let view = BatchView::new(&batch, pool.source.layout, pool.source.rows_seen)
                .map_err(|e| e.in_pool(kind.name()))?;
            let sid = store.len() as u32;
            for r in 0..view.rows {
                let n = view.ids.offsets.len(r);
                let gid = (pool.source.rows_seen + r) as u64;
                match kind {
                    Kind::Long => {
                        stats.long_samples += 1;
                        stats.long_input_tokens += n as u64;
                    }
                    Kind::Short => {
                        stats.short_samples += 1;
                        stats.short_input_tokens += n as u64;
                    }
                }
                let mut keep = n > 0;
                let mut eff = n;
                if n == 0 {
                    stats.empty_samples += 1;
                } else if n > cap {
                    match overflow {
                        Overflow::Truncate => {
                            stats.truncated_samples += 1;
                            stats.truncated_tokens += (n - cap) as u64;
                            discarded.push(piece(sid, r, cap, n - cap));
                            eff = cap;
                        }
                        Overflow::Drop => {
                            stats.dropped_samples += 1;
                            stats.dropped_tokens += n as u64;
                            discarded.push(piece(sid, r, 0, n));
                            keep = false;
                        }
                        _ => {
                            return Err(PackError::InvalidArgument(format!(
                                "row {gid} has {n} tokens, more than seq_len={cap}; pass overflow='truncate' \
                                 or 'drop', or a larger seq_len"
                            ))
                            .in_pool(kind.name()))
                        }
                    }
                }
                pool.loc.push((sid, r as u32));
                pool.gid.push(gid);
                pool.len.push(eff.min(u32::MAX as usize) as u32);
                pool.live.push(keep);
                pool.live_loaded += keep as u64;
            }
            pool.source.rows_seen += view.rows;
            drop(view);
            store.push(Some((batch, kind, pool.source.rows_seen - take)));
            pool.source.pending = rest;
        }
        if pool.loc.len() >= u32::MAX as usize {
            return Err(PackError::InvalidArgument(
                "more than 4 billion samples in one block; use a smaller window_tokens".into(),
            ));
        }
        let n = pool.len.len();
        pool.used = vec![false; n];
        pool.ever = vec![false; n];
        pool.reshuffle(&mut self.draws, cap);
        Ok(n > 0)
    }

    /// Next unused sample of `kind`, loading blocks and applying the exhaustion policy.
    fn take(&mut self, kind: Kind) -> Result<Option<(Kind, u32)>> {
        loop {
            if let Some(s) = self.pool(kind).next() {
                return Ok(Some((kind, s)));
            }
            if self.load_block(kind)? {
                continue;
            }
            // The stream of `kind` is over.
            let max_rows = self.opts.max_rows.is_some();
            match kind {
                Kind::Long => {
                    if self.opts.exhausted == Exhausted::Recycle && max_rows && self.long.any_live()
                    {
                        self.long.reshuffle(&mut self.draws, self.opts.seq_len);
                        continue;
                    }
                    if self.opts.exhausted == Exhausted::ShortOnly {
                        self.long_exhausted = true;
                        return self.take(Kind::Short);
                    }
                    return Ok(None);
                }
                Kind::Short => {
                    // Without max_rows, short samples are reused only while long ones remain.
                    let may_recycle = max_rows || self.long.remaining();
                    if self.opts.exhausted == Exhausted::Recycle
                        && may_recycle
                        && self.short.any_live()
                    {
                        self.short.reshuffle(&mut self.draws, self.opts.seq_len);
                        continue;
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Places `take` tokens of a sample as the next segment.
    fn place(&mut self, c: Carry, take: usize) {
        if c.was_used {
            self.stats.reused_placements += 1;
        } else {
            self.pool(c.kind).used_count += 1;
        }
        match c.kind {
            Kind::Long => self.stats.long_segments += 1,
            Kind::Short => self.stats.short_segments += 1,
        }
        match c.kind {
            Kind::Long => self.stats.long_tokens += take as u64,
            Kind::Short => self.stats.short_tokens += take as u64,
        }
        self.pieces.push(piece(c.sid, c.row as usize, 0, take));
        self.stats.document_pad_tokens += (self.opts.slot(take as u32) - take) as u64;
        let full = c.len as usize;
        if take < full {
            self.stats.truncated_samples += 1;
            self.stats.truncated_tokens += (full - take) as u64;
            self.discarded
                .push(piece(c.sid, c.row as usize, take, full - take));
        }
    }

    /// Marks sample `s` of the current block used and describes it.
    fn claim(&mut self, kind: Kind, s: u32) -> Carry {
        let pool = self.pool(kind);
        let i = s as usize;
        let c = Carry {
            kind,
            sid: pool.loc[i].0,
            row: pool.loc[i].1,
            len: pool.len[i],
            gid: pool.gid[i],
            was_used: pool.ever[i],
        };
        pool.used[i] = true;
        pool.ever[i] = true;
        c
    }

    /// A sample too long for the space next to its row's prefix: the overflow policy decides.
    /// Returns whether it was placed (truncated).
    fn overflow(&mut self, c: Carry, room: usize) -> Result<bool> {
        let n = c.len as usize;
        match self.opts.overflow {
            Overflow::Truncate if room > 0 => {
                self.place(c, room);
                Ok(true)
            }
            Overflow::Drop | Overflow::Truncate => {
                let pool = self.pool(c.kind);
                pool.live_loaded -= !c.was_used as u64;
                self.stats.dropped_samples += 1;
                self.stats.dropped_tokens += n as u64;
                self.discarded.push(piece(c.sid, c.row as usize, 0, n));
                Ok(false)
            }
            _ => Err(PackError::InvalidArgument(format!(
                "row {} of the {} samples has {n} tokens, but next to its row's short prefix only {room} \
                 of seq_len={} remain; pass overflow='truncate' or 'drop', a larger seq_len, or shorter samples",
                c.gid,
                c.kind.name(),
                self.opts.seq_len
            ))),
        }
    }

    /// Builds one row; false when packing is over (the row may still hold samples).
    fn row(&mut self) -> Result<bool> {
        let cap = self.opts.seq_len;
        let mut used = 0usize;
        let start = self.pieces.len();
        let mut prefix = 0;
        let mut placed_prefix: Vec<Carry> = Vec::new();
        while prefix < self.opts.n_short_prefix {
            let Some((_, s)) = self.take(Kind::Short)? else {
                // An incomplete prefix is rolled back: its samples count as unused.
                for c in placed_prefix {
                    if c.was_used {
                        self.stats.reused_placements -= 1;
                    } else {
                        self.short.used_count -= 1;
                    }
                    self.stats.short_segments -= 1;
                    self.stats.prefix_segments -= 1;
                    self.stats.short_tokens -= c.len as u64;
                    self.stats.document_pad_tokens -=
                        (self.opts.slot(c.len) - c.len as usize) as u64;
                }
                self.pieces.truncate(start);
                return Ok(false);
            };
            let c = self.claim(Kind::Short, s);
            let (n, slot) = (c.len as usize, self.opts.slot(c.len));
            if slot <= cap - used {
                self.place(c, n);
                placed_prefix.push(c);
                used += slot;
            } else if self.overflow(c, cap - used)? {
                used = cap;
            } else {
                continue;
            }
            self.stats.prefix_segments += 1;
            prefix += 1;
            if used == cap {
                return Ok(true);
            }
        }
        let mut body = 0usize;
        loop {
            let c = match self.carry.take() {
                Some(c) => c,
                None => {
                    let long = self.draws.unit() < self.opts.p_long && !self.long_exhausted;
                    let kind = if long { Kind::Long } else { Kind::Short };
                    let Some((kind, s)) = self.take(kind)? else {
                        return Ok(false);
                    };
                    self.claim(kind, s)
                }
            };
            let (n, slot) = (c.len as usize, self.opts.slot(c.len));
            if slot <= cap - used {
                self.place(c, n);
                used += slot;
                body += 1;
                if used == cap {
                    return Ok(true);
                }
            } else if body == 0 {
                if self.overflow(c, cap - used)? {
                    return Ok(true);
                }
            } else {
                // Does not fit: it opens the next row's body; best_fit first fills the gap.
                self.carry = Some(c);
                while used < cap {
                    let Some(index) = self.short.index.as_mut() else {
                        break;
                    };
                    let Some(b) = index.take_best(cap - used, &self.short.used) else {
                        break;
                    };
                    let c = self.claim(Kind::Short, b);
                    self.place(c, c.len as usize);
                    self.stats.best_fit_segments += 1;
                    used += self.opts.slot(c.len);
                }
                return Ok(true);
            }
        }
    }

    /// Plans up to `n` more rows; sets `finished` when packing is over.
    fn plan_rows(&mut self, n: usize) -> Result<()> {
        let mut made = 0;
        while made < n && !self.finished {
            if self.opts.max_rows.is_some_and(|m| self.rows_done >= m) {
                self.finished = true;
                break;
            }
            let more = self.row()?;
            if self.pieces.len() > *self.row_offsets.last().unwrap_or(&0) {
                self.row_offsets.push(self.pieces.len());
                self.rows_done += 1;
                made += 1;
            }
            if !more {
                self.finished = true;
            }
        }
        Ok(())
    }

    /// Gathers the planned rows into one record batch and frees input no longer needed.
    fn gather(&mut self) -> Result<RecordBatch> {
        // Local view indices for the store entries the rows (and discarded tails) touch.
        let mut local = vec![u32::MAX; self.store.len()];
        let mut used_sids = Vec::new();
        for p in self.pieces.iter().chain(&self.discarded) {
            let l = &mut local[p.batch as usize];
            if *l == u32::MAX {
                *l = used_sids.len() as u32;
                used_sids.push(p.batch as usize);
            }
        }
        let mut views = Vec::with_capacity(used_sids.len());
        let mut is_long = Vec::with_capacity(used_sids.len());
        for &sid in &used_sids {
            let Some((batch, kind, first_row)) = self.store[sid].as_ref() else {
                return Err(PackError::InvalidArgument(
                    "internal: a piece refers to a released input batch".into(),
                ));
            };
            let layout = match kind {
                Kind::Long => self.long.source.layout,
                Kind::Short => self.short.source.layout,
            };
            views.push(
                BatchView::new(batch, layout, *first_row).map_err(|e| e.in_pool(kind.name()))?,
            );
            is_long.push(*kind == Kind::Long);
        }
        let remap = |p: &Piece| Piece {
            batch: local[p.batch as usize],
            ..*p
        };
        let pieces: Vec<Piece> = self.pieces.iter().map(remap).collect();
        let discarded: Vec<Piece> = self.discarded.iter().map(remap).collect();
        let the_plan = Plan {
            row_offsets: std::mem::replace(&mut self.row_offsets, vec![0]),
            items: (0..pieces.len() as u32).collect(),
        };
        let gather = Gather {
            views: &views,
            pieces: &pieces,
            plan: &the_plan,
            seq_len: self.opts.seq_len,
            pad_to: None,
            pad_id: 0,
            layout: self.layout,
            schema: self.schema.clone(),
            long_views: Some(&is_long),
            loss_weights: self.opts.loss_weights,
            pad_documents_to: self.opts.pad_documents_to.map(|m| m as u32),
        };
        let batches = self.pool.install(|| -> Result<Vec<RecordBatch>> {
            check_discarded(&views, &discarded)?;
            gather.run()
        })?;
        self.stats.rows += the_plan.rows() as u64;
        for r in 0..the_plan.rows() {
            let d = the_plan.row(r).len() as u64;
            self.stats.max_documents_per_row = self.stats.max_documents_per_row.max(d);
        }
        drop(views);
        self.pieces.clear();
        self.discarded.clear();
        // Keep only the batches that the current blocks or the carried sample still need.
        let mut keep = vec![false; self.store.len()];
        for &(sid, _) in self.long.loc.iter().chain(&self.short.loc) {
            keep[sid as usize] = true;
        }
        if let Some(c) = self.carry {
            keep[c.sid as usize] = true;
        }
        for (slot, k) in self.store.iter_mut().zip(keep) {
            if !k {
                *slot = None;
            }
        }
        let mut batches = batches.into_iter();
        match (batches.next(), batches.next()) {
            (Some(b), None) => Ok(b),
            _ => Err(PackError::InvalidArgument(
                "internal: one gather must give one batch".into(),
            )),
        }
    }
}

impl Iterator for PmixStream {
    type Item = Result<RecordBatch>;

    /// The next batch of up to [`rows_per_batch`] rows; `None` once packing is over.
    fn next(&mut self) -> Option<Self::Item> {
        if self.finished && self.row_offsets.len() == 1 {
            return None;
        }
        let rows = rows_per_batch(self.opts.seq_len);
        if let Err(e) = self.plan_rows(rows) {
            self.finished = true;
            self.row_offsets = vec![0];
            self.pieces.clear();
            return Some(Err(e));
        }
        if self.row_offsets.len() == 1 {
            return None;
        }
        Some(self.gather())
    }
}

/// Mixes `long` and `short` samples into rows of at most `opts.seq_len` tokens (see module docs),
/// all in memory: the stream over the given batches, collected.
pub fn pack_pmix(
    long_schema: &Schema,
    long: &[RecordBatch],
    short_schema: &Schema,
    short: &[RecordBatch],
    opts: &PmixOptions,
) -> Result<PmixPacked> {
    let source = |b: &[RecordBatch]| -> BatchSource {
        let owned: Vec<RecordBatch> = b.to_vec(); // cheap: batches share their buffers
        Box::new(owned.into_iter().map(Ok))
    };
    let mut stream = PmixStream::new(long_schema, source(long), short_schema, source(short), opts)?;
    let mut batches = Vec::new();
    for b in stream.by_ref() {
        batches.push(b?);
    }
    Ok(PmixPacked {
        schema: stream.schema(),
        batches,
        stats: stream.stats(),
    })
}

fn piece(batch: u32, row: usize, skip: usize, len: usize) -> Piece {
    Piece {
        batch,
        row: row as u32,
        skip: skip as u32,
        len: len as u32,
    }
}
