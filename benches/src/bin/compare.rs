//! `compare`: ZAP against its anchors, in one process, as ratios.
//!
//! ```text
//! cargo run --release -p zap-benches --bin compare -- [codec] [--json] [--quick]
//! ```
//!
//! Timing: for each case and size, every implementation is warmed up, then
//! the implementations run in interleaved batches (zap, prost, memcpy, zap,
//! prost, ...) so that drift on a noisy machine hits them alike. A batch is
//! sized to take ~2 ms (1 ms with `--quick`); the median of the per-batch
//! ns/op over 31 batches (15 with `--quick`) is reported. `black_box` on
//! inputs and outputs. Allocations are counted over 64 extra iterations after
//! timing, with a counting global allocator (a `realloc` counts as one).

use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use zap_benches::SIZES;
use zap_benches::alloc::{Counting, count};
use zap_benches::codec::{Case, Fixture, Impl};

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Opts {
    json: bool,
    quick: bool,
}

fn main() -> ExitCode {
    let mut opts = Opts {
        json: false,
        quick: false,
    };
    let mut groups = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--quick" => opts.quick = true,
            "codec" => groups.push(arg),
            "-h" | "--help" => {
                println!("usage: compare [codec] [--json] [--quick]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("compare: unknown argument `{other}` (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    if groups.is_empty() {
        groups.push("codec".to_owned());
    }
    for g in &groups {
        if g == "codec" {
            codec(&opts);
        }
    }
    ExitCode::SUCCESS
}

/// Median, 10th and 90th percentile of per-op nanoseconds.
#[derive(Clone, Copy)]
struct Sample {
    median: f64,
    p10: f64,
    p90: f64,
}

/// Times `op(i)` for every `i < n` in interleaved batches.
fn measure(n: usize, mut op: impl FnMut(usize) -> u64, quick: bool) -> Vec<Sample> {
    let (warm, batch_time, batches) = if quick {
        (Duration::from_millis(20), Duration::from_millis(1), 15)
    } else {
        (Duration::from_millis(100), Duration::from_millis(2), 31)
    };
    // Warm up each and size its batch from the estimated cost of one op.
    let sizes: Vec<u64> = (0..n)
        .map(|i| {
            let start = Instant::now();
            let mut runs = 0u64;
            while start.elapsed() < warm {
                black_box(op(i));
                runs += 1;
            }
            let per_op = start.elapsed().as_nanos() as f64 / runs as f64;
            ((batch_time.as_nanos() as f64 / per_op) as u64).max(1)
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(batches); n];
    for _ in 0..batches {
        for (i, &batch) in sizes.iter().enumerate() {
            let t = Instant::now();
            for _ in 0..batch {
                black_box(op(i));
            }
            samples[i].push(t.elapsed().as_nanos() as f64 / batch as f64);
        }
    }
    samples
        .into_iter()
        .map(|mut s| {
            s.sort_by(f64::total_cmp);
            let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
            Sample {
                median: at(0.5),
                p10: at(0.1),
                p90: at(0.9),
            }
        })
        .collect()
}

fn allocs_per_op(mut op: impl FnMut() -> u64) -> f64 {
    const N: u64 = 64;
    let (_, allocs) = count(|| {
        for _ in 0..N {
            black_box(op());
        }
    });
    allocs as f64 / N as f64
}

struct Row {
    case: Case,
    size: usize,
    imp: Impl,
    sample: Sample,
    allocs: f64,
}

fn codec(opts: &Opts) {
    let impls = [Impl::Zap, Impl::Prost, Impl::Memcpy, Impl::ZapStruct];
    let mut rows = Vec::new();
    let mut out = std::io::stdout().lock();
    for size in SIZES {
        let mut f = Fixture::new(size);
        for case in Case::ALL {
            let samples = measure(impls.len(), |i| f.run(impls[i], case), opts.quick);
            for (imp, sample) in impls.into_iter().zip(samples) {
                let allocs = allocs_per_op(|| f.run(imp, case));
                // `zap_struct` is table-only: JSON `impl` is zap, prost or memcpy.
                if opts.json && imp != Impl::ZapStruct {
                    let line = serde_json::json!({
                        "group": "codec",
                        "case": case.name(),
                        "size": size,
                        "impl": imp.name(),
                        "ns_per_op": round2(sample.median),
                        "allocs_per_op": allocs,
                    });
                    if writeln!(out, "{line}").is_err() {
                        return; // stdout closed (e.g. piped into `head`)
                    }
                }
                rows.push(Row {
                    case,
                    size,
                    imp,
                    sample,
                    allocs,
                });
            }
        }
    }
    if !opts.json {
        print_codec_table(&rows);
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn find(rows: &[Row], case: Case, size: usize, imp: Impl) -> &Row {
    rows.iter()
        .find(|r| r.case == case && r.size == size && r.imp == imp)
        .expect("every combination is measured")
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.1} ns")
    }
}

fn fmt_size(size: usize) -> String {
    if size >= 1024 * 1024 {
        format!("{} MB", size / (1024 * 1024))
    } else {
        format!("{} KB", size / 1024)
    }
}

fn print_codec_table(rows: &[Row]) {
    println!(
        "codec: Block {{ id: [u8;32], parent_id: [u8;32], height: u64, timestamp: i64, body: Bytes }}"
    );
    println!("median ns/op (p10–p90 for zap); ratios are zap ÷ anchor; allocs per op");
    println!("zap decodes to zap::Owned<Block> (validated, fields read in place);");
    println!("zap_struct decodes to the derived Rust struct, as prost does\n");
    println!(
        "{:<16} {:>6} {:>24} {:>10} {:>10} {:>9} {:>9} {:>7} {:>7} {:>11} {:>8}",
        "case",
        "body",
        "zap",
        "prost",
        "memcpy",
        "÷prost",
        "÷memcpy",
        "zap al",
        "pb al",
        "zap_struct",
        "÷prost"
    );
    for case in Case::ALL {
        for size in SIZES {
            let z = find(rows, case, size, Impl::Zap);
            let p = find(rows, case, size, Impl::Prost);
            let m = find(rows, case, size, Impl::Memcpy);
            let st = find(rows, case, size, Impl::ZapStruct);
            let zap = format!(
                "{} ({}–{})",
                fmt_ns(z.sample.median),
                fmt_ns(z.sample.p10),
                fmt_ns(z.sample.p90)
            );
            println!(
                "{:<16} {:>6} {:>24} {:>10} {:>10} {:>8.3}× {:>8.3}× {:>7.1} {:>7.1} {:>11} {:>7.3}×",
                case.name(),
                fmt_size(size),
                zap,
                fmt_ns(p.sample.median),
                fmt_ns(m.sample.median),
                z.sample.median / p.sample.median,
                z.sample.median / m.sample.median,
                z.allocs,
                p.allocs,
                fmt_ns(st.sample.median),
                st.sample.median / p.sample.median,
            );
        }
    }

    println!("\ntargets (issue #2):");
    let ratio = |case, size, anchor| {
        find(rows, case, size, Impl::Zap).sample.median
            / find(rows, case, size, anchor).sample.median
    };
    let check = |name: String, value: f64, limit: f64| {
        let verdict = if value <= limit { "met" } else { "MISSED" };
        println!("  {name:<48} {value:>7.3} (≤ {limit}) {verdict}");
    };
    for size in SIZES {
        check(
            format!("decode_read_all zap ÷ prost @ {}", fmt_size(size)),
            ratio(Case::DecodeReadAll, size, Impl::Prost),
            0.25,
        );
    }
    check(
        "encode zap ÷ prost @ 1 KB".into(),
        ratio(Case::Encode, 1024, Impl::Prost),
        0.5,
    );
    for size in [100 * 1024, 1024 * 1024] {
        check(
            format!("encode zap ÷ memcpy @ {}", fmt_size(size)),
            ratio(Case::Encode, size, Impl::Memcpy),
            1.05,
        );
    }
    let max_allocs = rows
        .iter()
        .filter(|r| matches!(r.imp, Impl::Zap | Impl::ZapStruct) && r.case != Case::DecodeReadAll)
        .map(|r| r.allocs)
        .fold(0.0, f64::max);
    check(
        "zap allocations per encode/decode (max)".into(),
        max_allocs,
        0.0,
    );
}
