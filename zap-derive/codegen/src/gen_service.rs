//! Service code: the trait, the server adapter, the typed client and the
//! method path constants.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use crate::model::{Kind, Method, Service};
use crate::names::{screaming_snake_case, snake_case, unraw};

/// Which parts of a service to generate.
#[derive(Clone, Copy, Debug)]
pub struct ServiceParts {
    /// The `{Name}Server<T>` adapter.
    pub server: bool,
    /// The `{Name}Client`.
    pub client: bool,
}

impl Default for ServiceParts {
    fn default() -> Self {
        ServiceParts {
            server: true,
            client: true,
        }
    }
}

/// Everything for one service: the trait (always), the method constants
/// (always), and the server and client as asked.
pub fn service(s: &Service, parts: ServiceParts) -> TokenStream {
    let mut out = trait_def(s);
    out.extend(method_consts(s));
    if parts.server {
        out.extend(server(s));
    }
    if parts.client {
        out.extend(client(s));
    }
    out
}

/// `attrs`, with a doc line first when they have none.
fn docs_or(attrs: &[TokenStream], doc: &str) -> Vec<TokenStream> {
    let has_doc = attrs.iter().any(|a| a.to_string().contains("doc"));
    let mut out = Vec::with_capacity(attrs.len() + 1);
    if !has_doc {
        out.push(quote!(#[doc = #doc]));
    }
    out.extend(attrs.iter().cloned());
    out
}

fn path(s: &Service, m: &Method) -> String {
    format!("/{}/{}", s.full_name(), m.name)
}

/// `Request<A>` or `Request<Streaming<A>>`.
fn request_ty(m: &Method) -> TokenStream {
    let input = &m.input;
    if m.kind.client_streams() {
        quote!(::zap::codegen::Request<::zap::codegen::Streaming<#input>>)
    } else {
        quote!(::zap::codegen::Request<#input>)
    }
}

/// `Response<B>` or `Response<BoxStream<B>>` (server side).
fn response_ty(m: &Method) -> TokenStream {
    let output = &m.output;
    if m.kind.server_streams() {
        quote!(::zap::codegen::Response<::zap::codegen::BoxStream<#output>>)
    } else {
        quote!(::zap::codegen::Response<#output>)
    }
}

fn trait_def(s: &Service) -> TokenStream {
    let (name, vis) = (&s.ident, &s.vis);
    let attrs = docs_or(&s.attrs, &format!(" The `{}` service.", s.full_name()));
    let methods = s.methods.iter().map(|m| {
        let ident = &m.ident;
        let attrs = docs_or(&m.attrs, &format!(" Handles `{}`.", path(s, m)));
        let req = request_ty(m);
        let resp = response_ty(m);
        quote! {
            #(#attrs)*
            fn #ident(
                &self,
                request: #req,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<#resp, ::zap::codegen::Status>,
            > + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #name: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

fn consts_module(s: &Service) -> syn::Ident {
    format_ident!("{}_methods", snake_case(&unraw(&s.ident)))
}

fn method_const(m: &Method) -> syn::Ident {
    format_ident!("{}", screaming_snake_case(&unraw(&m.ident)))
}

fn method_consts(s: &Service) -> TokenStream {
    let vis = &s.vis;
    let module = consts_module(s);
    let doc = format!(" Method paths of `{}`.", s.full_name());
    let consts = s.methods.iter().map(|m| {
        let c = method_const(m);
        let p = path(s, m);
        let doc = format!(" `{p}`");
        quote!(#[doc = #doc] pub const #c: &str = #p;)
    });
    let protobuf = protobuf_table(s);
    quote! {
        #[doc = #doc]
        #vis mod #module {
            #(#consts)*
        }
        #protobuf
    }
}

/// `{service}_protobuf()`: the protobuf table of the service.
fn protobuf_fn(s: &Service) -> syn::Ident {
    format_ident!("{}_protobuf", snake_case(&unraw(&s.ident)))
}

/// Whether every method has its prost twins (the gRPC fallback).
fn has_proto(s: &Service) -> bool {
    !s.methods.is_empty() && s.methods.iter().all(|m| m.proto.is_some())
}

/// `{service}_protobuf()`: the protobuf form of each method.
fn protobuf_table(s: &Service) -> TokenStream {
    if !has_proto(s) {
        return TokenStream::new();
    }
    let (vis, f, module) = (&s.vis, protobuf_fn(s), consts_module(s));
    let entries = s.methods.iter().filter_map(|m| {
        let (pa, pb) = m.proto.as_ref()?;
        let (a, b) = (&m.input, &m.output);
        let c = method_const(m);
        Some(quote! {
            .with(#module::#c, ::zap::codegen::grpc::ProtoMethod::new::<#a, #pa, #b, #pb>())
        })
    });
    let doc = format!(
        " The protobuf form of every method of `{}`, for the gRPC fallback.",
        s.full_name()
    );
    quote! {
        #[doc = #doc]
        #vis fn #f() -> ::zap::codegen::grpc::Protobuf {
            ::zap::codegen::grpc::Protobuf::new()
                #(#entries)*
        }
    }
}

fn server(s: &Service) -> TokenStream {
    let (name, vis) = (&s.ident, &s.vis);
    let server = format_ident!("{}Server", unraw(name));
    let full = s.full_name();
    let module = consts_module(s);
    let doc = format!(
        " Serves a [`{}`] implementation: add it to a `zap::Router` with \
         `add_service`.",
        unraw(name)
    );
    let paths: Vec<_> = s
        .methods
        .iter()
        .map(|m| {
            let c = method_const(m);
            quote!(#module::#c)
        })
        .collect();
    let routes = s.methods.iter().zip(&paths).map(|(m, p)| {
        let ident = &m.ident;
        let route = match m.kind {
            Kind::Unary => quote!(route_unary),
            Kind::ServerStreaming => quote!(route_server_streaming),
            Kind::ClientStreaming => quote!(route_client_streaming),
            Kind::Streaming => quote!(route_streaming),
        };
        quote! {
            let svc = ::core::clone::Clone::clone(&self.inner);
            let router = ::zap::codegen::#route(router, #p, move |request| {
                let svc = ::core::clone::Clone::clone(&svc);
                async move { <T as #name>::#ident(&*svc, request).await }
            });
        }
    });
    let protobuf = if has_proto(s) {
        let f = protobuf_fn(s);
        quote!(let router = router.with_protobuf(&#f());)
    } else {
        TokenStream::new()
    };
    let routes = quote! {
        #(#routes)*
        #protobuf
        router
    };
    quote! {
        #[doc = #doc]
        #vis struct #server<T> {
            inner: ::std::sync::Arc<T>,
        }

        impl<T: #name> #server<T> {
            /// Serves `inner`.
            pub fn new(inner: T) -> Self {
                Self::from_arc(::std::sync::Arc::new(inner))
            }

            /// Serves an implementation shared with other code.
            pub fn from_arc(inner: ::std::sync::Arc<T>) -> Self {
                Self { inner }
            }
        }

        #[automatically_derived]
        impl<T> ::core::clone::Clone for #server<T> {
            fn clone(&self) -> Self {
                Self {
                    inner: ::core::clone::Clone::clone(&self.inner),
                }
            }
        }

        #[automatically_derived]
        impl<T> ::core::fmt::Debug for #server<T> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.write_str(::core::stringify!(#server))
            }
        }

        #[automatically_derived]
        impl<T: #name> ::zap::codegen::NamedService for #server<T> {
            const NAME: &'static str = #full;
            const METHODS: &'static [&'static str] = &[#(#paths),*];

            #[allow(clippy::let_and_return)]
            fn add_routes(self, router: ::zap::codegen::Router) -> ::zap::codegen::Router {
                #routes
            }
        }
    }
}

fn client(s: &Service) -> TokenStream {
    let (name, vis) = (&s.ident, &s.vis);
    let client = format_ident!("{}Client", unraw(name));
    let full = s.full_name();
    let module = consts_module(s);
    let doc = format!(
        " A typed client of `{full}` over a `zap::Channel` (cheap to clone; \
         calls share the channel's connection)."
    );
    let methods = s.methods.iter().map(|m| {
        let ident = &m.ident;
        let attrs = docs_or(&m.attrs, &format!(" Calls `{}`.", path(s, m)));
        let (input, output) = (&m.input, &m.output);
        let c = method_const(m);
        let p = quote!(#module::#c);
        let call = match m.kind {
            Kind::Unary => quote!(call_unary),
            Kind::ServerStreaming => quote!(call_server_streaming),
            Kind::ClientStreaming => quote!(call_client_streaming),
            Kind::Streaming => quote!(call_streaming),
        };
        let response = if m.kind.server_streams() {
            quote!(::zap::codegen::Streaming<#output>)
        } else {
            quote!(#output)
        };
        // A streaming request is any `Stream` of messages.
        let (generics, request, bounds) = if m.kind.client_streams() {
            (
                quote!(<ZapRequestStream>),
                quote!(ZapRequestStream),
                quote! {
                    where
                        ZapRequestStream: ::zap::codegen::Stream<Item = #input>
                            + ::core::marker::Send
                            + 'static,
                },
            )
        } else {
            (TokenStream::new(), quote!(#input), TokenStream::new())
        };
        quote! {
            #(#attrs)*
            pub async fn #ident #generics(
                &self,
                request: impl ::zap::codegen::IntoRequest<#request>,
            ) -> ::core::result::Result<::zap::codegen::Response<#response>, ::zap::codegen::Status>
            #bounds
            {
                ::zap::codegen::#call(
                    &self.channel,
                    #p,
                    ::zap::codegen::IntoRequest::into_request(request),
                )
                .await
            }
        }
    });
    let service_impl = client_service_impl(s, &client);
    let protobuf_fn = protobuf_fn(s);
    let grpc = if has_proto(s) {
        quote! {
            impl #client<::zap::codegen::grpc::GrpcChannel> {
                /// A client of a gRPC server (standard protobuf messages)
                /// over a tonic channel.
                pub fn grpc(channel: ::zap::codegen::grpc::tonic::transport::Channel) -> Self {
                    Self::new(::zap::codegen::grpc::GrpcChannel::protobuf(channel, #protobuf_fn()))
                }
            }
        }
    } else {
        TokenStream::new()
    };
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client<C = ::zap::codegen::Channel> {
            channel: C,
        }

        impl #client {
            /// The service name, `package.Service`.
            pub const SERVICE_NAME: &'static str = #full;
        }

        impl<C: ::zap::codegen::CallChannel> #client<C> {
            /// A client whose calls go over `channel`: a `zap::Channel`, or
            /// a `zap::grpc::GrpcChannel` to a gRPC server.
            pub fn new(channel: C) -> Self {
                Self { channel }
            }

            /// The channel calls go over.
            pub fn channel(&self) -> &C {
                &self.channel
            }

            #(#methods)*
        }

        #grpc
        #service_impl
    }
}

/// The client is itself an implementation of the service: each method
/// forwards the call (a proxy serves one with `{Name}Server::new(client)`).
fn client_service_impl(s: &Service, client: &syn::Ident) -> TokenStream {
    let name = &s.ident;
    let module = consts_module(s);
    let methods = s.methods.iter().map(|m| {
        let ident = &m.ident;
        let req = request_ty(m);
        let resp = response_ty(m);
        let c = method_const(m);
        let p = quote!(#module::#c);
        let body = match m.kind {
            Kind::Unary => quote! {
                ::zap::codegen::call_unary(&self.channel, #p, request)
            },
            Kind::ServerStreaming => quote! {
                async move {
                    ::core::result::Result::map(
                        ::zap::codegen::call_server_streaming(&self.channel, #p, request).await,
                        ::zap::codegen::box_responses,
                    )
                }
            },
            Kind::ClientStreaming => quote! {
                ::zap::codegen::forward_client_streaming(&self.channel, #p, request)
            },
            Kind::Streaming => quote! {
                ::zap::codegen::forward_streaming(&self.channel, #p, request)
            },
        };
        quote! {
            #[allow(clippy::manual_async_fn)]
            fn #ident(
                &self,
                request: #req,
            ) -> impl ::core::future::Future<
                Output = ::core::result::Result<#resp, ::zap::codegen::Status>,
            > + ::core::marker::Send {
                #body
            }
        }
    });
    quote! {
        #[automatically_derived]
        impl<C: ::zap::codegen::CallChannel> #name for #client<C> {
            #(#methods)*
        }
    }
}

/// Method names the client type uses for itself: a method with one of
/// these names gets a trailing `_` (in the trait and the client alike).
pub const RESERVED_METHOD_NAMES: &[&str] = &["new", "channel"];
