//! Throughput of the planners and of the full `pack` on synthetic, seeded SFT-like data.
//!
//! Run: `cargo bench -p longmagpie-core --bench pack` (a few minutes on 2 cores);
//! smoke test: `cargo bench -p longmagpie-core --bench pack -- --test` (or `cargo test --benches`),
//! which runs every benchmark once on scaled-down data.
//!
//! Length mixes (token counts per sample, log-uniform within each range):
//! - `long`: the realistic long-context SFT mix, 70 % in 200..=4000 and 30 % in 8000..=60000
//!   (mean about 8.6 k tokens);
//! - `short`: a short-chat mix, 50..=2000 (mean about 530 tokens).
//!
//! Sizes: group `plan` plans ~1 M sample lengths (lengths alone, no tokens). Group `pack` runs the
//! whole pipeline (cut + plan + parallel gather into Arrow) on ~100 M tokens per mix: 1 M samples
//! of the long mix would be ~8.6 B tokens (~43 GB of `input_ids` + masks, twice that with the
//! output), far too big for the 24 GiB / 2-core machine this runs on, so `pack` uses ~11.6 k long
//! samples or ~189 k short ones instead, with bfd and ffd on 1 thread and on all; its last
//! configuration adds `loss_weights="per_sequence"` (compare it with `bfd/threads=all`). Both
//! groups report throughput as elements: samples for `plan`, tokens for `pack`. The fill rate of
//! every configuration is printed once on stderr.

mod common;

use std::hint::black_box;
use std::sync::OnceLock;
use std::time::Duration;

use arrow_array::RecordBatch;
use common::{flat_group, quick_mode, token_batch, SplitMix64};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use longmagpie_core::{pack, plan, LossWeights, Overflow, PackOptions, Strategy};

/// Row capacity of every benchmark.
const CAP: u32 = 65_536;
/// Sample lengths planned by the `plan` group.
const PLAN_SAMPLES: usize = 1_000_000;
/// Tokens per mix packed by the `pack` group.
const PACK_TOKENS: u64 = 100_000_000;
/// Scale-down factor in criterion's test mode (`--test`, `cargo test --benches`).
const QUICK_DIVISOR: usize = 100;

#[derive(Clone, Copy)]
enum Mix {
    Long,
    Short,
}

impl Mix {
    fn name(self) -> &'static str {
        match self {
            Mix::Long => "long",
            Mix::Short => "short",
        }
    }

    fn seed(self) -> u64 {
        match self {
            Mix::Long => 0x5EED_0001,
            Mix::Short => 0x5EED_0002,
        }
    }

    fn sample(self, rng: &mut SplitMix64) -> u32 {
        match self {
            Mix::Long if rng.unit() < 0.7 => rng.log_uniform(200, 4000),
            Mix::Long => rng.log_uniform(8000, 60_000),
            Mix::Short => rng.log_uniform(50, 2000),
        }
    }

    /// `n` sample lengths.
    fn lengths(self, n: usize) -> Vec<u32> {
        let mut rng = SplitMix64(self.seed());
        (0..n).map(|_| self.sample(&mut rng)).collect()
    }

    /// Sample lengths adding up to about `tokens` (the last sample crosses the target).
    fn lengths_for_tokens(self, tokens: u64) -> Vec<u32> {
        let mut rng = SplitMix64(self.seed() ^ 0xA5A5);
        let mut out = Vec::new();
        let mut total = 0u64;
        while total < tokens {
            let l = self.sample(&mut rng);
            total += l as u64;
            out.push(l);
        }
        out
    }
}

/// One batch of `input_ids` list<int32> and `assistant_masks` list<int8>: ids cycle through a
/// 151 643-token vocabulary; the first eighth of every sample is prompt (mask 0), the rest 1.
fn arrow_batch(lengths: &[u32]) -> RecordBatch {
    let total: usize = lengths.iter().map(|&l| l as usize).sum();
    assert!(
        total <= i32::MAX as usize,
        "bench batch above list<int32> limits"
    );
    let mut offsets = Vec::with_capacity(lengths.len() + 1);
    offsets.push(0i32);
    let mut ids = Vec::with_capacity(total);
    let mut mask = Vec::with_capacity(total);
    let mut rng = SplitMix64(0x1D5);
    for &l in lengths {
        let start = (rng.next_u64() % 151_643) as i32;
        ids.extend((0..l as i32).map(|p| (start + p) % 151_643));
        let prompt = (l / 8) as usize;
        mask.extend(std::iter::repeat_n(0i8, prompt));
        mask.extend(std::iter::repeat_n(1i8, l as usize - prompt));
        offsets.push(ids.len() as i32);
    }
    token_batch(ids, mask, &offsets)
}

