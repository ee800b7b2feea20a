//! Real loopback sockets: TCP, Unix and TLS echo, certificate checks, mTLS,
//! timeouts, connection limits and the tower service.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not the helpers here.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::timeout;
use tower::ServiceExt;
use zap_transport::test_certs::TestPki;
use zap_transport::{
    ALPN, ClientTls, ConnectError, Connector, Limits, Listener, PeerInfo, ServerTls, Stream, Url,
};

/// Generous bound for anything that should "complete".
const PATIENCE: Duration = Duration::from_secs(10);

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

/// Accepts forever on its own task; reports every handshake result and
/// echoes on every established connection until EOF.
fn serve_echo(listener: Arc<Listener>) -> mpsc::UnboundedReceiver<Result<PeerInfo, ConnectError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok(incoming) = listener.accept().await else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut conn = match incoming.handshake().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                if let Stream::Tcp(tcp) = &conn.stream {
                    assert!(tcp.nodelay().unwrap(), "server TCP_NODELAY");
                }
                let _ = tx.send(Ok(conn.peer.clone()));
                let mut buf = vec![0; 4096];
                loop {
                    match conn.stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if conn.stream.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    rx
}

async fn next_result(
    rx: &mut mpsc::UnboundedReceiver<Result<PeerInfo, ConnectError>>,
) -> Result<PeerInfo, ConnectError> {
    timeout(PATIENCE, rx.recv())
        .await
        .expect("server reported nothing")
        .expect("server task ended")
}

/// Writes `msg` and reads the echo back.
async fn roundtrip(stream: &mut Stream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    timeout(PATIENCE, async {
        stream.write_all(msg).await?;
        stream.flush().await?;
        let mut back = vec![0; msg.len()];
        stream.read_exact(&mut back).await?;
        Ok(back)
    })
    .await
    .expect("roundtrip hung")
}

async fn assert_echo(stream: &mut Stream) {
    let msg = b"ping through zap-transport";
    assert_eq!(roundtrip(stream, msg).await.unwrap(), msg);
}

fn der(pem: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

async fn tls_listener(tls: ServerTls, limits: Limits) -> (Arc<Listener>, Url) {
    let listener = Listener::bind(&url("zaps://127.0.0.1:0"), Some(tls), limits)
        .await
        .unwrap();
    let local = listener.local_url();
    (Arc::new(listener), local)
}

#[tokio::test]
async fn tcp_echo_with_nodelay() {
    let listener = Listener::bind(&url("zap://127.0.0.1:0"), None, Limits::default())
        .await
        .unwrap();
    let local = listener.local_url();
    assert_eq!(local.host(), Some("127.0.0.1"));
    assert_ne!(local.port(), Some(0));
    let mut server = serve_echo(Arc::new(listener));

    let mut conn = Connector::new(Limits::default())
        .connect(&local)
        .await
        .unwrap();
    let Stream::Tcp(tcp) = &conn.stream else {
        panic!("zap:// must give plain TCP, got {:?}", conn.stream);
    };
    assert!(tcp.nodelay().unwrap(), "client TCP_NODELAY");
    assert_eq!(conn.peer.addr.unwrap().port(), local.port().unwrap());
    assert!(conn.peer.certificates.is_empty());
    assert_eq!(conn.peer.alpn, None);
    assert_echo(&mut conn.stream).await;

    let seen = next_result(&mut server).await.unwrap();
    assert_eq!(seen.addr, Some(tcp_local(&conn.stream)));
    assert!(seen.peer_certificate().is_none());
}

fn tcp_local(stream: &Stream) -> std::net::SocketAddr {
    match stream {
        Stream::Tcp(s) => s.local_addr().unwrap(),
        Stream::TlsClient(s) => s.get_ref().0.local_addr().unwrap(),
        other => panic!("not TCP: {other:?}"),
    }
}

/// A unique socket path under the temp dir, removed on drop.
struct TempSocket(std::path::PathBuf);

impl TempSocket {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let name = format!("zap-transport-{tag}-{}-{nanos}.sock", std::process::id());
        Self(std::env::temp_dir().join(name))
    }

    fn url(&self) -> Url {
        url(&format!("zap+unix://{}", self.0.display()))
    }
}

