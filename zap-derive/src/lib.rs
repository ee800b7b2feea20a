//! Derive macros for zap. Use them through the `zap` crate
//! (`#[derive(zap::Message)]`), which documents the generated API.
//!
//! The macros follow three steps: parse the input into a small model
//! ([`model`]), collecting every error with its span instead of stopping at
//! the first ([`ctxt`]); then generate code from the model ([`expand`]).
//! Generated code reaches the runtime only through `::zap::codegen` and is
//! wrapped in `const _: () = { .. };` so it adds no names to the caller's
//! scope besides the view type.

#![forbid(unsafe_code)]

mod ctxt;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Derives `zap::Message` for a struct with named fields; see the `zap`
/// crate docs.
#[proc_macro_derive(Message, attributes(zap))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    model::Message::parse(&input)
        .map(|m| expand::message(&m))
        .unwrap_or_else(ctxt::to_compile_errors)
        .into()
}
