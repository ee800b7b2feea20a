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

/// Turns a trait of async methods into a zap service.
///
/// `#[zap::service(package = "pkg")]` (optionally `name = "Service"`, the
/// trait's name by default) on a trait whose methods each read
/// `async fn name(&self, request: Request<A>) -> Result<Response<B>, Status>`.
/// `Request<Streaming<A>>` makes the client stream, `Response<BoxStream<B>>`
/// the server. The path is `/pkg.Service/Name` with the method name in
/// `PascalCase`, or `#[zap(name = "..")]` on the method.
///
/// Generates the trait itself (methods returning `Send` futures, so
/// implementations write `async fn`), `{Trait}Server<T>` (a `NamedService`
/// for `Router::add_service`), `{Trait}Client` over a `Channel`, and a
/// module `{trait}_methods` of path constants. Bad signatures are compile
/// errors at their span, all reported together.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::ItemTrait);
    service::parse(args.into(), &item)
        .map(|s| zap_codegen::service(&s, zap_codegen::ServiceParts::default()))
        .unwrap_or_else(ctxt::to_compile_errors)
        .into()
}
