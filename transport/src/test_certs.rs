//! A throw-away PKI generated at run time with `rcgen`, for tests.
//!
//! Enabled by the `test-certs` feature. Nothing here is fit for production:
//! keys are fresh per call, never persisted, and certificates are valid from
//! 1975 to 4096.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM-encoded certificates and keys for TLS and mTLS tests.
///
/// `ca_pem` signed the server and client certificates; `other_ca_pem` is an
/// unrelated CA that signed `other_client_*`. All keys are ECDSA P-256 in
/// PKCS#8.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The main CA certificate.
    pub ca_pem: String,
    /// Server certificate for `localhost`, `127.0.0.1` and `::1`, signed by the CA.
    pub server_cert_pem: String,
    /// The server certificate's private key.
    pub server_key_pem: String,
    /// Client certificate (`CN=zap test client`), signed by the CA.
    pub client_cert_pem: String,
    /// The client certificate's private key.
    pub client_key_pem: String,
    /// An unrelated CA certificate.
    pub other_ca_pem: String,
    /// Client certificate signed by the unrelated CA.
    pub other_client_cert_pem: String,
    /// The other client certificate's private key.
    pub other_client_key_pem: String,
}

impl TestPki {
    /// Generates a fresh PKI.
    ///
    /// # Panics
    ///
    /// If `rcgen` fails to generate a key or sign a certificate, which it
    /// does not for these fixed inputs.
    pub fn generate() -> Self {
        Self::try_generate().expect("rcgen failed to generate the test PKI")
    }

    /// The server's [`ServerTls`](crate::ServerTls) (no client
    /// certificates asked).
    ///
    /// # Panics
    ///
    /// If the generated PEM does not load, which it does.
    pub fn server_tls(&self) -> crate::ServerTls {
        crate::ServerTls::from_pem(
            self.server_cert_pem.as_bytes(),
            self.server_key_pem.as_bytes(),
        )
        .expect("the test PKI's server PEM loads")
    }

    /// A [`ClientTls`](crate::ClientTls) trusting the main CA.
    ///
    /// # Panics
    ///
    /// If the generated PEM does not load, which it does.
    pub fn client_tls(&self) -> crate::ClientTls {
        crate::ClientTls::with_roots_pem(self.ca_pem.as_bytes())
            .expect("the test PKI's CA PEM loads")
    }

    fn try_generate() -> Result<Self, rcgen::Error> {
        let ca = new_ca("zap test CA")?;
        let other_ca = new_ca("zap other test CA")?;
        let (server_cert_pem, server_key_pem) = leaf(
            &ca,
            "zap test server",
            &["localhost", "127.0.0.1", "::1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_cert_pem, client_key_pem) = leaf(
            &ca,
            "zap test client",
            &["client.zap.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let (other_client_cert_pem, other_client_key_pem) = leaf(
            &other_ca,
            "zap other test client",
            &["other-client.zap.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        Ok(Self {
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
            other_ca_pem: other_ca.pem(),
            other_client_cert_pem,
            other_client_key_pem,
        })
    }
}

fn new_ca(name: &str) -> Result<CertifiedIssuer<'static, KeyPair>, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::new())?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate()?)
}

fn leaf(
    issuer: &CertifiedIssuer<'static, KeyPair>,
    name: &str,
    subject_alt_names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let names: Vec<String> = subject_alt_names.iter().map(|&s| s.to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
