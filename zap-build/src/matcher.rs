//! Proto path matchers (`"."`, `".pkg"`, `".pkg.Msg"`, `".pkg.Msg.field"`).

/// Whether `matcher` selects `path` (a fully qualified proto name with a
/// leading dot): `"."` selects everything; otherwise the path must equal
/// the matcher or continue it after a dot.
pub(crate) fn matches(matcher: &str, path: &str) -> bool {
    if matcher == "." {
        return true;
    }
    let m = if matcher.starts_with('.') {
        matcher.to_owned()
    } else {
        format!(".{matcher}")
    };
    path == m
        || path
            .strip_prefix(m.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn matchers() {
        assert!(matches(".", ".a.B"));
        assert!(matches(".a", ".a.B"));
        assert!(matches(".a.B", ".a.B"));
        assert!(matches(".a.B", ".a.B.field"));
        assert!(matches("a.B", ".a.B"));
        assert!(!matches(".a.B", ".a.Bc"));
        assert!(!matches(".a", ".ab.C"));
    }
}
