//! Endpoint URLs: `zap://host:port`, `zaps://host:port`, `zap+unix:///path`,
//! `zap+quic://host:port`.

use std::fmt;
use std::net::{Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The transport a [`Url`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `zap://host:port`: plain TCP. Never does TLS.
    Tcp,
    /// `zaps://host:port`: TLS 1.3 over TCP, ALPN `zap/1`.
    Tls,
    /// `zap+unix:///absolute/path`: a Unix domain stream socket.
    Unix,
    /// `zap+quic://host:port`: QUIC over UDP (TLS 1.3, ALPN `zap/1`), one
    /// stream per call. Parsed always; connecting and listening need the
    /// `quic` feature.
    Quic,
}

impl Scheme {
    /// The scheme as written in a URL, without `://`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "zap",
            Self::Tls => "zaps",
            Self::Unix => "zap+unix",
            Self::Quic => "zap+quic",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [Self::Tcp, Self::Tls, Self::Unix, Self::Quic]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed, validated zap endpoint address.
///
/// `Url` is deliberately much narrower than a general URL: there is no
/// userinfo, query, fragment or (for TCP/TLS) path, and no percent-decoding.
/// Its [`Display`](fmt::Display) output parses back to an equal `Url`.
///
/// ```
/// use zap_transport::{Scheme, Url};
///
/// let url: Url = "zaps://[::1]:9000".parse()?;
/// assert_eq!(url.scheme(), Scheme::Tls);
/// assert_eq!(url.host(), Some("::1"));
/// assert_eq!(url.port(), Some(9000));
/// assert_eq!(url.to_string(), "zaps://[::1]:9000");
/// # Ok::<(), zap_transport::UrlError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Url {
    scheme: Scheme,
    addr: Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Addr {
    Inet { host: String, port: u16 },
    Unix(PathBuf),
}

impl Url {
    /// Parses `zap://host:port`, `zaps://host:port` or `zap+unix:///abs/path`.
    ///
    /// IPv6 literals are written in brackets (`zap://[::1]:9000`). Port 0 is
    /// accepted (useful for [`Listener::bind`](crate::Listener::bind)). The
    /// scheme is matched case-insensitively; host and path are kept as given.
    pub fn parse(s: &str) -> Result<Self, UrlError> {
        let (name, rest) = s.split_once("://").ok_or(UrlError::MissingScheme)?;
        let scheme =
            Scheme::from_name(name).ok_or_else(|| UrlError::UnknownScheme(name.to_owned()))?;
        if rest.contains(['?', '#']) {
            return Err(UrlError::QueryOrFragment);
        }
        let addr = match scheme {
            Scheme::Unix => {
                if !rest.starts_with('/') {
                    return Err(UrlError::RelativeUnixPath);
                }
                Addr::Unix(PathBuf::from(rest))
            }
            Scheme::Tcp | Scheme::Tls | Scheme::Quic => parse_authority(rest)?,
        };
        Ok(Self { scheme, addr })
    }

    /// The transport this URL names.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The host (a DNS name or an IP literal, IPv6 without brackets);
    /// `None` for Unix sockets.
    pub fn host(&self) -> Option<&str> {
        match &self.addr {
            Addr::Inet { host, .. } => Some(host),
            Addr::Unix(_) => None,
        }
    }

    /// The TCP port; `None` for Unix sockets.
    pub fn port(&self) -> Option<u16> {
        match &self.addr {
            Addr::Inet { port, .. } => Some(*port),
            Addr::Unix(_) => None,
        }
    }

    /// The socket path; `Some` only for [`Scheme::Unix`].
    pub fn path(&self) -> Option<&Path> {
        match &self.addr {
            Addr::Unix(path) => Some(path),
            Addr::Inet { .. } => None,
        }
    }

    pub(crate) fn from_socket_addr(scheme: Scheme, addr: SocketAddr) -> Self {
        Self {
            scheme,
            addr: Addr::Inet {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
        }
    }

    pub(crate) fn from_unix_path(path: PathBuf) -> Self {
        Self {
            scheme: Scheme::Unix,
            addr: Addr::Unix(path),
        }
    }
}

/// Parses `host:port` or `[v6]:port`.
fn parse_authority(s: &str) -> Result<Addr, UrlError> {
    if s.contains('@') {
        return Err(UrlError::UserInfo);
    }
    if s.contains('/') {
        return Err(UrlError::UnexpectedPath);
    }
    let (host, port) = if let Some(bracketed) = s.strip_prefix('[') {
        let (inside, after) = bracketed
            .split_once(']')
            .ok_or_else(|| UrlError::InvalidHost(s.to_owned()))?;
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(UrlError::InvalidHost(inside.to_owned()));
        }
        let port = match after.strip_prefix(':') {
            Some(port) => port,
            None if after.is_empty() => return Err(UrlError::MissingPort),
            None => return Err(UrlError::InvalidHost(s.to_owned())),
        };
        (inside, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or(UrlError::MissingPort)?;
        if host.contains(':') {
            // An IPv6 literal without brackets is ambiguous with the port.
            return Err(UrlError::InvalidHost(host.to_owned()));
        }
        if !host.is_empty() && !host.bytes().all(is_host_byte) {
            return Err(UrlError::InvalidHost(host.to_owned()));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    if port.is_empty() {
        return Err(UrlError::MissingPort);
    }
    // `u16::from_str` accepts a leading '+'; a URL port is digits only.
    if !port.bytes().all(|b| b.is_ascii_digit()) {
        return Err(UrlError::InvalidPort(port.to_owned()));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| UrlError::InvalidPort(port.to_owned()))?;
    Ok(Addr::Inet {
        host: host.to_owned(),
        port,
    })
}

/// Bytes allowed in a DNS name or IPv4 literal.
fn is_host_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')
}

impl FromStr for Url {
    type Err = UrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.addr {
            Addr::Inet { host, port } if host.contains(':') => {
                write!(f, "{}://[{host}]:{port}", self.scheme)
            }
            Addr::Inet { host, port } => write!(f, "{}://{host}:{port}", self.scheme),
            Addr::Unix(path) => write!(f, "{}://{}", self.scheme, path.display()),
        }
    }
}

/// Why a string is not a valid zap [`Url`].
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UrlError {
    /// There is no `scheme://` prefix.
    MissingScheme,
    /// The scheme is not one of `zap`, `zaps`, `zap+unix`, `zap+quic`.
    UnknownScheme(String),
    /// The host part is empty (`zap://:9000`).
    EmptyHost,
    /// The host is not a DNS name, an IPv4 literal or a bracketed IPv6 literal.
    InvalidHost(String),
    /// No `:port` after the host.
    MissingPort,
    /// The port is not a decimal number in `0..=65535`.
    InvalidPort(String),
    /// A `zap+unix://` URL whose path is not absolute (`zap+unix:///abs/path`).
    RelativeUnixPath,
    /// A TCP/TLS URL with a path after the port.
    UnexpectedPath,
    /// The URL has a `?query` or `#fragment`.
    QueryOrFragment,
    /// The URL has `user@` information.
    UserInfo,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SUPPORTED: &str =
            "supported: zap://host:port, zaps://host:port, zap+unix:///path, zap+quic://host:port";
        match self {
            Self::MissingScheme => write!(f, "missing `scheme://` in zap URL ({SUPPORTED})"),
            Self::UnknownScheme(s) => write!(f, "unknown URL scheme `{s}` ({SUPPORTED})"),
            Self::EmptyHost => f.write_str("empty host in zap URL"),
            Self::InvalidHost(h) => write!(
                f,
                "invalid host `{h}` in zap URL (IPv6 literals need brackets: [::1]:port)"
            ),
            Self::MissingPort => f.write_str("missing `:port` in zap URL"),
            Self::InvalidPort(p) => write!(f, "invalid port `{p}` in zap URL (0-65535)"),
            Self::RelativeUnixPath => {
                f.write_str("zap+unix URL needs an absolute path: zap+unix:///abs/path")
            }
            Self::UnexpectedPath => {
                f.write_str("zap://, zaps:// and zap+quic:// URLs take no path")
            }
            Self::QueryOrFragment => f.write_str("zap URLs take no ?query or #fragment"),
            Self::UserInfo => f.write_str("zap URLs take no user@ information"),
        }
    }
}

impl std::error::Error for UrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addr_round_trip() {
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        let url = Url::from_socket_addr(Scheme::Tls, v6);
        assert_eq!(url.to_string(), "zaps://[::1]:7");
        assert_eq!(Url::parse(&url.to_string()).unwrap(), url);
    }

    #[test]
    fn scheme_is_case_insensitive_and_normalized() {
        let url = Url::parse("ZAP+Unix:///tmp/s").unwrap();
        assert_eq!(url.scheme(), Scheme::Unix);
        assert_eq!(url.to_string(), "zap+unix:///tmp/s");
    }
}
