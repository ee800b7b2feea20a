//! TLS 1.3 configuration: rustls with the ring provider, ALPN `zap/1`.
//!
//! Every config here is built with `rustls::crypto::ring::default_provider()`
//! passed explicitly, so the process-wide default provider (which another
//! crate in the same binary may install) never changes what zap negotiates.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, InvalidDnsNameError, PrivateKeyDer, ServerName};

/// The ALPN protocol id of zap over TLS. Both sides require it.
pub const ALPN: &[u8] = b"zap/1";

/// The ALPN id of HTTP/2, which a server offers beside [`ALPN`] when it
/// also serves gRPC on the same port ([`ServerTls::with_h2`]).
pub const ALPN_H2: &[u8] = b"h2";

/// TLS configuration for a [`Listener`](crate::Listener).
///
/// Cheap to clone (the rustls config is shared).
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// A server identity from a PEM certificate chain (end-entity first) and
    /// a PEM private key (PKCS#8, PKCS#1 or SEC1). Clients are not asked for
    /// certificates.
    pub fn from_pem(cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs = parse_certs(cert_chain_pem, "certificate chain")?;
        let key = parse_key(key_pem)?;
        let config = server_builder()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        Ok(Self::finish(config))
    }

    /// Like [`from_pem`](Self::from_pem), and asks clients for a certificate
    /// issued by one of the CAs in `client_ca_pem` (mutual TLS).
    ///
    /// With `required`, a client without a valid certificate fails the
    /// handshake. Without it, a client may present no certificate at all,
    /// but one that presents a certificate must present a valid one; check
    /// [`PeerInfo::peer_certificate`](crate::PeerInfo::peer_certificate) to
    /// tell the two apart.
    pub fn with_client_auth(
        cert_chain_pem: &[u8],
        key_pem: &[u8],
        client_ca_pem: &[u8],
        required: bool,
    ) -> Result<Self, TlsError> {
        let certs = parse_certs(cert_chain_pem, "certificate chain")?;
        let key = parse_key(key_pem)?;
        let roots = root_store(client_ca_pem, "client CA")?;
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let builder = if required {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        let verifier = builder.build().map_err(TlsError::ClientVerifier)?;
        let config = server_builder()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        Ok(Self::finish(config))
    }

    fn finish(mut config: ServerConfig) -> Self {
        config.alpn_protocols = vec![ALPN.to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    /// Also offers ALPN `h2` (after `zap/1`), for a server that serves
    /// gRPC clients on the same port (zap's `grpc` feature). Which one a
    /// connection negotiated is in [`PeerInfo::alpn`](crate::PeerInfo::alpn).
    pub fn with_h2(self) -> Self {
        let mut config = Arc::unwrap_or_clone(self.config);
        config.alpn_protocols = vec![ALPN.to_vec(), ALPN_H2.to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    /// The rustls configuration (TLS 1.3 only, ring, ALPN `zap/1`, and
    /// `h2` after [`with_h2`](Self::with_h2)).
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}

/// TLS configuration for a [`Connector`](crate::Connector).
///
/// Cheap to clone (the rustls config is shared).
#[derive(Clone, Debug)]
pub struct ClientTls {
    roots: Arc<RootCertStore>,
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    pins: Arc<[[u8; 32]]>,
}

impl ClientTls {
    /// Trusts exactly the CA certificates in `ca_pem`; the server's
    /// certificate must chain to one of them and match the host name.
    pub fn with_roots_pem(ca_pem: &[u8]) -> Result<Self, TlsError> {
        let roots = Arc::new(root_store(ca_pem, "CA")?);
        let config = client_builder()?
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        Ok(Self {
            roots,
            config: Self::finish(config),
            server_name: None,
            pins: Arc::new([]),
        })
    }

    /// Presents this client certificate chain and key when the server asks
    /// (mutual TLS).
    pub fn with_identity(self, cert_chain_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs = parse_certs(cert_chain_pem, "client certificate chain")?;
        let key = parse_key(key_pem)?;
        let config = client_builder()?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_client_auth_cert(certs, key)?;
        Ok(Self {
            config: Self::finish(config),
            ..self
        })
    }

    /// Sends `name` as SNI and verifies the server certificate against it,
    /// instead of the URL's host. `name` is a DNS name or an IP literal.
    pub fn with_server_name(self, name: &str) -> Result<Self, TlsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::InvalidServerName(name.to_owned(), e))?;
        Ok(Self {
            server_name: Some(name),
            ..self
        })
    }

    /// Also requires the server's end-entity certificate to have one of
    /// these SHA-256 digests (of its DER encoding), checked after the usual
    /// chain and hostname verification, which still apply. Pinning several
    /// digests lets a certificate rotate without an outage.
    pub fn with_pinned_sha256(self, pins: impl IntoIterator<Item = [u8; 32]>) -> Self {
        Self {
            pins: pins.into_iter().collect(),
            ..self
        }
    }

    /// Checks the pins (if any) against the verified peer.
    pub(crate) fn check_pins(&self, peer: &crate::PeerInfo) -> Result<(), crate::ConnectError> {
        if self.pins.is_empty() {
            return Ok(());
        }
        let Some(cert) = peer.peer_certificate() else {
            return Err(crate::ConnectError::PinMismatch);
        };
        let digest = certificate_sha256(cert);
        if self.pins.iter().any(|p| p == &digest) {
            Ok(())
        } else {
            Err(crate::ConnectError::PinMismatch)
        }
    }

    fn finish(mut config: ClientConfig) -> Arc<ClientConfig> {
        config.alpn_protocols = vec![ALPN.to_vec()];
        Arc::new(config)
    }

    /// The rustls configuration (TLS 1.3 only, ring, ALPN `zap/1`).
    pub fn config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.config)
    }

    /// The name set by [`with_server_name`](Self::with_server_name), if any.
    pub(crate) fn server_name_override(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }
}