fn bench_plan(c: &mut Criterion) {
    let n = if quick_mode() {
        PLAN_SAMPLES / QUICK_DIVISOR
    } else {
        PLAN_SAMPLES
    };
    let mut group = flat_group(c, "plan", Duration::from_secs(4));
    group.throughput(Throughput::Elements(n as u64));
    for mix in [Mix::Long, Mix::Short] {
        let lengths = mix.lengths(n);
        let tokens: u64 = lengths.iter().map(|&l| l as u64).sum();
        for strategy in [Strategy::Bfd, Strategy::Ffd, Strategy::Sequential] {
            let id = BenchmarkId::new(strategy.name(), format!("{}/{n}", mix.name()));
            let mut printed = false;
            group.bench_function(id, |b| {
                if !printed {
                    printed = true;
                    let p = plan(&lengths, CAP, strategy);
                    let fill = tokens as f64 / (p.rows() as f64 * CAP as f64);
                    eprintln!(
                        "plan/{}/{}: {n} samples, {tokens} tokens -> {} rows, fill rate {:.4}",
                        strategy.name(),
                        mix.name(),
                        p.rows(),
                        fill
                    );
                }
                b.iter(|| plan(black_box(&lengths), CAP, strategy));
            });
        }
    }
    group.finish();
}

fn bench_pack(c: &mut Criterion) {
    let target = if quick_mode() {
        PACK_TOKENS / QUICK_DIVISOR as u64
    } else {
        PACK_TOKENS
    };
    let mut group = flat_group(c, "pack", Duration::from_secs(5));
    for mix in [Mix::Long, Mix::Short] {
        let lengths = mix.lengths_for_tokens(target);
        let tokens: u64 = lengths.iter().map(|&l| l as u64).sum();
        // Built on first use, so a filter that skips this mix skips the allocation too.
        let batch: OnceLock<RecordBatch> = OnceLock::new();
        group.throughput(Throughput::Elements(tokens));
        // The last configuration also writes per-sequence loss weights: its ratio to the one before
        // is what the `loss_weights` column costs.
        for (strategy, threads, weights) in [
            (Strategy::Bfd, Some(1), None),
            (Strategy::Bfd, None, None),
            (Strategy::Ffd, Some(1), None),
            (Strategy::Ffd, None, None),
            (Strategy::Bfd, None, Some(LossWeights::PerSequence)),
        ] {
            let mut opts = PackOptions::new(CAP as usize);
            opts.strategy = strategy;
            opts.overflow = Overflow::Error;
            opts.num_threads = threads;
            opts.loss_weights = weights;
            let mut label = match threads {
                Some(t) => format!("threads={t}"),
                None => "threads=all".to_string(),
            };
            if weights.is_some() {
                label.push_str("/loss_weights");
            }
            let id = BenchmarkId::new(
                format!("{}/{label}", strategy.name()),
                format!("{}/{tokens}", mix.name()),
            );
            let mut printed = false;
            group.bench_function(id, |b| {
                let input = batch.get_or_init(|| arrow_batch(&lengths));
                let schema = input.schema();
                let inputs = std::slice::from_ref(input);
                if !printed {
                    printed = true;
                    let s = pack(&schema, inputs, &opts).expect("bench pack").stats;
                    eprintln!(
                        "pack/{}/{label}/{}: {} samples, {} tokens -> {} rows, fill rate {:.4}",
                        strategy.name(),
                        mix.name(),
                        s.input_samples,
                        s.input_tokens,
                        s.rows,
                        s.fill_rate
                    );
                }
                b.iter(|| pack(&schema, black_box(inputs), &opts).expect("bench pack"));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench_plan, bench_pack);
criterion_main!(benches);
