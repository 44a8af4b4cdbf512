//! How a benchmark runs: in full (the default), or in quick mode, `INFRA_BENCH_QUICK=1`, where
//! it repeats each measurement once to show that it still starts and finishes;
//! `.ci/bench-check` runs every command BENCHMARKS.md documents that way (its numbers are not
//! results). And what a benchmark does without a tool it needs: say so and exit, unless
//! `INFRA_REQUIRE_TOOLS` is set (CI), where a skip would hide a broken command.

/// Whether `INFRA_BENCH_QUICK` is set (to anything but `0`).
pub fn quick() -> bool {
    std::env::var_os("INFRA_BENCH_QUICK").is_some_and(|v| v != "0")
}

/// `normal` repetitions, or one in quick mode.
pub fn repeat(normal: usize) -> usize {
    if quick() {
        1
    } else {
        normal
    }
}

/// Reports that the benchmark cannot run here (`why`); the caller then returns. Under
/// `INFRA_REQUIRE_TOOLS` that is a failure instead.
pub fn skip(bench: &str, why: &str) {
    if std::env::var_os("INFRA_REQUIRE_TOOLS").is_some() {
        panic!("{bench}: {why}, and INFRA_REQUIRE_TOOLS is set");
    }
    println!("{bench}: skipped, {why}");
}
