//! Collects errors so that one expansion reports all of them at once.

use proc_macro2::TokenStream;
use std::fmt::Display;

/// Errors found so far while parsing one input.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// Records an error at the span of `tokens`.
    pub(crate) fn error_spanned_by<T: quote::ToTokens, M: Display>(&mut self, tokens: T, msg: M) {
        self.errors.push(syn::Error::new_spanned(tokens, msg));
    }

    /// Records a `syn` error as it is.
    pub(crate) fn syn_error(&mut self, err: syn::Error) {
        self.errors.push(err);
    }

    /// `Ok(value)` if nothing was recorded, else every error.
    pub(crate) fn check<T>(self, value: T) -> Result<T, Vec<syn::Error>> {
        if self.errors.is_empty() {
            Ok(value)
        } else {
            Err(self.errors)
        }
    }
}

/// Turns errors into `compile_error!` invocations, one per error.
pub(crate) fn to_compile_errors(errors: Vec<syn::Error>) -> TokenStream {
    errors.iter().map(syn::Error::to_compile_error).collect()
}
