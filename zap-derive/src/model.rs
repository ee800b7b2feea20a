//! The model of a message type, parsed from a `DeriveInput`.
//!
//! This is the shape the code generator consumes; `zap-build` will fill the
//! same model from `.proto` files.

use syn::spanned::Spanned;

use crate::ctxt::Ctxt;

/// A message: a struct with named fields.
pub(crate) struct Message<'a> {
    pub(crate) ident: &'a syn::Ident,
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) fields: Vec<Field<'a>>,
    /// Explicit `#[zap(offset = N)]` on every field: the Go-compatible
    /// layout without a size word.
    pub(crate) explicit: bool,
}

/// One field of a message.
pub(crate) struct Field<'a> {
    pub(crate) ident: &'a syn::Ident,
    /// The view's accessor gets the field's visibility.
    pub(crate) vis: &'a syn::Visibility,
    pub(crate) ty: &'a syn::Type,
    pub(crate) offset: Option<usize>,
    /// A `#[zap]` attribute was present but wrong (already reported).
    pub(crate) bad_attr: bool,
}

impl<'a> Message<'a> {
    /// Parses and checks `input`, reporting every problem at once.
    pub(crate) fn parse(input: &'a syn::DeriveInput) -> Result<Self, Vec<syn::Error>> {
        let mut cx = Ctxt::default();
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("zap")) {
            cx.error_spanned_by(
                attr,
                "`#[zap(...)]` is not supported on the type; put `#[zap(offset = N)]` on fields",
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
                        if let Some(field) = Field::parse(&mut cx, f) {
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
        let explicit = with_offset > 0;
        if explicit && with_offset != fields.len() {
            for f in fields.iter().filter(|f| f.offset.is_none() && !f.bad_attr) {
                cx.error_spanned_by(
                    f.ident,
                    "missing #[zap(offset = N)]: when one field has an explicit offset, all must",
                );
            }
        }
        cx.check(Message {
            ident: &input.ident,
            vis: &input.vis,
            fields,
            explicit,
        })
    }
}

impl<'a> Field<'a> {
    fn parse(cx: &mut Ctxt, f: &'a syn::Field) -> Option<Self> {
        let ident = f.ident.as_ref()?;
        let mut offset = None;
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
                } else {
                    Err(meta.error("unknown zap attribute; expected `offset = N`"))
                }
            });
            if let Err(e) = res {
                bad_attr = true;
                cx.syn_error(e);
            }
        }
        check_type(cx, &f.ty);
        Some(Field {
            ident,
            vis: &f.vis,
            ty: &f.ty,
            offset,
            bad_attr,
        })
    }
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
