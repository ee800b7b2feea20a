//! What the generator consumes: messages, enums and services, already
//! checked by their front end.

use proc_macro2::TokenStream;

/// A message type.
pub struct Message {
    /// The type's name.
    pub ident: syn::Ident,
    /// Visibility of the type and its view.
    pub vis: syn::Visibility,
    /// Fields, in declaration order.
    pub fields: Vec<Field>,
    /// How fields are placed in the fixed section.
    pub layout: Layout,
    /// Attributes for the generated struct (docs, derives); `zap-build`
    /// only: the derive does not emit the struct.
    pub attrs: Vec<TokenStream>,
}

/// How a message's fields are placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// A size word, then fields packed in declaration order, each aligned
    /// to its type's alignment. The derive's default.
    Sequential,
    /// Every field at its explicit `offset`, no size word: an existing Go
    /// schema byte for byte.
    Explicit,
    /// A size word, then field number `n` at offset `8 * n`: the layout
    /// depends only on field numbers, so fields may be added with any new
    /// number (`.proto` messages, `#[zap(number = n)]`).
    Numbered,
}

/// One field.
pub struct Field {
    /// The Rust name.
    pub ident: syn::Ident,
    /// Visibility of the struct field and of the view's accessor.
    pub vis: syn::Visibility,
    /// The Rust type.
    pub ty: syn::Type,
    /// Explicit byte offset ([`Layout::Explicit`]).
    pub offset: Option<usize>,
    /// Field number ([`Layout::Numbered`]).
    pub number: Option<u32>,
    /// Attributes for the generated struct field (`zap-build` only).
    pub attrs: Vec<TokenStream>,
}

/// An open enum: a newtype over `i32` with a constant per known value, so
/// values a newer peer sends survive.
pub struct Enum {
    /// The type's name.
    pub ident: syn::Ident,
    /// Visibility.
    pub vis: syn::Visibility,
    /// Known values.
    pub variants: Vec<Variant>,
    /// Attributes for the generated type.
    pub attrs: Vec<TokenStream>,
}

/// A known enum value.
pub struct Variant {
    /// The constant's name.
    pub ident: syn::Ident,
    /// The name in the schema (what `as_str_name` returns).
    pub name: String,
    /// The value.
    pub value: i32,
    /// Attributes (docs) for the constant.
    pub attrs: Vec<TokenStream>,
}

/// A service.
pub struct Service {
    /// The trait's name; the server and client types are named after it.
    pub ident: syn::Ident,
    /// Visibility of the generated items.
    pub vis: syn::Visibility,
    /// Package, `""` for none.
    pub package: String,
    /// The service name in method paths.
    pub name: String,
    /// Methods, in declaration order.
    pub methods: Vec<Method>,
    /// Attributes (docs) for the trait.
    pub attrs: Vec<TokenStream>,
}

impl Service {
    /// `package.Service`.
    pub fn full_name(&self) -> String {
        if self.package.is_empty() {
            self.name.clone()
        } else {
            format!("{}.{}", self.package, self.name)
        }
    }
}

/// One method of a service.
pub struct Method {
    /// The Rust name (trait and client method).
    pub ident: syn::Ident,
    /// The name in the method path, `/package.Service/Name`.
    pub name: String,
    /// Which sides stream.
    pub kind: Kind,
    /// The request message type (of each message, for streams).
    pub input: syn::Type,
    /// The response message type (of each message, for streams).
    pub output: syn::Type,
    /// The prost twins of `input` and `output` (gRPC fallback), as paths
    /// from the service's module: `zap-build` with `grpc` sets them.
    pub proto: Option<(syn::Type, syn::Type)>,
    /// Attributes (docs) for the trait method.
    pub attrs: Vec<TokenStream>,
}

/// Which sides of a call stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One request, one response.
    Unary,
    /// One request, a stream of responses.
    ServerStreaming,
    /// A stream of requests, one response.
    ClientStreaming,
    /// Streams both ways.
    Streaming,
}

impl Kind {
    /// The client sends a stream.
    pub fn client_streams(self) -> bool {
        matches!(self, Kind::ClientStreaming | Kind::Streaming)
    }

    /// The server sends a stream.
    pub fn server_streams(self) -> bool {
        matches!(self, Kind::ServerStreaming | Kind::Streaming)
    }
}