impl Drop for TempSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn unix_echo_and_socket_cleanup() {
    let sock = TempSocket::new("echo");
    let listener = Listener::bind(&sock.url(), None, Limits::default())
        .await
        .unwrap();
    assert_eq!(listener.local_url(), sock.url());
    let listener = Arc::new(listener);
    let mut server = serve_echo(Arc::clone(&listener));

    let mut conn = Connector::new(Limits::default())
        .connect(&sock.url())
        .await
        .unwrap();
    assert!(matches!(conn.stream, Stream::Unix(_)));
    assert_eq!(conn.peer.unix_path.as_deref(), Some(sock.0.as_path()));
    assert_echo(&mut conn.stream).await;
    let seen = next_result(&mut server).await.unwrap();
    assert_eq!(seen.unix_path.as_deref(), Some(sock.0.as_path()));
    assert_eq!(seen.addr, None);

    // A second bind on a live socket fails and leaves it alone.
    let err = Listener::bind(&sock.url(), None, Limits::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert_echo(&mut conn.stream).await;
    drop(conn);
}

#[tokio::test]
async fn unix_stale_socket_is_replaced_but_other_files_are_not() {
    let sock = TempSocket::new("stale");
    // A socket file whose listener is gone (std does not unlink on drop).
    drop(std::os::unix::net::UnixListener::bind(&sock.0).unwrap());
    assert!(sock.0.exists());
    let listener = Listener::bind(&sock.url(), None, Limits::default())
        .await
        .unwrap();
    let mut server = serve_echo(Arc::new(listener));
    let mut conn = Connector::new(Limits::default())
        .connect(&sock.url())
        .await
        .unwrap();
    assert_echo(&mut conn.stream).await;
    next_result(&mut server).await.unwrap();

    let file = TempSocket::new("regular");
    std::fs::write(&file.0, b"not a socket").unwrap();
    assert!(
        Listener::bind(&file.url(), None, Limits::default())
            .await
            .is_err()
    );
    assert_eq!(std::fs::read(&file.0).unwrap(), b"not a socket");
}

#[tokio::test]
async fn unix_socket_file_removed_when_listener_dropped() {
    let sock = TempSocket::new("drop");
    let listener = Listener::bind(&sock.url(), None, Limits::default())
        .await
        .unwrap();
    assert!(sock.0.exists());
    drop(listener);
    assert!(!sock.0.exists());
}

#[tokio::test]
async fn tls_echo_with_alpn_and_peer_certificates() {
    let pki = TestPki::generate();
    let (listener, local) = tls_listener(pki.server_tls(), Limits::default()).await;
    assert_eq!(local.scheme(), zap_transport::Scheme::Tls);
    let mut server = serve_echo(listener);

    // 127.0.0.1 is in the server certificate's names.
    let connector = Connector::new(Limits::default()).with_tls(pki.client_tls());
    let mut conn = connector.connect(&local).await.unwrap();
    assert!(matches!(conn.stream, Stream::TlsClient(_)));
    assert_eq!(conn.peer.alpn.as_deref(), Some(ALPN));
    assert_eq!(conn.peer.alpn.as_deref(), Some(&b"zap/1"[..]));
    assert_eq!(
        conn.peer.peer_certificate(),
        Some(&der(&pki.server_cert_pem))
    );
    assert_eq!(conn.peer.server_name.as_deref(), Some("127.0.0.1"));
    assert!(tcp_nodelay(&conn.stream));
    assert_echo(&mut conn.stream).await;

    let seen = next_result(&mut server).await.unwrap();
    assert_eq!(seen.alpn.as_deref(), Some(ALPN));
    assert!(seen.certificates.is_empty(), "no client auth configured");
    assert_eq!(seen.server_name, None, "no SNI for an IP address");

    // By name: SNI is sent and verified.
    let by_name = url(&format!("zaps://localhost:{}", local.port().unwrap()));
    let mut conn = connector.connect(&by_name).await.unwrap();
    assert_echo(&mut conn.stream).await;
    assert_eq!(conn.peer.server_name.as_deref(), Some("localhost"));
    let seen = next_result(&mut server).await.unwrap();
    assert_eq!(seen.server_name.as_deref(), Some("localhost"));
}

fn tcp_nodelay(stream: &Stream) -> bool {
    match stream {
        Stream::Tcp(s) => s.nodelay().unwrap(),
        Stream::TlsClient(s) => s.get_ref().0.nodelay().unwrap(),
        Stream::TlsServer(s) => s.get_ref().0.nodelay().unwrap(),
        Stream::Unix(_) => false,
    }
}

#[tokio::test]
async fn untrusted_server_certificate_is_rejected() {
    let pki = TestPki::generate();
    let (listener, local) = tls_listener(pki.server_tls(), Limits::default()).await;
    let mut server = serve_echo(listener);

    let wrong_roots = ClientTls::with_roots_pem(pki.other_ca_pem.as_bytes()).unwrap();
    let err = Connector::new(Limits::default())
        .with_tls(wrong_roots)
        .connect(&local)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.tls_error(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer
            ))
        ),
        "{err:?}"
    );
    assert!(next_result(&mut server).await.is_err());
}

