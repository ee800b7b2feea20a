//! `#[zap::service]`: a trait of async methods parsed into the shared
//! codegen model (`zap_codegen::model::Service`).
//!
//! Each method must read
//! `async fn name(&self, request: Request<A>) -> Result<Response<B>, Status>`
//! where `A` may be `Streaming<A>` (the client streams) and `B` may be
//! `BoxStream<B>` (the server streams). The kinds are recognised by those
//! two type names; the generated code then checks the rest.

use proc_macro2::TokenStream;
use zap_codegen::model::{Kind, Method, Service};
use zap_codegen::names::{pascal_case, unraw};

use crate::ctxt::Ctxt;

/// `#[zap::service(package = "..", name = "..")]` arguments.
#[derive(Default)]
struct Args {
    package: Option<String>,
    name: Option<String>,
}

/// Parses the attribute arguments and the trait.
pub(crate) fn parse(args: TokenStream, item: &syn::ItemTrait) -> Result<Service, Vec<syn::Error>> {
    let mut cx = Ctxt::default();
    let mut a = Args::default();
    let parser = syn::meta::parser(|meta| {
        let slot = if meta.path.is_ident("package") {
            &mut a.package
        } else if meta.path.is_ident("name") {
            &mut a.name
        } else {
            return Err(
                meta.error("unknown argument; expected `package = \"..\"` or `name = \"..\"`")
            );
        };
        let lit: syn::LitStr = meta.value()?.parse()?;
        if slot.replace(lit.value()).is_some() {
            return Err(meta.error("duplicate argument"));
        }
        Ok(())
    });
    if let Err(e) = syn::parse::Parser::parse2(parser, args) {
        cx.syn_error(e);
    }
    let package = a.package.unwrap_or_default();
    if !package.split('.').all(is_name) && !package.is_empty() {
        cx.error_spanned_by(
            &item.ident,
            format!("`{package}` is not a package name (dot-separated identifiers)"),
        );
    }
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        cx.error_spanned_by(&item.generics, "zap services cannot be generic");
    }
    if let Some(u) = &item.unsafety {
        cx.error_spanned_by(u, "zap services cannot be unsafe traits");
    }
    if !item.supertraits.is_empty() {
        cx.error_spanned_by(
            &item.supertraits,
            "zap services get `Send + Sync + 'static` as supertraits; remove these",
        );
    }
    let mut methods = Vec::new();
    for it in &item.items {
        match it {
            syn::TraitItem::Fn(f) => {
                if let Some(m) = method(&mut cx, f) {
                    methods.push(m);
                }
            }
            other => cx.error_spanned_by(other, "zap services may contain only methods"),
        }
    }
    let mut seen = std::collections::HashMap::new();
    for m in &methods {
        if let Some(first) = seen.insert(m.name.clone(), m.ident.clone()) {
            cx.error_spanned_by(
                &m.ident,
                format!("method name `{}` is already used by `{first}`", m.name),
            );
        }
    }
    let name = a.name.unwrap_or_else(|| unraw(&item.ident));
    cx.check(Service {
        ident: item.ident.clone(),
        vis: item.vis.clone(),
        package,
        name,
        methods,
        attrs: item
            .attrs
            .iter()
            .map(quote::ToTokens::to_token_stream)
            .collect(),
    })
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

const SHAPE: &str =
    "expected `async fn name(&self, request: Request<A>) -> Result<Response<B>, Status>`";

