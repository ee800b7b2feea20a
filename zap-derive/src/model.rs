//! `#[derive(zap::Message)]`: a `DeriveInput` parsed into the shared
//! codegen model (`zap_codegen::model::Message`), which `zap-build` fills
//! from `.proto` files.

use syn::spanned::Spanned;
use zap_codegen::model::{Field, Layout, Message};

use crate::ctxt::Ctxt;

/// One field as parsed, before the layout is decided.
struct Parsed<'a> {
    f: &'a syn::Field,
    ident: &'a syn::Ident,
    offset: Option<usize>,
    number: Option<u32>,
    /// A `#[zap]` attribute was present but wrong (already reported).
    bad_attr: bool,
}

/// Parses and checks `input`, reporting every problem at once.
pub(crate) fn parse_message(input: &syn::DeriveInput) -> Result<Message, Vec<syn::Error>> {
    let mut cx = Ctxt::default();
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("zap")) {
        cx.error_spanned_by(
            attr,
            "`#[zap(...)]` is not supported on the type; put `#[zap(offset = N)]` or \
             `#[zap(number = N)]` on fields",
        );
    }
    if !input.generics.params.is_empty() {
        cx.error_spanned_by(&input.generics, "zap messages cannot be generic");
    }
    let mut fields = Vec::new();
    match &input.data {
        syn::Data::Struct(s) => match &s.fields {
            syn::Fields::Named(named) => {
                for f in &named.named {
                    if let Some(field) = parse_field(&mut cx, f) {
                        fields.push(field);
                    }
                }
            }
            other => cx.error_spanned_by(
                other,
                "zap messages need named fields (tuple and unit structs have no field names)",
            ),
        },
        syn::Data::Enum(e) => cx.error_spanned_by(
            e.enum_token,
            "#[derive(zap::Message)] supports structs only",
        ),
        syn::Data::Union(u) => cx.error_spanned_by(
            u.union_token,
            "#[derive(zap::Message)] supports structs only",
        ),
    }
    let with_offset = fields.iter().filter(|f| f.offset.is_some()).count();
    let with_number = fields.iter().filter(|f| f.number.is_some()).count();
    let layout = if with_offset > 0 {
        Layout::Explicit
    } else if with_number > 0 {
        Layout::Numbered
    } else {
        Layout::Sequential
    };
    if with_offset > 0 && with_number > 0 {
        cx.error_spanned_by(
            &input.ident,
            "use either `offset` or `number` on the fields of a message, not both",
        );
    } else {
        let (count, what) = match layout {
            Layout::Explicit => (with_offset, "offset"),
            Layout::Numbered => (with_number, "number"),
            Layout::Sequential => (0, ""),
        };
        if count > 0 && count != fields.len() {
            for f in fields
                .iter()
                .filter(|f| f.offset.is_none() && f.number.is_none() && !f.bad_attr)
            {
                cx.error_spanned_by(
                    f.ident,
                    format!(
                        "missing #[zap({what} = N)]: when one field has an explicit \
                         {what}, all must"
                    ),
                );
            }
        }
    }
    let mut numbers = std::collections::HashMap::new();
    for f in &fields {
        if let Some(n) = f.number
            && let Some(first) = numbers.insert(n, f.ident)
        {
            cx.error_spanned_by(
                f.ident,
                format!("field number {n} is already used by `{first}`"),
            );
        }
    }
    let fields = fields
        .into_iter()
        .map(|p| Field {
            ident: p.ident.clone(),
            vis: p.f.vis.clone(),
            ty: p.f.ty.clone(),
            offset: p.offset,
            number: p.number,
            attrs: Vec::new(),
        })
        .collect();
    cx.check(Message {
        ident: input.ident.clone(),
        vis: input.vis.clone(),
        fields,
        layout,
        attrs: Vec::new(),
    })
}

/// Maximum field number: the fixed section is `8 * (max + 1)` bytes.
const MAX_NUMBER: u32 = 4096;

fn parse_field<'a>(cx: &mut Ctxt, f: &'a syn::Field) -> Option<Parsed<'a>> {
    let ident = f.ident.as_ref()?;
    let mut offset = None;
    let mut number = None;
    let mut bad_attr = false;
    for attr in f.attrs.iter().filter(|a| a.path().is_ident("zap")) {
        let res = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("offset") {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let n = lit.base10_parse::<u32>()?;
                if offset.replace(n as usize).is_some() {
                    return Err(meta.error("duplicate `offset`"));
                }
                Ok(())
            } else if meta.path.is_ident("number") {
                let lit: syn::LitInt = meta.value()?.parse()?;
                let n = lit.base10_parse::<u32>()?;
                if n == 0 || n > MAX_NUMBER {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("field numbers go from 1 to {MAX_NUMBER}"),
                    ));
                }
                if number.replace(n).is_some() {
                    return Err(meta.error("duplicate `number`"));
                }
                Ok(())
            } else {
                Err(meta.error("unknown zap attribute; expected `offset = N` or `number = N`"))
            }
        });
        if let Err(e) = res {
            bad_attr = true;
            cx.syn_error(e);
        }
    }
    check_type(cx, &f.ty);
    Some(Parsed {
        f,
        ident,
        offset,
        number,
        bad_attr,
    })
}

/// Rejects type forms that can never be a field, with a specific message.
/// Named types are checked by the compiler through `zap::codegen::Field`,
/// whose error points at the field's type.
fn check_type(cx: &mut Ctxt, ty: &syn::Type) {
    let msg = match ty {
        syn::Type::Reference(_) => {
            "references cannot be message fields; use an owned type (Bytes, String, zap::Text)"
        }
        syn::Type::Slice(_) => "slices cannot be message fields; use Vec<T> or Bytes",
        syn::Type::Tuple(t) if t.elems.is_empty() => "`()` cannot be a message field",
        syn::Type::Tuple(_) => "tuples cannot be message fields; use a nested message",
        syn::Type::Ptr(_) => "raw pointers cannot be message fields",
        syn::Type::BareFn(_) => "function pointers cannot be message fields",
        syn::Type::TraitObject(_) | syn::Type::ImplTrait(_) => {
            "trait objects cannot be message fields"
        }
        syn::Type::Array(a) => match &*a.elem {
            syn::Type::Path(p) if p.path.is_ident("u8") => return,
            _ => "only byte arrays `[u8; N]` can be message fields; use Vec<T> for others",
        },
        syn::Type::Paren(p) => return check_type(cx, &p.elem),
        syn::Type::Group(g) => return check_type(cx, &g.elem),
        _ => return,
    };
    cx.syn_error(syn::Error::new(ty.span(), msg));
}
