#!/usr/bin/env bash
# Fuzz longmagpie-core with cargo-fuzz (libFuzzer): targets `pack` and `plan` in rust/core/fuzz/.
#
#   scripts/fuzz.sh [SECONDS]        # each target for SECONDS (default 30)
#
# Longer runs: pass more seconds, e.g. `scripts/fuzz.sh 3600` for an hour per target, or run one
# target by hand from rust/core, in parallel and for as long as you like:
#   cd rust/core && cargo +nightly fuzz run -s none pack -- -max_total_time=36000 -jobs=2 -workers=2
# Knobs (environment):
#   FUZZ_TARGETS="pack plan"   which targets, in order
#   FUZZ_SANITIZER=none        cargo-fuzz sanitizer; `address` (cargo-fuzz's own default) is ~15x
#                              slower here because pack starts a thread pool per call; the core has
#                              almost no unsafe code, so speed buys more than ASan
#   FUZZ_ARGS="..."            extra libFuzzer flags, e.g. "-max_len=4096 -len_control=0" to start
#                              with large inputs (many samples per case) at once
# Builds keep debug assertions and overflow checks (cargo-fuzz's default). Corpora grow in
# rust/core/fuzz/corpus/<target> (git-ignored) and are reused by the next run. A failure stops the
# script with a non-zero status; the crashing input is saved under rust/core/fuzz/artifacts/<target>/
# and can be replayed with
#   cd rust/core && cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/crash-...
# and shrunk with `cargo +nightly fuzz tmin -s none <target> <file>`.
set -euo pipefail

seconds="${1:-30}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: $0 [SECONDS]   (a positive whole number of seconds per target)" >&2
    exit 2
fi
targets="${FUZZ_TARGETS:-pack plan}"
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a extra <<< "${FUZZ_ARGS:-}"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz.sh: needs a nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$(dirname "$0")/../rust/core"
for t in $targets; do
    echo "=== fuzz target '$t': ${seconds}s (sanitizer: $sanitizer) ==="
    mkdir -p "fuzz/corpus/$t"
    cargo +nightly fuzz run -s "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 "${extra[@]}"
done
echo "fuzz.sh: no failure in $targets (${seconds}s each)"
