//! URL parsing: every accepted form and every error kind.

use std::path::Path;

use zap_transport::{Scheme, Url, UrlError};

/// (input, scheme, host, port, path, display)
type ValidCase<'a> = (
    &'a str,
    Scheme,
    Option<&'a str>,
    Option<u16>,
    Option<&'a str>,
    &'a str,
);

#[test]
fn valid_urls() {
    let cases: &[ValidCase<'_>] = &[
        (
            "ZAP+QUIC://[::1]:4433",
            Scheme::Quic,
            Some("::1"),
            Some(4433),
            None,
            "zap+quic://[::1]:4433",
        ),
        (
            "zap://localhost:9000",
            Scheme::Tcp,
            Some("localhost"),
            Some(9000),
            None,
            "zap://localhost:9000",
        ),
        (
            "zaps://node-1.example.com:443",
            Scheme::Tls,
            Some("node-1.example.com"),
            Some(443),
            None,
            "zaps://node-1.example.com:443",
        ),
        (
            "zap://127.0.0.1:0",
            Scheme::Tcp,
            Some("127.0.0.1"),
            Some(0),
            None,
            "zap://127.0.0.1:0",
        ),
        (
            "zap://[::1]:9000",
            Scheme::Tcp,
            Some("::1"),
            Some(9000),
            None,
            "zap://[::1]:9000",
        ),
        (
            "zaps://[fe80::1:2]:65535",
            Scheme::Tls,
            Some("fe80::1:2"),
            Some(65535),
            None,
            "zaps://[fe80::1:2]:65535",
        ),
        (
            "zap+unix:///run/zap/node.sock",
            Scheme::Unix,
            None,
            None,
            Some("/run/zap/node.sock"),
            "zap+unix:///run/zap/node.sock",
        ),
        (
            "ZAPS://host:1",
            Scheme::Tls,
            Some("host"),
            Some(1),
            None,
            "zaps://host:1",
        ),
    ];
    for &(input, scheme, host, port, path, display) in cases {
        let url = Url::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(url.scheme(), scheme, "{input}");
        assert_eq!(url.host(), host, "{input}");
        assert_eq!(url.port(), port, "{input}");
        assert_eq!(url.path(), path.map(Path::new), "{input}");
        assert_eq!(url.to_string(), display, "{input}");
        // Display round-trips, and FromStr agrees with parse.
        assert_eq!(display.parse::<Url>().unwrap(), url, "{input}");
    }
}

#[test]
fn invalid_urls() {
    use UrlError::*;
    let cases: &[(&str, UrlError)] = &[
        ("localhost:9000", MissingScheme),
        ("zap:/host:1", MissingScheme),
        ("http://host:80", UnknownScheme("http".into())),
        ("grpc://host:80", UnknownScheme("grpc".into())),
        (
            "zap+fastwire://host:80",
            UnknownScheme("zap+fastwire".into()),
        ),
        ("zap+quic:///tmp/s", UnexpectedPath),
        ("zap://:9000", EmptyHost),
        ("zap://[]:9000", InvalidHost("".into())),
        ("zap://host", MissingPort),
        ("zap://host:", MissingPort),
        ("zap://[::1]", MissingPort),
        ("zap://host:http", InvalidPort("http".into())),
        ("zap://host:65536", InvalidPort("65536".into())),
        ("zap://host:+80", InvalidPort("+80".into())),
        ("zap://host:-1", InvalidPort("-1".into())),
        ("zap://::1:9000", InvalidHost("::1".into())),
        ("zap://[not-v6]:9000", InvalidHost("not-v6".into())),
        ("zap://[::1]x:9000", InvalidHost("[::1]x:9000".into())),
        ("zap://ho st:1", InvalidHost("ho st".into())),
        ("zap+unix://relative/path", RelativeUnixPath),
        ("zap+unix://", RelativeUnixPath),
        ("zap://host:1/path", UnexpectedPath),
        ("zap://host:1/", UnexpectedPath),
        ("zap://host:1?x=1", QueryOrFragment),
        ("zaps://host:1#frag", QueryOrFragment),
        ("zap+unix:///tmp/s?x", QueryOrFragment),
        ("zap://user@host:1", UserInfo),
        ("zaps://user:pw@host:1", UserInfo),
    ];
    for (input, expected) in cases {
        let err = Url::parse(input).expect_err(input);
        assert_eq!(&err, expected, "{input}");
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn unknown_scheme_message_lists_supported_schemes() {
    let msg = Url::parse("https://x:1").unwrap_err().to_string();
    assert!(msg.contains("https"), "{msg}");
    for scheme in ["zap://", "zaps://", "zap+unix://"] {
        assert!(msg.contains(scheme), "{msg}");
    }
}
