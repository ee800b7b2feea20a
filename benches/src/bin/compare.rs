//! `compare`: ZAP against its anchors, in one process, as ratios.
//!
//! ```text
//! cargo run --release -p zap-benches --bin compare -- [codec] [rpc] [--json] [--quick]
//!     [--transport tcp|tls|unix|quic]... [--size BYTES]...
//! ```
//!
//! With no group, runs `codec` then `rpc`. `--transport` and `--size` keep
//! only those `rpc` rows (repeatable).
//!
//! `codec` timing: for each case and size, every implementation is warmed
//! up, then the implementations run in interleaved batches (zap, prost,
//! memcpy, zap, prost, ...) so that drift on a noisy machine hits them
//! alike. A batch is sized to take ~2 ms (1 ms with `--quick`); the median
//! of the per-batch ns/op over 31 batches (15 with `--quick`) is reported.
//! `black_box` on inputs and outputs. Allocations are counted over 64 extra
//! iterations after timing, with a counting global allocator (a `realloc`
//! counts as one).
//!
//! `rpc` timing (see `zap_benches::rpc`): unary echo at 64 B, 1 KB, 64 KB
//! and 1 MB, zap against the raw floor, the mux client, tonic, and zap-grpc
//! (the generated service behind zap's gRPC fallback, called by tonic's
//! client), over TCP, TLS, Unix sockets and QUIC (tonic and zap-grpc: TCP),
//! with the default worker count and with 1
//! worker. Each measurement gets a fresh runtime, server and connection.
//! For each transport and size the implementations run in turn, in 5
//! rounds (2 with `--quick`), so that drift on a noisy machine hits them
//! alike and a round whose tasks landed badly on the worker threads does
//! not decide; each figure is the median of its rounds.
//! Latency: one call in flight, warm-up 150 ms (100 ms with `--quick`),
//! per-call samples for 0.3 s (0.2 s), at most 200 000, p50 and p99;
//! allocations (whole process) over 200 more calls. Throughput: 64 calls in
//! flight on one connection, calls/s over a 0.3 s (0.2 s) window after the
//! warm-up.

use std::hint::black_box;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use zap_benches::SIZES;
use zap_benches::alloc::{Counting, count};
use zap_benches::codec::{Case, Fixture, Impl};
use zap_benches::rpc;

#[global_allocator]
static GLOBAL: Counting = Counting;

struct Opts {
    json: bool,
    quick: bool,
    /// `rpc` rows only for these transports (all when empty).
    transports: Vec<rpc::Transport>,
    /// `rpc` rows only for these sizes (all when empty).
    sizes: Vec<usize>,
}

const USAGE: &str = "usage: compare [codec] [rpc] [--json] [--quick] \
[--transport tcp|tls|unix|quic]... [--size BYTES]...";

/// Whether a group ran to the end, or stdout was closed under it (or a
/// measurement failed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Done,
    StdoutClosed,
    Failed,
}