#[tokio::test]
async fn wrong_hostname_is_rejected() {
    let pki = TestPki::generate();
    let (listener, local) = tls_listener(pki.server_tls(), Limits::default()).await;
    let _server = serve_echo(listener);

    let tls = pki.client_tls().with_server_name("not-localhost").unwrap();
    let err = Connector::new(Limits::default())
        .with_tls(tls)
        .connect(&local)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.tls_error(),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                    | rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
}

fn mtls_server(pki: &TestPki, required: bool) -> ServerTls {
    ServerTls::with_client_auth(
        pki.server_cert_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
        pki.ca_pem.as_bytes(),
        required,
    )
    .unwrap()
}

/// Under TLS 1.3 the client's handshake ends before the server has checked
/// the client certificate, so a refusal shows either in `connect` or on the
/// first read.
/// A client certificate signed by the CA is accepted, and the server sees
/// it as the peer's identity.
async fn assert_member_accepted(
    pki: &TestPki,
    local: &Url,
    server: &mut mpsc::UnboundedReceiver<Result<PeerInfo, ConnectError>>,
) {
    let member = pki
        .client_tls()
        .with_identity(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap();
    let mut conn = Connector::new(Limits::default())
        .with_tls(member)
        .connect(local)
        .await
        .unwrap();
    assert_echo(&mut conn.stream).await;
    let seen = next_result(server).await.unwrap();
    assert_eq!(seen.peer_certificate(), Some(&der(&pki.client_cert_pem)));
}

async fn assert_refused_by_server(connector: &Connector, local: &Url) {
    if let Ok(mut conn) = connector.connect(local).await {
        assert!(roundtrip(&mut conn.stream, b"hello").await.is_err());
    }
}

#[tokio::test]
async fn mtls_required() {
    let pki = TestPki::generate();
    let (listener, local) = tls_listener(mtls_server(&pki, true), Limits::default()).await;
    let mut server = serve_echo(listener);

    // No client certificate: refused.
    let anonymous = Connector::new(Limits::default()).with_tls(pki.client_tls());
    assert_refused_by_server(&anonymous, &local).await;
    let err = next_result(&mut server).await.unwrap_err();
    assert!(
        matches!(
            err.tls_error(),
            Some(rustls::Error::NoCertificatesPresented)
        ),
        "{err:?}"
    );

    // A certificate from an unrelated CA: refused.
    let stranger = pki
        .client_tls()
        .with_identity(
            pki.other_client_cert_pem.as_bytes(),
            pki.other_client_key_pem.as_bytes(),
        )
        .unwrap();
    let stranger = Connector::new(Limits::default()).with_tls(stranger);
    assert_refused_by_server(&stranger, &local).await;
    let err = next_result(&mut server).await.unwrap_err();
    assert!(
        matches!(err.tls_error(), Some(rustls::Error::InvalidCertificate(_))),
        "{err:?}"
    );

    // A certificate signed by the CA: accepted, and visible to the server.
    assert_member_accepted(&pki, &local, &mut server).await;
}

#[tokio::test]
async fn mtls_optional() {
    let pki = TestPki::generate();
    let (listener, local) = tls_listener(mtls_server(&pki, false), Limits::default()).await;
    let mut server = serve_echo(listener);

    let anonymous = Connector::new(Limits::default()).with_tls(pki.client_tls());
    let mut conn = anonymous.connect(&local).await.unwrap();
    assert_echo(&mut conn.stream).await;
    let seen = next_result(&mut server).await.unwrap();
    assert!(seen.peer_certificate().is_none());

    assert_member_accepted(&pki, &local, &mut server).await;

    // Presenting a certificate is optional; presenting a bad one is not.
    let stranger = pki
        .client_tls()
        .with_identity(
            pki.other_client_cert_pem.as_bytes(),
            pki.other_client_key_pem.as_bytes(),
        )
        .unwrap();
    assert_refused_by_server(
        &Connector::new(Limits::default()).with_tls(stranger),
        &local,
    )
    .await;
    assert!(next_result(&mut server).await.is_err());
}

#[tokio::test]
async fn silent_client_times_out_without_blocking_others() {
    let pki = TestPki::generate();
    let limits = Limits::default().with_handshake_timeout(Duration::from_millis(500));
    let (listener, local) = tls_listener(pki.server_tls(), limits).await;
    let mut server = serve_echo(listener);

    // Connects, then says nothing.
    let addr = format!("127.0.0.1:{}", local.port().unwrap());
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();

    let connector = Connector::new(Limits::default()).with_tls(pki.client_tls());
    let mut conn = connector.connect(&local).await.unwrap();
    assert_echo(&mut conn.stream).await;

    let (first, second) = (
        next_result(&mut server).await,
        next_result(&mut server).await,
    );
    let (ok, timed_out): (Vec<_>, Vec<_>) = [first, second].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1);
    assert_eq!(timed_out.len(), 1);
    let err = timed_out.into_iter().next().unwrap().unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    drop(silent);
}