fn method(cx: &mut Ctxt, f: &syn::TraitItemFn) -> Option<Method> {
    let sig = &f.sig;
    let mut ok = true;
    let mut fail = |cx: &mut Ctxt, tokens: &dyn quote::ToTokens, msg: &str| {
        cx.error_spanned_by(tokens.to_token_stream(), msg);
        ok = false;
    };
    if sig.asyncness.is_none() {
        fail(
            cx,
            &sig.fn_token,
            &format!("zap service methods must be `async`; {SHAPE}"),
        );
    }
    if let Some(b) = &f.default {
        fail(cx, b, "zap service methods cannot have a default body");
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        fail(cx, &sig.generics, "zap service methods cannot be generic");
    }
    if let Some(u) = &sig.unsafety {
        fail(cx, u, "zap service methods cannot be unsafe");
    }
    if let Some(v) = &sig.variadic {
        fail(cx, v, SHAPE);
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(syn::FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        Some(syn::FnArg::Receiver(r)) => fail(
            cx,
            r,
            "the receiver must be `&self` (handlers run concurrently)",
        ),
        _ => fail(cx, &sig.ident, &format!("missing `&self`; {SHAPE}")),
    }
    let request = match (inputs.next(), inputs.next()) {
        (Some(syn::FnArg::Typed(t)), None) => Some(&*t.ty),
        (None, _) => {
            fail(
                cx,
                &sig.ident,
                &format!("missing the request argument; {SHAPE}"),
            );
            None
        }
        (Some(_), Some(extra)) => {
            fail(cx, extra, &format!("one request argument only; {SHAPE}"));
            None
        }
        (Some(other), None) => {
            fail(cx, other, SHAPE);
            None
        }
    };
    let (input, client_streams) = match request.map(|t| wrapped(t, "Request")) {
        Some(Some(inner)) => match wrapped(inner, "Streaming") {
            Some(item) => (Some(item.clone()), true),
            None => (Some(inner.clone()), false),
        },
        Some(None) => {
            fail(
                cx,
                request.unwrap_or(&syn::Type::Verbatim(TokenStream::new())),
                "the argument must be `Request<A>` or `Request<Streaming<A>>`",
            );
            (None, false)
        }
        None => (None, false),
    };
    let (output, server_streams) = match &sig.output {
        syn::ReturnType::Type(_, ty) => match result_ok(ty).and_then(|t| wrapped(t, "Response")) {
            Some(inner) => match wrapped(inner, "BoxStream") {
                Some(item) => (Some(item.clone()), true),
                None => (Some(inner.clone()), false),
            },
            None => {
                fail(
                    cx,
                    ty,
                    "the return type must be `Result<Response<B>, Status>` or \
                     `Result<Response<BoxStream<B>>, Status>`",
                );
                (None, false)
            }
        },
        syn::ReturnType::Default => {
            fail(cx, sig, &format!("missing return type; {SHAPE}"));
            (None, false)
        }
    };
    let name = method_name(cx, f).unwrap_or_else(|| pascal_case(&unraw(&sig.ident)));
    let kind = match (client_streams, server_streams) {
        (false, false) => Kind::Unary,
        (false, true) => Kind::ServerStreaming,
        (true, false) => Kind::ClientStreaming,
        (true, true) => Kind::Streaming,
    };
    let (input, output) = (input?, output?);
    ok.then(|| Method {
        ident: sig.ident.clone(),
        name,
        kind,
        input,
        output,
        proto: None,
        attrs: f
            .attrs
            .iter()
            .filter(|a| !a.path().is_ident("zap"))
            .map(quote::ToTokens::to_token_stream)
            .collect(),
    })
}

/// `#[zap(name = "..")]` on a method: its name in the path.
fn method_name(cx: &mut Ctxt, f: &syn::TraitItemFn) -> Option<String> {
    let mut name = None;
    for attr in f.attrs.iter().filter(|a| a.path().is_ident("zap")) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                let lit: syn::LitStr = meta.value()?.parse()?;
                if !is_name(&lit.value()) {
                    return Err(syn::Error::new(lit.span(), "not a method name"));
                }
                name = Some(lit.value());
                Ok(())
            } else {
                Err(meta.error("unknown zap attribute; expected `name = \"..\"`"))
            }
        });
        if let Err(e) = res {
            cx.syn_error(e);
        }
    }
    name
}

/// `T` of `Wrapper<T>` when the type's last path segment is `wrapper`.
fn wrapped<'t>(ty: &'t syn::Type, wrapper: &str) -> Option<&'t syn::Type> {
    let syn::Type::Path(p) = ty else {
        return None;
    };
    let last = p.path.segments.last()?;
    if last.ident != wrapper {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|a| match a {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let t = types.next()?;
    types.next().is_none().then_some(t)
}

/// `T` of `Result<T, E>`.
fn result_ok(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(p) = ty else {
        return None;
    };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) if args.args.len() == 2 => Some(t),
        _ => None,
    }
}
