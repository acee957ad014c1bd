//! Throughput of `pack_pmix` (planning + parallel gather into Arrow) on synthetic, seeded pools.
//!
//! Run: `cargo bench -p longmagpie-core --bench pmix`; smoke test: `... --bench pmix -- --test`
//! (scaled-down data, one iteration each).
//!
//! Pools: long samples log-uniform in 8,000..=60,000 tokens (80 M tokens), short samples
//! log-uniform in 50..=2,000 tokens (20 M tokens); 64k rows, `p_long` 0.4, one short prefix,
//! `exhausted = recycle` (short samples reused while long ones remain). Throughput is reported in
//! output tokens; fill and long share are printed once per configuration on stderr.

mod common;

use std::hint::black_box;
use std::time::Duration;

use arrow_array::RecordBatch;
use common::{quick_mode, token_batch, SplitMix64};
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use longmagpie_core::{pack_pmix, Exhausted, Fill, PmixOptions};

const LONG_TOKENS: u64 = 80_000_000;
const SHORT_TOKENS: u64 = 20_000_000;
const QUICK_DIVISOR: u64 = 100;

fn pool(tokens: u64, lo: u32, hi: u32, seed: u64) -> RecordBatch {
    let mut rng = SplitMix64(seed);
    let mut offsets = vec![0i32];
    let mut total = 0u64;
    while total < tokens {
        total += rng.log_uniform(lo, hi) as u64;
        offsets.push(total as i32);
    }
    let ids: Vec<i32> = (0..total).map(|i| (i % 151_000) as i32).collect();
    let mask = vec![1i8; total as usize];
    token_batch(ids, mask, &offsets)
}

fn bench_pmix(c: &mut Criterion) {
    let div = if quick_mode() { QUICK_DIVISOR } else { 1 };
    let long = pool(LONG_TOKENS / div, 8_000, 60_000, 1);
    let short = pool(SHORT_TOKENS / div, 50, 2_000, 2);
    let mut group = c.benchmark_group("pmix");
    group.sample_size(10);
    group.sampling_mode(SamplingMode::Flat);
    group.measurement_time(Duration::from_secs(if quick_mode() { 1 } else { 10 }));
    for (fill, name) in [(Fill::Upstream, "upstream"), (Fill::BestFit, "best_fit")] {
        for threads in [Some(1), None] {
            let mut o = PmixOptions::new(65_536);
            o.fill = fill;
            o.exhausted = Exhausted::Recycle;
            o.num_threads = threads;
            let run = || {
                pack_pmix(
                    &long.schema(),
                    std::slice::from_ref(&long),
                    &short.schema(),
                    std::slice::from_ref(&short),
                    &o,
                )
                .expect("pmix")
            };
            let first = run();
            let s = &first.stats;
            eprintln!(
                "pmix {name} threads={threads:?}: {} rows, fill {:.3} %, long share {:.3} of segments / {:.3} of tokens",
                s.rows,
                100.0 * s.fill_rate,
                s.long_segment_share,
                s.long_token_share
            );
            group.throughput(Throughput::Elements(s.output_tokens));
            let id = BenchmarkId::new(name, threads.map_or("all".to_string(), |t| t.to_string()));
            group.bench_function(id, |b| b.iter(|| black_box(run())));
        }
    }
    group.finish();
}

criterion_group!(benches, bench_pmix);
criterion_main!(benches);
