//! The code generator of zap-rs, shared by its two front ends.
//!
//! `#[derive(zap::Message)]` and `#[zap::service]` (crate `zap-derive`)
//! parse Rust items; `zap-build` parses `.proto` files. Both fill the same
//! [`model`] — messages with fields and a layout, enums, services with
//! methods and their streaming kinds — and hand it to the same generator
//! ([`message`], [`enumeration`], [`service`]). So a message or a service
//! has one representation, whichever door it came in by.
//!
//! Generated code reaches the runtime only through the hidden
//! `::zap::codegen` module and spells every other path absolutely
//! (`::core::result::Result`, never `Result`), so user names such as a
//! message called `Result` or a method called `clone` cannot capture it.

#![forbid(unsafe_code)]

mod gen_message;
mod gen_service;
pub mod model;
pub mod names;

pub use gen_message::{enumeration, message, message_impl};
pub use gen_service::{RESERVED_METHOD_NAMES, ServiceParts, service};