fn main() -> ExitCode {
    let mut opts = Opts {
        json: false,
        quick: false,
        transports: Vec::new(),
        sizes: Vec::new(),
    };
    let mut groups = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => opts.json = true,
            "--quick" => opts.quick = true,
            "--transport" => {
                let name = args.next().unwrap_or_default();
                match rpc::Transport::ALL.into_iter().find(|t| t.name() == name) {
                    Some(t) => opts.transports.push(t),
                    None => {
                        eprintln!("compare: unknown transport `{name}` ({USAGE})");
                        return ExitCode::from(2);
                    }
                }
            }
            "--size" => {
                let value = args.next().unwrap_or_default();
                match value.parse() {
                    Ok(n) if rpc::SIZES.contains(&n) => opts.sizes.push(n),
                    _ => {
                        eprintln!("compare: size `{value}` is not one of {:?}", rpc::SIZES);
                        return ExitCode::from(2);
                    }
                }
            }
            "codec" | "rpc" => groups.push(arg),
            "-h" | "--help" => {
                println!("{USAGE}");
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
        groups.push("rpc".to_owned());
    }
    let mut failed = false;
    for g in &groups {
        let outcome = match g.as_str() {
            "codec" => codec(&opts),
            _ => rpc_group(&opts),
        };
        match outcome {
            Outcome::Done => {}
            Outcome::StdoutClosed => break,
            Outcome::Failed => failed = true,
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
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

fn codec(opts: &Opts) -> Outcome {
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
                        return Outcome::StdoutClosed; // e.g. piped into `head`
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
    drop(out);
    if !opts.json && print_codec_table(&rows).is_err() {
        return Outcome::StdoutClosed;
    }
    Outcome::Done
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

fn print_codec_table(rows: &[Row]) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "codec: Block {{ id: [u8;32], parent_id: [u8;32], height: u64, timestamp: i64, body: Bytes }}"
    )?;
    writeln!(
        out,
        "median ns/op (p10–p90 for zap); ratios are zap ÷ anchor; allocs per op"
    )?;
    writeln!(
        out,
        "zap decodes to zap::Owned<Block> (validated, fields read in place);"
    )?;
    writeln!(
        out,
        "zap_struct decodes to the derived Rust struct, as prost does\n"
    )?;
    writeln!(
        out,
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
    )?;
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
            writeln!(
                out,
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
            )?;
        }
    }

    writeln!(out, "\ntargets (issue #2):")?;
    let ratio = |case, size, anchor| {
        find(rows, case, size, Impl::Zap).sample.median
            / find(rows, case, size, anchor).sample.median
    };
    let mut check = |name: String, value: f64, limit: f64| {
        let verdict = if value <= limit { "met" } else { "MISSED" };
        writeln!(out, "  {name:<48} {value:>7.3} (≤ {limit}) {verdict}")
    };
    for size in SIZES {
        check(
            format!("decode_read_all zap ÷ prost @ {}", fmt_size(size)),
            ratio(Case::DecodeReadAll, size, Impl::Prost),
            0.25,
        )?;
    }
    check(
        "encode zap ÷ prost @ 1 KB".into(),
        ratio(Case::Encode, 1024, Impl::Prost),
        0.5,
    )?;
    for size in [100 * 1024, 1024 * 1024] {
        check(
            format!("encode zap ÷ memcpy @ {}", fmt_size(size)),
            ratio(Case::Encode, size, Impl::Memcpy),
            1.05,
        )?;
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
    )
}

// ------------------------------------------------------------------- rpc

#[derive(Clone, Copy, PartialEq, Eq)]
enum RpcCase {
    Latency,
    Throughput,
}

impl RpcCase {
    fn name(self) -> &'static str {
        match self {
            RpcCase::Latency => "latency",
            RpcCase::Throughput => "throughput",
        }
    }
}

#[derive(Clone, Copy)]
enum Measured {
    Latency(rpc::Latency),
    CallsPerSec(f64),
}

struct RpcRow {
    transport: rpc::Transport,
    size: usize,
    imp: rpc::Impl,
    workers: usize,
    value: Measured,
}

