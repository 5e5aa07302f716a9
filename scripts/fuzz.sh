#!/usr/bin/env bash
# Run every libFuzzer target in fuzz/ for a fixed budget: `scripts/fuzz.sh [seconds-per-target]`
# (default 60). Builds with cargo-fuzz (installed from crates.io when missing). cargo-fuzz needs
# nightly-only rustc flags (-Zsanitizer...); on a stable toolchain RUSTC_BOOTSTRAP=1 enables them.
#
# The committed seed corpora (fuzz/corpus/<target>/) are read, never written: new inputs go to a
# scratch corpus under fuzz/target/. A crash leaves its input in fuzz/artifacts/<target>/ and fails
# the script; `cargo fuzz run <target> <that file>` replays it.
set -euo pipefail
cd "$(dirname "$0")/.."

budget="${1:-60}"
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_QUIET=true

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked --quiet
fi

# Safe Rust: AddressSanitizer would find nothing that the fuzzer's own panics do not, at about
# twice the cost per input; debug assertions (overflow checks) stay on.
flags=(--sanitizer none --debug-assertions --fuzz-dir fuzz)
targets=$(cargo fuzz list --fuzz-dir fuzz)

start=$SECONDS
cargo fuzz build "${flags[@]}"
echo "fuzz: built in $((SECONDS - start)) s"

for target in $targets; do
    scratch="fuzz/target/corpus/$target"
    mkdir -p "$scratch" "fuzz/artifacts/$target"
    dict="fuzz/dict/$target.dict"
    extra=()
    [[ -f $dict ]] && extra+=("-dict=$dict")
    echo "fuzz: $target for ${budget} s"
    log="fuzz/target/$target.log"
    status=0
    cargo fuzz run "${flags[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$budget" -max_len=4096 -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 "${extra[@]}" >"$log" 2>&1 || status=$?
    grep -E '^(stat::number_of_executed_units|stat::new_units_added|stat::peak_rss_mb)' "$log" || true
    if [[ $status -ne 0 ]]; then
        grep -E -A3 'panicked|deadly signal|Test unit written|ERROR' "$log" | head -40 >&2 || true
        echo "fuzz: $target FAILED (exit $status); input in fuzz/artifacts/$target/, log in $log" >&2
        exit "$status"
    fi
done
echo "fuzz: all targets ran ${budget} s each without a failure ($((SECONDS - start)) s in all)"
