//! `pack_pmix`: p-mix long/short mixing (LongMagpie's "p-Mix").
//!
//! Every row opens with `n_short_prefix` short samples; then, until the row is full, the next
//! segment is a long sample with probability `p_long`, else a short one. Both pools are shuffled
//! and drawn without replacement by a ChaCha8 generator seeded from `seed`, so the plan is the same
//! on every machine; tokens are gathered like `pack`'s (parallel, byte-identical for any thread
//! count). Unlike the upstream script every segment keeps its own boundary (`seq_lengths`) and its
//! `kind`, and the sample that does not fit is carried to the next row instead of being cut.

use std::str::FromStr;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use crate::columns::{BatchView, Layout};
use crate::error::{PackError, Result};
use crate::gather::{check_discarded, schema_with, Discarded, Gather, Piece};
use crate::pack::Overflow;
use crate::plan::{Plan, SuccessorSet};

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
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(PackError::InvalidArgument(m));
        if self.seq_len == 0 || self.seq_len > i32::MAX as usize {
            return bad(format!(
                "seq_len must be in 1..={} (got {})",
                i32::MAX,
                self.seq_len
            ));
        }
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
        if self.num_threads == Some(0) {
            return bad("num_threads must be >= 1 (or None for all cores)".into());
        }
        if self.exhausted == Exhausted::Recycle && self.max_rows.is_none() && self.p_long == 0.0 {
            return bad(
                "exhausted='recycle' with p_long=0 never ends: pass max_rows, or another exhausted policy".into(),
            );
        }
        if self.max_rows == Some(0) {
            return bad("max_rows must be >= 1 (or None)".into());
        }
        Ok(())
    }
}

/// Counts of one p-mix run. Token counts are real tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PmixStats {
    /// Output rows.
    pub rows: u64,
    /// Real tokens in the output.
    pub output_tokens: u64,
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

/// One pool of samples: locations, lengths, a shuffled order and a cursor.
struct Pool {
    /// (view index into the combined views, row in that view), per sample.
    loc: Vec<(u32, u32)>,
    /// Tokens per sample (after `truncate` to `seq_len`).
    len: Vec<u32>,
    /// Samples that may still be drawn (not empty, not dropped).
    live: Vec<bool>,
    order: Vec<u32>,
    pos: usize,
    /// Used in the current pass over `order`.
    used: Vec<bool>,
    /// Used at least once.
    ever: Vec<bool>,
    /// Best-fit index (short pool, `fill = best_fit` only).
    index: Option<FitIndex>,
}

