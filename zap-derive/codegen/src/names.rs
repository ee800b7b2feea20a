//! Name conversions shared by the front ends.

/// `SayHello` / `sayHello` / `say_hello` → `say_hello`.
pub fn snake_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    let chars: Vec<char> = s.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            let boundary = match prev {
                None | Some('_') => false,
                Some(p) if p.is_lowercase() || p.is_ascii_digit() => true,
                // `HTTPServer` → `http_server`: the last capital of a run
                // starts a new word.
                Some(_) => next.is_some_and(char::is_lowercase),
            };
            if boundary {
                out.push('_');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `say_hello` → `SayHello`; names already in camel case keep their
/// capitals.
pub fn pascal_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut up = true;
    for c in s.chars() {
        if c == '_' {
            up = true;
        } else if up {
            out.extend(c.to_uppercase());
            up = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `say_hello` → `SAY_HELLO`.
pub fn screaming_snake_case(s: &str) -> String {
    snake_case(s).to_uppercase()
}

/// Rust keywords that a raw identifier (`r#type`) can spell.
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "do", "dyn",
    "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let",
    "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref", "return",
    "static", "struct", "trait", "true", "try", "type", "typeof", "unsafe", "unsized", "use",
    "virtual", "where", "while", "yield",
];

/// Keywords that cannot be raw identifiers: they get a trailing `_`.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate", "_"];

/// An identifier for `name`, escaping keywords (`type` → `r#type`,
/// `self` → `self_`).
pub fn ident(name: &str) -> syn::Ident {
    let span = proc_macro2::Span::call_site();
    if NOT_RAW.contains(&name) {
        syn::Ident::new(&format!("{name}_"), span)
    } else if KEYWORDS.contains(&name) {
        syn::Ident::new_raw(name, span)
    } else {
        syn::Ident::new(name, span)
    }
}

/// The identifier without a raw prefix.
pub fn unraw(ident: &syn::Ident) -> String {
    let s = ident.to_string();
    s.strip_prefix("r#").map(str::to_owned).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(snake_case("SayHello"), "say_hello");
        assert_eq!(snake_case("sayHello"), "say_hello");
        assert_eq!(snake_case("say_hello"), "say_hello");
        assert_eq!(snake_case("GetBlockIDAtHeight"), "get_block_id_at_height");
        assert_eq!(snake_case("HTTPServer"), "http_server");
        assert_eq!(pascal_case("say_hello"), "SayHello");
        assert_eq!(pascal_case("GetBlock"), "GetBlock");
        assert_eq!(screaming_snake_case("BatchSign"), "BATCH_SIGN");
        assert_eq!(ident("type").to_string(), "r#type");
        assert_eq!(ident("Self").to_string(), "Self_");
        assert_eq!(ident("fine").to_string(), "fine");
    }
}
