//! Code generation from the model.

use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::model::Message;

/// `impl Message`, the view type and its accessors.
pub(crate) fn message(m: &Message<'_>) -> TokenStream {
    let name = m.ident;
    let vis = m.vis;
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
            let ty = f.ty;
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
                let ty = f.ty;
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
            let ty = f.ty;
            quote_spanned!(ty.span()=> <#ty as ::zap::codegen::Field>::View<'a>)
        })
        .collect();

    let mut consts = TokenStream::new();
    let fixed;
    if m.explicit {
        let mut max = quote!(0usize);
        for ((f, off), ft) in m.fields.iter().zip(&offs).zip(&field_trait) {
            let n = f.offset.unwrap_or(0);
            consts.extend(quote!(const #off: usize = #n;));
            max = quote!(#rt::max(#max, #off + #ft::WIDTH));
        }
        // Overlapping explicit slots are a compile-time error.
        for i in 0..m.fields.len() {
            for j in i + 1..m.fields.len() {
                let (oi, oj) = (&offs[i], &offs[j]);
                let (ti, tj) = (&field_trait[i], &field_trait[j]);
                let msg = format!(
                    "zap: fields `{}` and `{}` overlap",
                    m.fields[i].ident, m.fields[j].ident
                );
                let span = m.fields[j].ident.span();
                consts.extend(quote_spanned!(span=>
                    const _: () = ::core::assert!(
                        #oi + #ti::WIDTH <= #oj || #oj + #tj::WIDTH <= #oi,
                        #msg
                    );
                ));
            }
        }
        fixed = max;
    } else {
        let mut prev = quote!(#rt::SIZE_WORD);
        for (off, ft) in offs.iter().zip(&field_trait) {
            consts.extend(quote!(const #off: usize = #rt::align_up(#prev, #ft::ALIGN);));
            prev = quote!(#off + #ft::WIDTH);
        }
        fixed = prev;
    }
    let size_word = !m.explicit;

    let idents: Vec<_> = m.fields.iter().map(|f| f.ident).collect();
    let field_vis: Vec<_> = m.fields.iter().map(|f| f.vis).collect();
    let paths: Vec<String> = idents
        .iter()
        .map(|i| format!("{}.{}", name, i.to_string().trim_start_matches("r#")))
        .collect();
    let names: Vec<String> = idents
        .iter()
        .map(|i| i.to_string().trim_start_matches("r#").to_owned())
        .collect();
    let view_doc = format!("Borrowed view of a validated [`{name}`]: accessors read in place.");
    let accessor_docs: Vec<String> = names.iter().map(|n| format!("Reads `{n}`.")).collect();

    quote! {
        #[doc = #view_doc]
        #[derive(Clone, Copy)]
        #vis struct #view<'a> {
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
                    0usize #( + #extra_len(&self.#idents) )*
                }
            }

            #[automatically_derived]
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

            ::zap::__message_impls!(#name, #view);
        };
    }
}