impl Pool {
    fn reshuffle(&mut self, draws: &mut Draws, seq_len: usize) {
        self.order = (0..self.len.len() as u32)
            .filter(|&s| self.live[s as usize])
            .collect();
        draws.shuffle(&mut self.order);
        self.pos = 0;
        self.used.iter_mut().for_each(|u| *u = false);
        if self.index.is_some() {
            self.index = Some(FitIndex::new(&self.order, &self.len, seq_len));
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

/// Mixes `long` and `short` samples into rows of at most `opts.seq_len` tokens (see module docs).
pub fn pack_pmix(
    long_schema: &Schema,
    long: &[RecordBatch],
    short_schema: &Schema,
    short: &[RecordBatch],
    opts: &PmixOptions,
) -> Result<PmixPacked> {
    opts.validate()?;
    let in_pool = |pool: &'static str| move |e: PackError| e.in_pool(pool);
    let long_layout = Layout::of(long_schema).map_err(in_pool("long"))?;
    let short_layout = Layout::of(short_schema).map_err(in_pool("short"))?;
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
    let mut views = Vec::with_capacity(long.len() + short.len());
    let mut first = 0;
    for b in long {
        views.push(BatchView::new(b, long_layout, first).map_err(in_pool("long"))?);
        first += b.num_rows();
    }
    let n_long_views = views.len();
    first = 0;
    for b in short {
        views.push(BatchView::new(b, short_layout, first).map_err(in_pool("short"))?);
        first += b.num_rows();
    }

    let mut stats = PmixStats::default();
    let mut discarded: Vec<Discarded> = Vec::new();
    let mut draws = Draws::new(opts.seed);
    let mut long_pool = make_pool(
        Kind::Long,
        &views[..n_long_views],
        0,
        opts,
        &mut stats,
        &mut discarded,
    )?;
    let mut short_pool = make_pool(
        Kind::Short,
        &views[n_long_views..],
        n_long_views,
        opts,
        &mut stats,
        &mut discarded,
    )?;
    if opts.fill == Fill::BestFit {
        short_pool.index = Some(FitIndex::new(&[], &short_pool.len, opts.seq_len));
    }
    long_pool.reshuffle(&mut draws, opts.seq_len);
    short_pool.reshuffle(&mut draws, opts.seq_len);
    if opts.n_short_prefix > 0 && !short_pool.any_live() {
        return Err(PackError::InvalidArgument(format!(
            "the short pool is empty, so no row can open with n_short_prefix={} short samples; \
             give short samples or pass n_short_prefix=0",
            opts.n_short_prefix
        )));
    }

    let mut mixer = Mixer {
        opts,
        draws,
        long: long_pool,
        short: short_pool,
        pieces: Vec::new(),
        row_offsets: vec![0],
        discarded,
        stats,
        long_exhausted: false,
    };
    mixer.run()?;
    let Mixer {
        pieces,
        row_offsets,
        discarded,
        mut stats,
        long,
        short,
        ..
    } = mixer;
    let n_pieces = pieces.len();
    let the_plan = Plan {
        row_offsets,
        items: (0..n_pieces as u32).collect(),
    };

    let schema = schema_with(layout, true);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.num_threads.unwrap_or(0))
        .build()
        .map_err(|e| PackError::InvalidArgument(format!("cannot start threads: {e}")))?;
    let batches = pool.install(|| -> Result<Vec<RecordBatch>> {
        check_discarded(&views, &discarded)?;
        Gather {
            views: &views,
            pieces: &pieces,
            plan: &the_plan,
            seq_len: opts.seq_len,
            pad_to: None,
            pad_id: 0,
            layout,
            schema: schema.clone(),
            long_views: Some(n_long_views),
        }
        .run()
    })?;

    stats.rows = the_plan.rows() as u64;
    for p in &pieces {
        if (p.batch as usize) < n_long_views {
            stats.long_tokens += p.len as u64;
        } else {
            stats.short_tokens += p.len as u64;
        }
    }
    stats.output_tokens = stats.long_tokens + stats.short_tokens;
    for r in 0..the_plan.rows() {
        stats.max_documents_per_row = stats
            .max_documents_per_row
            .max(the_plan.row(r).len() as u64);
    }
    if stats.rows > 0 {
        stats.fill_rate = stats.output_tokens as f64 / (stats.rows as f64 * opts.seq_len as f64);
    }
    if stats.output_tokens > 0 {
        stats.long_token_share = stats.long_tokens as f64 / stats.output_tokens as f64;
    }
    let body = stats.long_segments + stats.short_segments - stats.prefix_segments;
    if body > 0 {
        stats.long_segment_share = stats.long_segments as f64 / body as f64;
    }
    let count = |p: &Pool| {
        let used = p.ever.iter().filter(|&&e| e).count() as u64;
        let live_unused = (0..p.len.len())
            .filter(|&s| p.live[s] && !p.ever[s])
            .count() as u64;
        (used, live_unused)
    };
    (stats.long_used, stats.long_unused) = count(&long);
    (stats.short_used, stats.short_unused) = count(&short);
    Ok(PmixPacked {
        schema,
        batches,
        stats,
    })
}

fn make_pool(
    kind: Kind,
    views: &[BatchView],
    view_offset: usize,
    opts: &PmixOptions,
    stats: &mut PmixStats,
    discarded: &mut Vec<Discarded>,
) -> Result<Pool> {
    let cap = opts.seq_len;
    let mut loc = Vec::new();
    let mut len = Vec::new();
    let mut live = Vec::new();
    for (b, v) in views.iter().enumerate() {
        for r in 0..v.rows {
            let n = v.ids.offsets.len(r);
            let vb = (view_offset + b) as u32;
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
                match opts.overflow {
                    Overflow::Truncate => {
                        stats.truncated_samples += 1;
                        stats.truncated_tokens += (n - cap) as u64;
                        discarded.push(piece(vb, r, cap, n - cap));
                        eff = cap;
                    }
                    Overflow::Drop => {
                        stats.dropped_samples += 1;
                        stats.dropped_tokens += n as u64;
                        discarded.push(piece(vb, r, 0, n));
                        keep = false;
                    }
                    _ => {
                        return Err(PackError::TooLong {
                            row: v.first_row + r,
                            length: n,
                            seq_len: cap,
                        }
                        .in_pool(kind.name()))
                    }
                }
            }
            loc.push((vb, r as u32));
            len.push(eff.min(u32::MAX as usize) as u32);
            live.push(keep);
        }
    }
    let n = len.len();
    if n >= u32::MAX as usize {
        return Err(PackError::InvalidArgument(
            "more than 4 billion samples in one pool".into(),
        ));
    }
    Ok(Pool {
        loc,
        len,
        live,
        order: Vec::new(),
        pos: 0,
        used: vec![false; n],
        ever: vec![false; n],
        index: None,
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

/// The sequential row builder.
struct Mixer<'a> {
    opts: &'a PmixOptions,
    draws: Draws,
    long: Pool,
    short: Pool,
    pieces: Vec<Piece>,
    row_offsets: Vec<usize>,
    discarded: Vec<Discarded>,
    stats: PmixStats,
    long_exhausted: bool,
}

/// How a row ended.
enum RowEnd {
    /// Full or closed; go on with the next row.
    Next,
    /// A pool ran out: this is the last row.
    Last,
}

impl Mixer<'_> {
    fn run(&mut self) -> Result<()> {
        let mut carry: Option<(Kind, u32)> = None;
        loop {
            if self
                .opts
                .max_rows
                .is_some_and(|m| self.row_offsets.len() > m)
            {
                return Ok(());
            }
            let end = self.row(&mut carry)?;
            let placed = self.pieces.len() > *self.row_offsets.last().unwrap_or(&0);
            if placed {
                self.row_offsets.push(self.pieces.len());
            }
            if matches!(end, RowEnd::Last) || !placed {
                return Ok(());
            }
        }
    }

    /// Takes the next sample of `kind`, applying the exhaustion policy.
    fn take(&mut self, kind: Kind) -> Option<(Kind, u32)> {
        let recycle_all = self.opts.exhausted == Exhausted::Recycle && self.opts.max_rows.is_some();
        match kind {
            Kind::Long => {
                if let Some(s) = self.long.next() {
                    return Some((Kind::Long, s));
                }
                if recycle_all && self.long.any_live() {
                    self.long.reshuffle(&mut self.draws, self.opts.seq_len);
                    return self.long.next().map(|s| (Kind::Long, s));
                }
                if self.opts.exhausted == Exhausted::ShortOnly {
                    self.long_exhausted = true;
                    return self.take(Kind::Short);
                }
                None
            }
            Kind::Short => {
                if let Some(s) = self.short.next() {
                    return Some((Kind::Short, s));
                }
                // Without max_rows, short samples are reused only while long ones remain, so
                // packing ends.
                let may_recycle = self.opts.max_rows.is_some() || self.long_remaining();
                if self.opts.exhausted == Exhausted::Recycle && may_recycle && self.short.any_live()
                {
                    self.short.reshuffle(&mut self.draws, self.opts.seq_len);
                    return self.short.next().map(|s| (Kind::Short, s));
                }
                None
            }
        }
    }

    fn long_remaining(&self) -> bool {
        self.long.order[self.long.pos..]
            .iter()
            .any(|&s| !self.long.used[s as usize] && self.long.live[s as usize])
    }

    fn pool(&mut self, kind: Kind) -> &mut Pool {
        match kind {
            Kind::Long => &mut self.long,
            Kind::Short => &mut self.short,
        }
    }

    /// Places sample `s` of `kind`, at most `room` tokens of it.
    fn place(&mut self, kind: Kind, s: u32, take: usize) {
        let pool = self.pool(kind);
        let (vb, row) = pool.loc[s as usize];
        let reused = pool.ever[s as usize];
        pool.used[s as usize] = true;
        pool.ever[s as usize] = true;
        let full = pool.len[s as usize] as usize;
        if reused {
            self.stats.reused_placements += 1;
        }
        match kind {
            Kind::Long => self.stats.long_segments += 1,
            Kind::Short => self.stats.short_segments += 1,
        }
        self.pieces.push(piece(vb, row as usize, 0, take));
        if take < full {
            self.stats.truncated_samples += 1;
            self.stats.truncated_tokens += (full - take) as u64;
            self.discarded
                .push(piece(vb, row as usize, take, full - take));
        }
    }

    /// A sample too long for the space next to its row's prefix: the overflow policy decides.
    /// Returns whether it was placed (truncated).
    fn overflow(&mut self, kind: Kind, s: u32, room: usize) -> Result<bool> {
        let pool = self.pool(kind);
        let n = pool.len[s as usize] as usize;
        let (vb, row) = pool.loc[s as usize];
        match self.opts.overflow {
            Overflow::Truncate if room > 0 => {
                self.place(kind, s, room);
                Ok(true)
            }
            Overflow::Drop | Overflow::Truncate => {
                let pool = self.pool(kind);
                pool.live[s as usize] = false;
                pool.used[s as usize] = true;
                self.stats.dropped_samples += 1;
                self.stats.dropped_tokens += n as u64;
                self.discarded.push(piece(vb, row as usize, 0, n));
                Ok(false)
            }
            _ => Err(PackError::InvalidArgument(format!(
                "row {s} of the {} samples has {n} tokens, but next to its row's short prefix only {room} \
                 of seq_len={} remain; pass overflow='truncate' or 'drop', a larger seq_len, or shorter samples",
                kind.name(),
                self.opts.seq_len
            ))),
        }
    }

    fn row(&mut self, carry: &mut Option<(Kind, u32)>) -> Result<RowEnd> {
        let cap = self.opts.seq_len;
        let mut used = 0usize;
        // Prefix.
        let mut prefix = 0;
        let start = self.pieces.len();
        let mut placed: Vec<(u32, bool)> = Vec::new();
        while prefix < self.opts.n_short_prefix {
            let Some((_, s)) = self.take(Kind::Short) else {
                // An incomplete prefix is rolled back: its samples stay unused.
                for (s, was_used) in placed {
                    self.short.used[s as usize] = false;
                    self.short.ever[s as usize] = was_used;
                    self.stats.reused_placements -= was_used as u64;
                    self.stats.short_segments -= 1;
                    self.stats.prefix_segments -= 1;
                }
                self.pieces.truncate(start);
                return Ok(RowEnd::Last);
            };
            let n = self.short.len[s as usize] as usize;
            if n <= cap - used {
                placed.push((s, self.short.ever[s as usize]));
                self.place(Kind::Short, s, n);
                used += n;
            } else if self.overflow(Kind::Short, s, cap - used)? {
                used = cap;
            } else {
                continue;
            }
            self.stats.prefix_segments += 1;
            prefix += 1;
            if used == cap {
                return Ok(RowEnd::Next);
            }
        }
        // Body.
        let mut body = 0usize;
        loop {
            let next = match carry.take() {
                Some(c) => Some(c),
                None => {
                    let kind = if self.draws.unit() < self.opts.p_long && !self.long_exhausted {
                        Kind::Long
                    } else {
                        Kind::Short
                    };
                    self.take(kind)
                }
            };
            let Some((kind, s)) = next else {
                return Ok(RowEnd::Last);
            };
            let n = self.pool(kind).len[s as usize] as usize;
            if n <= cap - used {
                self.place(kind, s, n);
                used += n;
                body += 1;
                if used == cap {
                    return Ok(RowEnd::Next);
                }
            } else if body == 0 {
                if self.overflow(kind, s, cap - used)? {
                    return Ok(RowEnd::Next);
                }
            } else {
                // Does not fit: it opens the next row's body; best_fit first fills the gap.
                self.pool(kind).used[s as usize] = true;
                *carry = Some((kind, s));
                if self.opts.fill == Fill::BestFit {
                    while used < cap {
                        let Some(index) = self.short.index.as_mut() else {
                            break;
                        };
                        let Some(b) = index.take_best(cap - used, &self.short.used) else {
                            break;
                        };
                        let n = self.short.len[b as usize] as usize;
                        self.place(Kind::Short, b, n);
                        self.stats.best_fit_segments += 1;
                        used += n;
                    }
                }
                return Ok(RowEnd::Next);
            }
        }
    }
}