/// After a handshake (either side): requires ALPN `zap/1` (or, on a server
/// that offered it, `h2`) and records the negotiated protocol and the
/// peer's certificates in `peer`.
pub(crate) fn check_session(
    session: &rustls::CommonState,
    peer: &mut crate::PeerInfo,
    server: bool,
) -> Result<(), crate::ConnectError> {
    let alpn = session.alpn_protocol();
    // A server negotiates `h2` only if its config offered it.
    if alpn != Some(ALPN) && !(server && alpn == Some(ALPN_H2)) {
        return Err(crate::ConnectError::Alpn);
    }
    peer.alpn = alpn.map(<[u8]>::to_vec);
    peer.certificates = session
        .peer_certificates()
        .map(<[_]>::to_vec)
        .unwrap_or_default();
    Ok(())
}

/// The SHA-256 digest of a certificate's DER encoding, as pinned by
/// [`ClientTls::with_pinned_sha256`].
pub fn certificate_sha256(cert: &CertificateDer<'_>) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
    let mut out = [0; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_builder() -> Result<rustls::ConfigBuilder<ServerConfig, rustls::WantsVerifier>, TlsError>
{
    Ok(ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?)
}

fn client_builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, TlsError>
{
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?)
}

fn parse_certs(
    pem_bytes: &[u8],
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadPem { what, source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { what });
    }
    Ok(certs)
}

fn parse_key(pem_bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|source| match source {
        pem::Error::NoItemsFound => TlsError::NoKey,
        source => TlsError::BadPem {
            what: "private key",
            source,
        },
    })
}

fn root_store(pem_bytes: &[u8], what: &'static str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(pem_bytes, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Why a TLS configuration could not be built.
#[non_exhaustive]
#[derive(Debug)]
pub enum TlsError {
    /// A PEM input is malformed.
    BadPem {
        /// Which input.
        what: &'static str,
        /// The PEM parser's error.
        source: pem::Error,
    },
    /// A PEM input holds no `CERTIFICATE` section.
    NoCertificate {
        /// Which input.
        what: &'static str,
    },
    /// The key PEM holds no private key section.
    NoKey,
    /// rustls rejected a certificate, key or setting (for example a key
    /// that does not match the certificate).
    Rustls(rustls::Error),
    /// The client-certificate verifier could not be built.
    ClientVerifier(VerifierBuilderError),
    /// A server name override is neither a DNS name nor an IP literal.
    InvalidServerName(String, InvalidDnsNameError),
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadPem { what, source } => write!(f, "bad PEM in {what}: {source}"),
            Self::NoCertificate { what } => write!(f, "no certificate found in {what} PEM"),
            Self::NoKey => f.write_str("no private key found in key PEM"),
            Self::Rustls(e) => write!(f, "TLS configuration rejected: {e}"),
            Self::ClientVerifier(e) => write!(f, "client certificate verifier: {e}"),
            Self::InvalidServerName(name, _) => write!(f, "invalid TLS server name `{name}`"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::BadPem { source, .. } => Some(source),
            Self::Rustls(e) => Some(e),
            Self::ClientVerifier(e) => Some(e),
            Self::InvalidServerName(_, e) => Some(e),
            Self::NoCertificate { .. } | Self::NoKey => None,
        }
    }
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Rustls(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_certs::TestPki;

    #[test]
    fn configs_are_tls13_with_alpn() {
        let pki = TestPki::generate();
        let server = ServerTls::from_pem(
            pki.server_cert_pem.as_bytes(),
            pki.server_key_pem.as_bytes(),
        )
        .unwrap();
        assert_eq!(server.config().alpn_protocols, vec![ALPN.to_vec()]);
        assert!(server.config().max_early_data_size == 0, "0-RTT off");
        let client = ClientTls::with_roots_pem(pki.ca_pem.as_bytes()).unwrap();
        assert_eq!(client.config().alpn_protocols, vec![ALPN.to_vec()]);
        assert!(!client.config().enable_early_data, "0-RTT off");
        let client = client
            .with_identity(
                pki.client_cert_pem.as_bytes(),
                pki.client_key_pem.as_bytes(),
            )
            .unwrap();
        assert!(client.config().client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn pem_errors() {
        let pki = TestPki::generate();
        let key = pki.server_key_pem.as_bytes();
        assert!(matches!(
            ServerTls::from_pem(b"", key),
            Err(TlsError::NoCertificate { .. })
        ));
        assert!(matches!(
            ServerTls::from_pem(pki.server_cert_pem.as_bytes(), b"nothing here"),
            Err(TlsError::NoKey)
        ));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            ServerTls::from_pem(broken.as_bytes(), key),
            Err(TlsError::BadPem { .. })
        ));
        // A key that does not belong to the certificate.
        assert!(matches!(
            ServerTls::from_pem(
                pki.server_cert_pem.as_bytes(),
                pki.client_key_pem.as_bytes()
            ),
            Err(TlsError::Rustls(_))
        ));
        assert!(matches!(
            ClientTls::with_roots_pem(b"").unwrap_err(),
            TlsError::NoCertificate { what: "CA" }
        ));
        let client = ClientTls::with_roots_pem(pki.ca_pem.as_bytes()).unwrap();
        let err = client.with_server_name("bad name!").unwrap_err();
        assert!(matches!(err, TlsError::InvalidServerName(..)));
        assert!(err.to_string().contains("bad name!"));
    }
}