fn rpc_group(opts: &Opts) -> Outcome {
    let (timing, rounds) = if opts.quick {
        (rpc::Timing::QUICK, QUICK_ROUNDS)
    } else {
        (rpc::Timing::FULL, FULL_ROUNDS)
    };
    let default_workers = rpc::default_workers();
    let mut workers = vec![default_workers];
    if default_workers != 1 {
        workers.push(1);
    }
    let mut rows = Vec::new();
    let mut failed = false;
    let mut out = io::stdout().lock();
    for case in [RpcCase::Latency, RpcCase::Throughput] {
        for &w in &workers {
            for transport in rpc::Transport::ALL {
                if !opts.transports.is_empty() && !opts.transports.contains(&transport) {
                    continue;
                }
                for size in rpc::SIZES {
                    if !opts.sizes.is_empty() && !opts.sizes.contains(&size) {
                        continue;
                    }
                    let impls: Vec<rpc::Impl> = rpc::Impl::ALL
                        .into_iter()
                        .filter(|imp| imp.supports(transport))
                        .collect();
                    // Rounds of every implementation in turn: drift on a
                    // noisy machine hits them alike; the median round counts.
                    let mut runs: Vec<Vec<Measured>> = vec![Vec::new(); impls.len()];
                    for _ in 0..rounds {
                        for (i, &imp) in impls.iter().enumerate() {
                            let measured = match case {
                                RpcCase::Latency => {
                                    rpc::measure_latency(imp, transport, size, w, timing)
                                        .map(Measured::Latency)
                                }
                                RpcCase::Throughput => {
                                    rpc::measure_throughput(imp, transport, size, w, timing)
                                        .map(Measured::CallsPerSec)
                                }
                            };
                            match measured {
                                Ok(v) => runs[i].push(v),
                                Err(e) => {
                                    eprintln!(
                                        "compare rpc: {} {} {} {} workers={w}: {e}",
                                        case.name(),
                                        transport.name(),
                                        fmt_bytes(size),
                                        imp.name()
                                    );
                                    failed = true;
                                }
                            }
                        }
                    }
                    for (imp, runs) in impls.into_iter().zip(runs) {
                        let Some(value) = median_run(runs) else {
                            continue;
                        };
                        if opts.json
                            && writeln!(out, "{}", rpc_json(case, transport, size, imp, w, value))
                                .is_err()
                        {
                            return Outcome::StdoutClosed; // e.g. piped into `head`
                        }
                        rows.push(RpcRow {
                            transport,
                            size,
                            imp,
                            workers: w,
                            value,
                        });
                    }
                }
            }
        }
    }
    drop(out);
    if !opts.json && print_rpc_tables(&rows, &workers).is_err() {
        return Outcome::StdoutClosed;
    }
    if failed {
        Outcome::Failed
    } else {
        Outcome::Done
    }
}

/// Rounds of each `rpc` measurement (see [`rpc_group`]).
const FULL_ROUNDS: usize = 5;
const QUICK_ROUNDS: usize = 2;

/// The median of a measurement's rounds: p50, p99 and allocations each
/// the median of theirs.
fn median_run(runs: Vec<Measured>) -> Option<Measured> {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    }
    let mut latencies = Vec::new();
    let mut rates = Vec::new();
    for r in runs {
        match r {
            Measured::Latency(l) => latencies.push(l),
            Measured::CallsPerSec(c) => rates.push(c),
        }
    }
    if !rates.is_empty() {
        return Some(Measured::CallsPerSec(median(rates)));
    }
    if latencies.is_empty() {
        return None;
    }
    let pick = |f: fn(&rpc::Latency) -> f64| median(latencies.iter().map(f).collect());
    Some(Measured::Latency(rpc::Latency {
        p50_us: pick(|l| l.p50_us),
        p99_us: pick(|l| l.p99_us),
        allocs_per_call: pick(|l| l.allocs_per_call),
        samples: latencies.iter().map(|l| l.samples).sum(),
    }))
}

fn rpc_json(
    case: RpcCase,
    transport: rpc::Transport,
    size: usize,
    imp: rpc::Impl,
    workers: usize,
    value: Measured,
) -> serde_json::Value {
    match value {
        Measured::Latency(l) => serde_json::json!({
            "group": "rpc",
            "case": case.name(),
            "transport": transport.name(),
            "size": size,
            "impl": imp.name(),
            "workers": workers,
            "p50_us": round2(l.p50_us),
            "p99_us": round2(l.p99_us),
            "allocs_per_call": l.allocs_per_call,
        }),
        Measured::CallsPerSec(c) => serde_json::json!({
            "group": "rpc",
            "case": case.name(),
            "transport": transport.name(),
            "size": size,
            "inflight": rpc::INFLIGHT,
            "impl": imp.name(),
            "workers": workers,
            "calls_per_s": c.round() as u64,
        }),
    }
}

fn find_rpc(
    rows: &[RpcRow],
    transport: rpc::Transport,
    size: usize,
    imp: rpc::Impl,
    workers: usize,
) -> impl Iterator<Item = Measured> + '_ {
    rows.iter()
        .filter(move |r| {
            r.transport == transport && r.size == size && r.imp == imp && r.workers == workers
        })
        .map(|r| r.value)
}

fn latency_of(
    rows: &[RpcRow],
    t: rpc::Transport,
    size: usize,
    imp: rpc::Impl,
    w: usize,
) -> Option<rpc::Latency> {
    find_rpc(rows, t, size, imp, w).find_map(|m| match m {
        Measured::Latency(l) => Some(l),
        Measured::CallsPerSec(_) => None,
    })
}

