//! Message and enum code: the struct (for `zap-build`), `impl Message`,
//! the view type and its accessors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::{Enum, Layout, Message};
use crate::names::unraw;

/// The struct declaration and everything [`message_impl`] generates: what
/// `zap-build` emits for a `.proto` message.
pub fn message(m: &Message) -> TokenStream {
    let name = &m.ident;
    let vis = &m.vis;
    let attrs = &m.attrs;
    let fields = m.fields.iter().map(|f| {
        let (ident, vis, ty, attrs) = (&f.ident, &f.vis, &f.ty, &f.attrs);
        quote!(#(#attrs)* #vis #ident: #ty,)
    });
    let imp = message_impl(m);
    quote! {
        #(#attrs)*
        #vis struct #name {
            #(#fields)*
        }
        #imp
    }
}

/// `impl Message`, the view type and its accessors, for a struct that
/// exists already (what `#[derive(zap::Message)]` emits).
pub fn message_impl(m: &Message) -> TokenStream {
    let name = &m.ident;
    let vis = &m.vis;
    let view = format_ident!("{}View", name);
    let rt = quote!(::zap::codegen);

    // Offsets: `const` items, so the compiler computes the layout from each
    // field type's WIDTH/ALIGN and reports unsupported types at their span.
    let offs: Vec<_> = (0..m.fields.len())
        .map(|i| format_ident!("__ZAP_OFF_{}", i))
        .collect();
    let field_trait: Vec<_> = m
        .fields
        .iter()
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> <#ty as ::zap::codegen::Field>)
        })
        .collect();

    // Every use of a field's type is spanned at that type, so a type that
    // is not a `Field` gets its errors there (deduplicated), not at the
    // derive.
    let path = |method: &str| -> Vec<TokenStream> {
        let method = format_ident!("{}", method);
        m.fields
            .iter()
            .map(|f| {
                let ty = &f.ty;
                quote_spanned!(ty.span()=> <#ty as ::zap::codegen::Field>::#method)
            })
            .collect()
    };
    let (write_fixed, write_tail, write_child) =
        (path("write_fixed"), path("write_tail"), path("write_child"));
    let (validate, decode, adopt) = (path("validate"), path("decode"), path("adopt"));
    let (view_fn, extra_len) = (path("view"), path("extra_len"));
    let slices = path("SLICES");
    let view_ty: Vec<TokenStream> = m
        .fields
        .iter()
        .map(|f| {
            let ty = &f.ty;
            quote_spanned!(ty.span()=> <#ty as ::zap::codegen::Field>::View<'a>)
        })
        .collect();

    let mut consts = TokenStream::new();
    let fixed = match m.layout {
        Layout::Explicit | Layout::Numbered => {
            let mut max = match m.layout {
                Layout::Numbered => quote!(8usize),
                _ => quote!(0usize),
            };
            for ((f, off), ft) in m.fields.iter().zip(&offs).zip(&field_trait) {
                let n = match m.layout {
                    Layout::Numbered => 8 * f.number.unwrap_or(0) as usize,
                    _ => f.offset.unwrap_or(0),
                };
                consts.extend(quote!(const #off: usize = #n;));
                max = quote!(#rt::max(#max, #off + #ft::WIDTH));
            }
            // Overlapping slots are a compile-time error. Numbered slots
            // are in number order, so neighbours are enough.
            let pairs: Vec<(usize, usize)> = if m.layout == Layout::Numbered {
                let mut order: Vec<usize> = (0..m.fields.len()).collect();
                order.sort_by_key(|&i| m.fields[i].number);
                order.windows(2).map(|w| (w[0], w[1])).collect()
            } else {
                (0..m.fields.len())
                    .flat_map(|i| (i + 1..m.fields.len()).map(move |j| (i, j)))
                    .collect()
            };
            for (i, j) in pairs {
                let (oi, oj) = (&offs[i], &offs[j]);
                let (ti, tj) = (&field_trait[i], &field_trait[j]);
                let msg = format!(
                    "zap: fields `{}` and `{}` overlap",
                    unraw(&m.fields[i].ident),
                    unraw(&m.fields[j].ident)
                );
                let span = m.fields[j].ident.span();
                consts.extend(quote_spanned!(span=>
                    const _: () = ::core::assert!(
                        #oi + #ti::WIDTH <= #oj || #oj + #tj::WIDTH <= #oi,
                        #msg
                    );
                ));
            }
            // Numbered fields must stay clear of the size word.
            if m.layout == Layout::Numbered {
                quote!(#rt::align_up(#max, 8))
            } else {
                max
            }
        }
        Layout::Sequential => {
            let mut prev = quote!(#rt::SIZE_WORD);
            for (off, ft) in offs.iter().zip(&field_trait) {
                consts.extend(quote!(const #off: usize = #rt::align_up(#prev, #ft::ALIGN);));
                prev = quote!(#off + #ft::WIDTH);
            }
            prev
        }
    };
    let size_word = m.layout != Layout::Explicit;

    let idents: Vec<_> = m.fields.iter().map(|f| &f.ident).collect();
    let extra_sum = if idents.is_empty() {
        quote!(0usize)
    } else {
        quote!(#( #extra_len(&self.#idents) )+*)
    };
    let field_vis: Vec<_> = m.fields.iter().map(|f| &f.vis).collect();
    let paths: Vec<String> = idents
        .iter()
        .map(|i| format!("{}.{}", unraw(name), unraw(i)))
        .collect();
    let names: Vec<String> = idents.iter().map(|i| unraw(i)).collect();
    let view_doc = format!(
        " Borrowed view of a validated [`{}`]: accessors read in place.",
        unraw(name)
    );
    let accessor_docs: Vec<String> = names.iter().map(|n| format!(" Reads `{n}`.")).collect();

    quote! {
        #[doc = #view_doc]
        #[derive(::core::clone::Clone, ::core::marker::Copy)]
        #[allow(non_camel_case_types)]
        #vis struct #view<'a> {
            #[allow(dead_code)]
            obj: ::zap::codegen::Obj<'a>,
        }

        const _: () = {
            #consts
            const __ZAP_FIXED: usize = #fixed;

            #[automatically_derived]
            impl ::zap::codegen::Message for #name {
                type View<'a> = #view<'a>;
                const LAYOUT: #rt::Layout = #rt::Layout { fixed: __ZAP_FIXED, size_word: #size_word };

                #[inline]
                fn write_fields(&self, b: &mut #rt::Builder, start: usize) {
                    #( #write_fixed(&self.#idents, b, start + #offs); )*
                    #( #write_tail(&self.#idents, b, start + #offs); )*
                    #( #write_child(&self.#idents, b, start + #offs); )*
                }

                #[inline]
                fn validate_fields(
                    obj: &#rt::Obj<'_>,
                    cx: &mut #rt::Validator,
                ) -> ::core::result::Result<(), #rt::DecodeError> {
                    #( #validate(obj, #offs, cx).map_err(#rt::in_field(#paths))?; )*
                    ::core::result::Result::Ok(())
                }

                #[inline]
                fn decode_fields(obj: &#rt::Obj<'_>, src: &mut #rt::Src<'_>) -> Self {
                    Self { #( #idents: #decode(obj, #offs, src), )* }
                }

                #[inline]
                fn adopt_fields(&mut self, a: &mut #rt::Adopt) -> bool {
                    #( if #slices && #adopt(&mut self.#idents, a) {
                        return true;
                    } )*
                    false
                }

                #[inline]
                fn view_fields(obj: #rt::Obj<'_>) -> #view<'_> {
                    #view { obj }
                }

                #[inline]
                fn extra_len(&self) -> usize {
                    #extra_sum
                }
            }

            impl<'a> #view<'a> {
                #(
                    #[doc = #accessor_docs]
                    #[inline]
                    #field_vis fn #idents(&self) -> #view_ty {
                        #view_fn(&self.obj, #offs)
                    }
                )*
            }

            #[automatically_derived]
            impl ::core::fmt::Debug for #view<'_> {
                fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                    f.debug_struct(::core::stringify!(#view))
                        #( .field(#names, &#view_fn(&self.obj, #offs)) )*
                        .finish()
                }
            }

            ::zap::codegen::message_impls!(#name, #view);
        };
    }
}

/// An open enum: `struct Name(pub i32)` with a constant per known value.
pub fn enumeration(e: &Enum) -> TokenStream {
    let name = &e.ident;
    let vis = &e.vis;
    let attrs = &e.attrs;
    let consts = e.variants.iter().map(|v| {
        let (ident, value, attrs) = (&v.ident, v.value, &v.attrs);
        quote!(#(#attrs)* pub const #ident: Self = Self(#value);)
    });
    // A value listed twice (an alias) has one name: the first.
    let mut seen = std::collections::HashSet::new();
    let names: Vec<_> = e
        .variants
        .iter()
        .filter(|v| seen.insert(v.value))
        .map(|v| {
            let (value, name) = (v.value, &v.name);
            quote!(#value => ::core::option::Option::Some(#name),)
        })
        .collect();
    let from_names = e.variants.iter().map(|v| {
        let (ident, name) = (&v.ident, &v.name);
        quote!(#name => ::core::option::Option::Some(Self::#ident),)
    });
    quote! {
        #(#attrs)*
        #[derive(
            ::core::clone::Clone,
            ::core::marker::Copy,
            ::core::cmp::PartialEq,
            ::core::cmp::Eq,
            ::core::hash::Hash,
            ::core::cmp::PartialOrd,
            ::core::cmp::Ord,
            ::core::default::Default,
        )]
        #vis struct #name(pub i32);

        impl #name {
            #(#consts)*

            /// The value's name in the schema, if it is a known value.
            pub fn as_str_name(&self) -> ::core::option::Option<&'static str> {
                match self.0 {
                    #(#names)*
                    _ => ::core::option::Option::None,
                }
            }

            /// The value named `name` in the schema.
            pub fn from_str_name(name: &str) -> ::core::option::Option<Self> {
                match name {
                    #(#from_names)*
                    _ => ::core::option::Option::None,
                }
            }
        }

        #[automatically_derived]
        impl ::core::fmt::Debug for #name {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                match self.as_str_name() {
                    ::core::option::Option::Some(n) => f.write_str(n),
                    ::core::option::Option::None => ::core::fmt::Debug::fmt(&self.0, f),
                }
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<i32> for #name {
            fn from(v: i32) -> Self {
                Self(v)
            }
        }

        #[automatically_derived]
        impl ::core::convert::From<#name> for i32 {
            fn from(v: #name) -> i32 {
                v.0
            }
        }

        ::zap::codegen::enum_impls!(#name);
    }
}
