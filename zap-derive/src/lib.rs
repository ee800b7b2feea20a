//! Macros for zap. Use them through the `zap` crate
//! (`#[derive(zap::Message)]`, `#[zap::service]`), which documents the
//! generated API.
//!
//! Each macro parses its input into the codegen model shared with
//! `zap-build` (crate `zap-codegen`), collecting every error with its span
//! instead of stopping at the first ([`ctxt`]), and hands the model to the
//! shared generator. Generated code reaches the runtime only through
//! `::zap::codegen`.

#![forbid(unsafe_code)]

mod ctxt;
mod model;
mod service;

use proc_macro::TokenStream;

/// Derives `zap::Message` for a struct with named fields; see the `zap`
/// crate docs.
#[proc_macro_derive(Message, attributes(zap))]
pub fn derive_message(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    model::parse_message(&input)
        .map(|m| zap_codegen::message_impl(&m))
        .unwrap_or_else(ctxt::to_compile_errors)
        .into()
}

/// Turns a trait of async methods into a zap service: the trait (with
/// `Send` futures), a `{Name}Server<T>` adapter, a `{Name}Client` and the
/// method paths; see the `zap` crate docs.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::ItemTrait);
    service::parse(args.into(), &item)
        .map(|s| zap_codegen::service(&s, zap_codegen::ServiceParts::default()))
        .unwrap_or_else(ctxt::to_compile_errors)
        .into()
}