fn rate_of(
    rows: &[RpcRow],
    t: rpc::Transport,
    size: usize,
    imp: rpc::Impl,
    w: usize,
) -> Option<f64> {
    find_rpc(rows, t, size, imp, w).find_map(|m| match m {
        Measured::CallsPerSec(c) => Some(c),
        Measured::Latency(_) => None,
    })
}

fn fmt_bytes(size: usize) -> String {
    if size < 1024 {
        format!("{size} B")
    } else {
        fmt_size(size)
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}×", a / b),
        _ => "–".into(),
    }
}

fn fmt_opt(v: Option<String>) -> String {
    v.unwrap_or_else(|| "–".into())
}

fn print_rpc_tables(rows: &[RpcRow], workers: &[usize]) -> io::Result<()> {
    use rpc::{Impl as I, Transport as T};
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "rpc latency: unary echo of a Block (payload = body size), 1 call in flight"
    )?;
    writeln!(
        out,
        "p50 µs (p99 µs for zap); ratios are zap p50 ÷ anchor p50 (zg÷ton: zap-grpc ÷ tonic);\n\
         allocs per call, whole process\n"
    )?;
    writeln!(
        out,
        "{:>2} {:<5} {:>6} {:>18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}",
        "w",
        "trans",
        "body",
        "zap",
        "raw",
        "mux",
        "tonic",
        "zap-grpc",
        "÷raw",
        "÷mux",
        "÷tonic",
        "÷zgrpc",
        "zg÷ton",
        "zap al",
        "raw al",
        "mux al",
        "ton al",
        "zg al"
    )?;
    for &w in workers {
        for t in T::ALL {
            for size in rpc::SIZES {
                if latency_of(rows, t, size, I::Zap, w).is_none()
                    && latency_of(rows, t, size, I::Raw, w).is_none()
                {
                    continue; // filtered out
                }
                let lat = |imp| latency_of(rows, t, size, imp, w);
                let p50 = |imp| lat(imp).map(|l: rpc::Latency| l.p50_us);
                let zap = lat(I::Zap).map(|l| format!("{:.1} ({:.1})", l.p50_us, l.p99_us));
                let us = |imp| fmt_opt(p50(imp).map(|v| format!("{v:.1}")));
                let al = |imp| {
                    fmt_opt(lat(imp).map(|l: rpc::Latency| format!("{:.1}", l.allocs_per_call)))
                };
                writeln!(
                    out,
                    "{:>2} {:<5} {:>6} {:>18} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6} {:>6} {:>6} {:>6} {:>6}",
                    w,
                    t.name(),
                    fmt_bytes(size),
                    fmt_opt(zap),
                    us(I::Raw),
                    us(I::Mux),
                    us(I::Tonic),
                    us(I::ZapGrpc),
                    fmt_ratio(p50(I::Zap), p50(I::Raw)),
                    fmt_ratio(p50(I::Zap), p50(I::Mux)),
                    fmt_ratio(p50(I::Zap), p50(I::Tonic)),
                    fmt_ratio(p50(I::Zap), p50(I::ZapGrpc)),
                    fmt_ratio(p50(I::ZapGrpc), p50(I::Tonic)),
                    al(I::Zap),
                    al(I::Raw),
                    al(I::Mux),
                    al(I::Tonic),
                    al(I::ZapGrpc),
                )?;
            }
        }
    }

    writeln!(
        out,
        "\nrpc throughput: {} calls in flight on one connection; calls/s; ratios are zap ÷ anchor \
         (zg÷ton: zap-grpc ÷ tonic)",
        rpc::INFLIGHT
    )?;
    writeln!(
        out,
        "(raw: pipelined writer + reader tasks, no task per call; others: {} tasks looping calls)\n",
        rpc::INFLIGHT
    )?;
    writeln!(
        out,
        "{:>2} {:<5} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "w",
        "trans",
        "body",
        "zap",
        "raw",
        "mux",
        "tonic",
        "zap-grpc",
        "÷raw",
        "÷mux",
        "÷tonic",
        "÷zgrpc",
        "zg÷ton"
    )?;
    for &w in workers {
        for t in T::ALL {
            for size in rpc::SIZES {
                if rate_of(rows, t, size, I::Zap, w).is_none()
                    && rate_of(rows, t, size, I::Raw, w).is_none()
                {
                    continue; // filtered out
                }
                let rate = |imp| rate_of(rows, t, size, imp, w);
                let fmt = |imp| fmt_opt(rate(imp).map(fmt_rate));
                writeln!(
                    out,
                    "{:>2} {:<5} {:>6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
                    w,
                    t.name(),
                    fmt_bytes(size),
                    fmt(I::Zap),
                    fmt(I::Raw),
                    fmt(I::Mux),
                    fmt(I::Tonic),
                    fmt(I::ZapGrpc),
                    fmt_ratio(rate(I::Zap), rate(I::Raw)),
                    fmt_ratio(rate(I::Zap), rate(I::Mux)),
                    fmt_ratio(rate(I::Zap), rate(I::Tonic)),
                    fmt_ratio(rate(I::Zap), rate(I::ZapGrpc)),
                    fmt_ratio(rate(I::ZapGrpc), rate(I::Tonic)),
                )?;
            }
        }
    }

    let w = workers[0];
    writeln!(out, "\ntargets (issue #3), {w} workers:")?;
    for t in [T::Tcp, T::Unix] {
        for size in rpc::SIZES {
            let limit = if size <= 1024 { 1.3 } else { 1.1 };
            let p50 = |imp| latency_of(rows, t, size, imp, w).map(|l| l.p50_us);
            let ratio = p50(I::Zap).zip(p50(I::Raw)).map(|(z, r)| z / r);
            check(
                &mut out,
                format!("p50 latency zap ÷ raw, {} @ {}", t.name(), fmt_bytes(size)),
                ratio,
                limit,
                true,
            )?;
        }
    }
    let rate = |imp| rate_of(rows, T::Tcp, 64, imp, w);
    for (anchor, limit) in [(I::Mux, 1.5), (I::Tonic, 20.0)] {
        check(
            &mut out,
            format!(
                "calls/s zap ÷ {}, tcp @ 64 B, {} in flight",
                anchor.name(),
                rpc::INFLIGHT
            ),
            rate(I::Zap).zip(rate(anchor)).map(|(z, a)| z / a),
            limit,
            false,
        )?;
    }
    check(
        &mut out,
        "allocations per unary call (zap, tcp, 64 B)".into(),
        latency_of(rows, T::Tcp, 64, I::Zap, w).map(|l| l.allocs_per_call),
        4.0,
        true,
    )?;
    // Issue #6: against the raw quinn stream-per-request floor.
    writeln!(out, "targets (issue #6), {w} workers:")?;
    for size in [64, 1024] {
        let p50 = |imp| latency_of(rows, T::Quic, size, imp, w).map(|l| l.p50_us);
        check(
            &mut out,
            format!("p50 latency zap ÷ raw, quic @ {}", fmt_bytes(size)),
            p50(I::Zap).zip(p50(I::Raw)).map(|(z, r)| z / r),
            1.3,
            true,
        )?;
        let rate = |imp| rate_of(rows, T::Quic, size, imp, w);
        check(
            &mut out,
            format!(
                "calls/s zap ÷ raw, quic @ {}, {} in flight",
                fmt_bytes(size),
                rpc::INFLIGHT
            ),
            rate(I::Zap).zip(rate(I::Raw)).map(|(z, r)| z / r),
            0.8,
            false,
        )?;
    }
    Ok(())
}

/// Prints one target line: `value` against `limit` (at most or at least).
fn check(
    out: &mut impl Write,
    name: String,
    value: Option<f64>,
    limit: f64,
    at_most: bool,
) -> io::Result<()> {
    let op = if at_most { "≤" } else { "≥" };
    match value {
        Some(v) => {
            let met = if at_most { v <= limit } else { v >= limit };
            let verdict = if met { "met" } else { "MISSED" };
            writeln!(out, "  {name:<48} {v:>7.3} ({op} {limit}) {verdict}")
        }
        None => writeln!(out, "  {name:<48} {:>7} ({op} {limit}) not measured", "n/a"),
    }
}