#[tokio::test]
async fn client_handshake_timeout() {
    // A TCP server that accepts and never answers the ClientHello.
    let mute = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = mute.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = mute.accept().await {
            held.push(s);
        }
    });
    let pki = TestPki::generate();
    let limits = Limits::default().with_handshake_timeout(Duration::from_millis(200));
    let err = timeout(
        PATIENCE,
        Connector::new(limits)
            .with_tls(pki.client_tls())
            .connect(&url(&format!("zaps://127.0.0.1:{port}"))),
    )
    .await
    .expect("connect must time out by itself")
    .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    hold.abort();
}

/// A plain TCP echo server on loopback under `limits`.
async fn tcp_echo(
    limits: Limits,
) -> (
    Arc<Listener>,
    Url,
    mpsc::UnboundedReceiver<Result<PeerInfo, ConnectError>>,
) {
    let listener = Listener::bind(&url("zap://127.0.0.1:0"), None, limits)
        .await
        .unwrap();
    let local = listener.local_url();
    let listener = Arc::new(listener);
    let server = serve_echo(Arc::clone(&listener));
    (listener, local, server)
}

#[tokio::test]
async fn max_connections_refuses_extra_and_frees_slot_on_close() {
    let (listener, local, mut server) = tcp_echo(Limits::default().with_max_connections(1)).await;
    let connector = Connector::new(Limits::default());

    let mut first = connector.connect(&local).await.unwrap();
    assert_echo(&mut first.stream).await;
    next_result(&mut server).await.unwrap();

    // Over the limit: the server closes it without serving.
    let mut second = connector.connect(&local).await.unwrap();
    assert!(roundtrip(&mut second.stream, b"hello").await.is_err());
    assert!(listener.refused_connections() >= 1);

    // The first connection is unaffected.
    assert_echo(&mut first.stream).await;

    // Closing it frees the slot (after the server notices the EOF).
    drop(first);
    served_again(&connector, &local, "slot never freed").await;
}

/// Connects until a connection is served (a freed slot is seen once the
/// server has noticed the EOF that freed it).
async fn served_again(connector: &Connector, local: &Url, what: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut c = connector.connect(local).await.unwrap();
        if roundtrip(&mut c.stream, b"again").await.is_ok() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_address_cannot_take_every_slot() {
    let limits = Limits::default()
        .with_max_connections(8)
        .with_max_connections_per_ip(2);
    let (listener, local, mut server) = tcp_echo(limits).await;
    let connector = Connector::new(Limits::default());
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = connector.connect(&local).await.unwrap();
        assert_echo(&mut c.stream).await;
        next_result(&mut server).await.unwrap();
        held.push(c);
    }
    // A third from 127.0.0.1 is closed unserved, though slots are free.
    let mut third = connector.connect(&local).await.unwrap();
    assert!(roundtrip(&mut third.stream, b"hello").await.is_err());
    assert_eq!(listener.refused_connections(), 1);
    // Closing one gives the address its share back.
    drop(held.pop());
    served_again(&connector, &local, "share never freed").await;
}

