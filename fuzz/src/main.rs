//! The stable fuzz loop: `cargo run --release -p zap-fuzz -- [--iterations N]
//! [--seed S] [--corpus DIR]`. A panic in any parse path stops the run,
//! saves the input under `fuzz/crashes/` and exits 1.

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::Instant;

use zap_fuzz::{Fuzzer, exercise};

fn main() -> ExitCode {
    let mut iterations: u64 = 1_000_000;
    let mut seed: u64 = 0x5EED;
    let mut extra = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let value = args.next();
        let parsed = match (a.as_str(), value) {
            ("--iterations", Some(v)) => v.parse().map(|v| iterations = v).is_ok(),
            ("--seed", Some(v)) => v.parse().map(|v| seed = v).is_ok(),
            ("--corpus", Some(dir)) => match std::fs::read_dir(&dir) {
                Ok(entries) => {
                    extra.extend(
                        entries
                            .flatten()
                            .filter_map(|e| std::fs::read(e.path()).ok()),
                    );
                    true
                }
                Err(e) => {
                    eprintln!("zap-fuzz: {dir}: {e}");
                    false
                }
            },
            _ => false,
        };
        if !parsed {
            eprintln!("usage: zap-fuzz [--iterations N] [--seed S] [--corpus DIR]");
            return ExitCode::from(2);
        }
    }

    // Corpus files (e.g. saved crashes) run verbatim first.
    for (i, input) in extra.iter().enumerate() {
        if panic::catch_unwind(AssertUnwindSafe(|| exercise(input))).is_err() {
            eprintln!("zap-fuzz: corpus input {i} panics");
            return ExitCode::FAILURE;
        }
    }
    let mut fuzzer = Fuzzer::new(seed, extra);
    let start = Instant::now();
    while fuzzer.runs < iterations {
        let input = fuzzer.input();
        let Ok(outcome) = panic::catch_unwind(AssertUnwindSafe(|| exercise(&input))) else {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/crashes");
            let path = format!("{dir}/crash-{seed}-{}.bin", fuzzer.runs);
            let saved = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, &input));
            eprintln!(
                "zap-fuzz: panic after {} inputs; input saved to {path} ({saved:?})",
                fuzzer.runs
            );
            return ExitCode::FAILURE;
        };
        fuzzer.record(input, outcome);
        if fuzzer.runs % 200_000 == 0 {
            eprintln!(
                "zap-fuzz: {} inputs ({} validated), corpus {}, {:.0} inputs/s",
                fuzzer.runs,
                fuzzer.validated,
                fuzzer.corpus_len(),
                fuzzer.runs as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    println!(
        "zap-fuzz: {} inputs ({} fully validated), no crash (seed {seed}, corpus {}, {:.1} s)",
        fuzzer.runs,
        fuzzer.validated,
        fuzzer.corpus_len(),
        start.elapsed().as_secs_f64()
    );
    ExitCode::SUCCESS
}
