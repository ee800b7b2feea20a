//! # zap: zero-copy messages in the ZAP object format
//!
//! This crate is the codec layer of zap-rs. A ZAP message is a 16-byte
//! header followed by objects whose fields sit at fixed byte offsets, with
//! variable data (bytes, text, lists, nested objects) reached through
//! relative pointers. The bytes are those of the Go reference
//! (`luxfi/zap`, `zap-proto/go`): a message built here parses there and the
//! reverse (golden vectors in `zap/testdata/` pin this).
//!
//! Three levels, use the highest that fits:
//!
//! - **Derived messages** (`#[derive(zap::Message)]`): a struct gets a
//!   deterministic layout, an encoder into a reusable [`wire::Builder`], an
//!   owned decoder whose `Bytes` fields are slices of the input (no copy),
//!   and a borrowed `{Name}View<'a>` whose accessors read in place.
//! - **Raw readers** ([`wire::Message`], [`wire::Object`], [`wire::List`]):
//!   untyped access by offset, every read checked and returning `Result`.
//! - **[`wire::Builder`]**: writes objects, lists and payloads by offset.
//!
//! ## RPC and services
//!
//! With the `runtime` feature (default), [`Channel`] and [`Server`] carry
//! calls over `zap-transport` connections (`docs/PROTOCOL.md`): TCP, TLS 1.3
//! and Unix sockets, and QUIC with the `quic` feature (`zap+quic://`, one
//! QUIC stream per call, §11). Services are
//! declared with [`macro@service`] on a trait of async methods, or generated
//! from `.proto` files by `zap-build`; both produce the trait, a
//! `{Name}Server<T>` ([`NamedService`], added with
//! [`Router::add_service`]), a `{Name}Client` and `{name}_methods` path
//! constants. A call's message is any [`Payload`]: a derived message, an
//! [`Owned`] message (read in place) or raw `Bytes`.
//!
//! ```no_run
//! # #[cfg(feature = "runtime")]
//! # mod demo {
//! use zap::{Request, Response, Status, Streaming};
//!
//! #[derive(zap::Message, Clone, Debug, Default)]
//! pub struct Num { pub value: i64 }
//!
//! #[zap::service(package = "calc")]
//! pub trait Calc {
//!     /// `/calc.Calc/Double`
//!     async fn double(&self, request: Request<Num>) -> Result<Response<Num>, Status>;
//!     /// `/calc.Calc/Sum`: the client streams.
//!     async fn sum(&self, request: Request<Streaming<Num>>) -> Result<Response<Num>, Status>;
//! }
//! // Generated: CalcServer<T>, CalcClient, calc_methods::{DOUBLE, SUM}.
//! # }
//! ```
//!
//! ## Validate once, then read without failing
//!
//! `decode`/`view` check the header and every pointer, length and count the
//! type can reach, and report the first problem with its offset and field
//! ([`DecodeError`]). After that, accessors return values, not `Result`s,
//! and never panic or read out of bounds. Validation is bounded: nesting
//! depth is capped at [`MAX_DEPTH`] and total work at 16× the message size,
//! so aliased or cyclic pointers cannot make it loop or blow up.
//!
//! ## Schema evolution
//!
//! Derived layouts start each object with a `u32` giving the size of the
//! fixed section its writer used. A reader treats fields beyond that size
//! as absent (default value): old messages decode under new structs, and new
//! messages under old ones (extra fields are skipped). Add fields at the end
//! only. Layouts with explicit `#[zap(offset = N)]` match an existing Go
//! schema byte for byte and have no size word. See `docs/FORMAT.md`.
//!
//! ```
//! use bytes::Bytes;
//! use zap::Message;
//!
//! #[derive(zap::Message, Debug, PartialEq)]
//! struct Block {
//!     id: [u8; 32],
//!     parent_id: [u8; 32],
//!     height: u64,
//!     timestamp: i64,
//!     body: Bytes,
//! }
//!
//! let block = Block {
//!     id: [1; 32],
//!     parent_id: [0; 32],
//!     height: 7,
//!     timestamp: 1_700_000_000,
//!     body: Bytes::from_static(b"transactions"),
//! };
//!
//! let mut builder = zap::wire::Builder::new();
//! let bytes = Bytes::copy_from_slice(block.encode(&mut builder)?);
//!
//! // Borrowed view: validated once, then O(1) reads in place.
//! let view = Block::view(&bytes)?;
//! assert_eq!(view.height(), 7);
//! assert_eq!(view.body(), b"transactions");
//!
//! // Owned decode: `body` is a slice of `bytes`, not a copy.
//! let decoded = Block::decode(bytes.clone())?;
//! assert_eq!(decoded, block);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc(hidden)]
pub mod codegen;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod ids;
mod message;
pub mod metadata;
mod payload;
pub mod proto;
#[cfg(feature = "runtime")]
mod rt;
mod status;
pub mod wire;

pub use codegen::{ListIter, ListView, MAX_DEPTH};
pub use error::{DecodeError, DecodeErrorKind, EncodeError};
pub use message::{Message, Owned, Text};
pub use metadata::Metadata;
pub use payload::Payload;
pub use status::{Code, Status};

/// The gRPC fallback: serve routers as gRPC, call gRPC servers.
#[cfg(feature = "grpc")]
pub use rt::grpc;
#[cfg(feature = "runtime")]
pub use rt::{
    AnyListener, BoxError, BoxStream, CallChannel, CallResponse, CallSender, Channel,
    ChannelBuilder, DuplicateRoute, IntoRequest, Method, NamedService, RawCall, Request,
    RequestStream, Response, Router, ServeError, Server, ServerCall, ServerStats, Streaming,
};
pub use zap_derive::{Message, service};
/// Transport: URLs, TLS configuration, listeners and limits.
#[cfg(feature = "runtime")]
pub use zap_transport as transport;

/// Includes the code `zap-build` generated for `package` in a build
/// script: `zap::include_proto!("vm")` includes `$OUT_DIR/vm.rs`.
///
/// Packages that refer to each other must be included in modules that
/// mirror their names (`a.b` in `mod a { mod b { .. } }`), since generated
/// code reaches other packages by relative paths.
#[macro_export]
macro_rules! include_proto {
    ($package:literal) => {
        ::core::include!(::core::concat!(
            ::core::env!("OUT_DIR"),
            "/",
            $package,
            ".rs"
        ));
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

// Lets the derive's generated `::zap::` paths resolve inside this crate's
// own tests.
#[allow(unused_extern_crates)]
extern crate self as zap;