#[tokio::test]
async fn connection_rate_per_address_is_a_token_bucket() {
    let rate = zap_transport::ConnectionRate {
        per_second: 1,
        burst: 3,
    };
    let limits = Limits::default().with_connection_rate_per_ip(rate);
    let (listener, local, _server) = tcp_echo(limits).await;
    let connector = Connector::new(Limits::default());
    // The burst is served (and closing them gives no tokens back)...
    for _ in 0..3 {
        let mut c = connector.connect(&local).await.unwrap();
        assert_echo(&mut c.stream).await;
    }
    // ...the next start within the second is refused.
    let mut fourth = connector.connect(&local).await.unwrap();
    assert!(roundtrip(&mut fourth.stream, b"hello").await.is_err());
    assert_eq!(listener.refused_connections(), 1);
}

#[tokio::test]
async fn the_listen_backlog_holds_a_burst_of_connects() {
    // Nobody accepts: every connect must complete in the kernel's queue.
    // With the standard library's backlog of 128 most of these would wait
    // on SYN retries and time out.
    let listener = Listener::bind(&url("zap://127.0.0.1:0"), None, Limits::default())
        .await
        .unwrap();
    assert_eq!(listener.limits().listen_backlog, 4096);
    let addr = format!("127.0.0.1:{}", listener.local_url().port().unwrap());
    let connects = (0..600).map(|_| {
        let addr = addr.clone();
        tokio::spawn(async move {
            timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await
        })
    });
    let mut ok = 0;
    let mut socks = Vec::new();
    for c in connects.collect::<Vec<_>>() {
        if let Ok(Ok(s)) = c.await.unwrap() {
            ok += 1;
            socks.push(s);
        }
    }
    assert_eq!(ok, 600);
    drop(listener);
}

#[tokio::test]
async fn connector_is_a_tower_service() {
    let listener = Listener::bind(&url("zap://127.0.0.1:0"), None, Limits::default())
        .await
        .unwrap();
    let local = listener.local_url();
    let _server = serve_echo(Arc::new(listener));

    let mut conn = Connector::new(Limits::default())
        .oneshot(local)
        .await
        .unwrap();
    assert_echo(&mut conn.stream).await;

    let err = Connector::new(Limits::default())
        .oneshot(url("zaps://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NoTlsConfig));
}

#[tokio::test]
async fn zaps_without_tls_config_is_a_clear_error() {
    let err = Connector::new(Limits::default())
        .connect(&url("zaps://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::NoTlsConfig), "{err:?}");
    assert!(err.to_string().contains("zaps:// needs TLS roots"), "{err}");

    // The listener side: zaps:// needs TLS, plaintext schemes refuse it.
    let err = Listener::bind(&url("zaps://127.0.0.1:0"), None, Limits::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("zaps://"), "{err}");
    let pki = TestPki::generate();
    let err = Listener::bind(
        &url("zap://127.0.0.1:0"),
        Some(pki.server_tls()),
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn alpn_zap1_is_required_by_both_sides() {
    let pki = TestPki::generate();
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pki.server_cert_pem.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    // A TLS server that negotiates no ALPN: the client refuses it.
    let plain_server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(plain_server));
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = raw.local_addr().unwrap().port();
    let srv = tokio::spawn(async move {
        let (tcp, _) = raw.accept().await.unwrap();
        let _ = acceptor.accept(tcp).await;
    });
    let err = Connector::new(Limits::default())
        .with_tls(pki.client_tls())
        .connect(&url(&format!("zaps://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Alpn), "{err:?}");
    srv.abort();

    // A TLS client that offers no ALPN: the listener refuses it.
    let (listener, local) = tls_listener(pki.server_tls(), Limits::default()).await;
    let mut server = serve_echo(listener);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&pki.ca_pem)).unwrap();
    let plain_client = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(format!("127.0.0.1:{}", local.port().unwrap()))
        .await
        .unwrap();
    let _client = tokio_rustls::TlsConnector::from(Arc::new(plain_client))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    let err = next_result(&mut server).await.unwrap_err();
    assert!(matches!(err, ConnectError::Alpn), "{err:?}");
}
