//! The tokio runtime: [`Channel`] (client) and [`Server`] drive the
//! sans-IO protocol core over `zap-transport` byte streams, or (feature
//! `quic`, `zap+quic://`) run each call on its own QUIC stream.
//!
//! Byte streams: one task per connection (the driver) reads, runs the state
//! machine and writes with vectored I/O; calls talk to it through a short
//! mutex. QUIC: no driver; each half of a call reads or writes its own
//! stream (PROTOCOL.md §11). Either way a call reaches its connection
//! through a `Link`, so the call types are the same. Server calls each run
//! in their own task, so a slow handler delays nobody, and are stopped
//! (their future dropped) when the client cancels, the deadline passes or
//! the connection ends.

mod call;
mod client;
mod conn;
#[cfg(feature = "grpc")]
pub mod grpc;
mod link;
#[cfg(feature = "quic")]
mod quic;
mod server;
pub(crate) mod service;
#[cfg(feature = "grpc")]
mod sniff;
mod stats;

pub use call::{Method, Request, Response, Streaming};
pub use client::{CallResponse, CallSender, Channel, ChannelBuilder, RawCall, RequestStream};
pub use server::{AnyListener, BoxError, DuplicateRoute, Router, ServeError, Server, ServerCall};
pub use service::{BoxStream, CallChannel, IntoRequest, NamedService};
pub use stats::ServerStats;

use crate::proto::{Config, Settings};

/// Protocol configuration from transport limits.
pub(crate) fn proto_config(limits: &zap_transport::Limits) -> Config {
    let d = Settings::default();
    let max_frame = limits.max_frame;
    Config {
        settings: Settings {
            max_frame,
            max_concurrent_streams: limits.max_concurrent_streams,
            max_message: d
                .max_message
                .min(max_frame.saturating_sub(64 << 10).max(1024)),
            ..d
        },
        handshake_timeout: limits.handshake_timeout,
        idle_timeout: limits.idle_timeout,
        keepalive_interval: limits.keepalive_interval,
        keepalive_timeout: limits.keepalive_timeout,
        max_queued_output: limits.max_queued_output,
        max_queued_output_per_call: limits.max_queued_output_per_call,
        max_metadata_memory: limits.max_metadata_memory,
        ..Config::default()
    }
}
