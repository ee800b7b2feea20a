//! Runs each example binary with small sizes and checks its exit status and
//! the lines that report its results, over each kind of URL.
#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin).args(args).output().unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    let stderr = String::from_utf8(stderr).unwrap();
    assert!(
        status.success(),
        "{bin} {args:?} failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

fn assert_has(out: &str, needles: &[&str]) {
    for n in needles {
        assert!(out.contains(n), "missing {n:?} in:\n{out}");
    }
}

#[test]
fn quickstart() {
    let out = run(env!("CARGO_BIN_EXE_quickstart"), &[]);
    assert_has(
        &out,
        &[
            "listening on zap://127.0.0.1:",
            "SayHello(\"Ada\") -> \"Hello, Ada!\"",
            "error INVALID_ARGUMENT",
            "Countdown(5) -> 5, 4, 3, 2, 1",
            "server got 4 chunks, 10240 bytes",
            "<- ZAP IS!",
            "quickstart done",
        ],
    );
}

const VM_CHECKS: &[&str] = &[
    "accepted 20 blocks of 1000 B payload",
    "blocks/s",
    "BlockAccept",
    "heights 0, 1, 10, 20 match; 21 is ERROR_NOT_FOUND",
    "GetAncestors: 10 blocks",
    "BatchedParseBlock: 5 blocks",
    "unknown parent: refused",
    "Version: zap-examples chain VM",
    "all checks passed",
];

#[test]
fn vm_node_over_tcp() {
    let out = run(
        env!("CARGO_BIN_EXE_vm_node"),
        &["--blocks", "20", "--size", "1000"],
    );
    assert_has(&out, &["on zap://127.0.0.1:"]);
    assert_has(&out, VM_CHECKS);
}

#[test]
fn vm_node_over_tls() {
    let out = run(
        env!("CARGO_BIN_EXE_vm_node"),
        &[
            "--url",
            "zaps://127.0.0.1:0",
            "--blocks",
            "20",
            "--size",
            "1000",
        ],
    );
    assert_has(&out, &["on zaps://127.0.0.1:"]);
    assert_has(&out, VM_CHECKS);
}

#[test]
fn vm_node_over_unix_socket() {
    let path = std::env::temp_dir().join(format!("zap-vm-node-{}.sock", std::process::id()));
    let url = format!("zap+unix://{}", path.display());
    let out = run(
        env!("CARGO_BIN_EXE_vm_node"),
        &["--url", &url, "--blocks", "20", "--size", "1000"],
    );
    assert_has(&out, &[&format!("on {url}")]);
    assert_has(&out, VM_CHECKS);
    assert!(!path.exists(), "the socket file outlived the server");
}

#[test]
fn vm_node_refuses_bad_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_vm_node"))
        .args(["--blocks", "many"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--blocks many"));
}

#[test]
fn warp_signer() {
    let out = run(env!("CARGO_BIN_EXE_warp_signer"), &["--messages", "50"]);
    assert_has(
        &out,
        &[
            "batch item 25 (malformed) refused in band: source_chain_id must be 32 bytes, got 31",
            "verified 50 batch and 50 single signatures",
            "tampered message: verification fails",
            "BatchSign: 50 signatures in 1 call",
            "Sign:      50 signatures in 50 calls",
            "signatures/s",
            "all checks passed",
        ],
    );
}

#[test]
fn streaming() {
    let out = run(
        env!("CARGO_BIN_EXE_streaming"),
        &["--orders", "2000", "--slow", "2"],
    );
    assert_has(
        &out,
        &[
            "slow consumer: read 2 fills",
            "server: matched",
            "done in",
            "2000 orders ->",
            "orders/s in",
        ],
    );
}
