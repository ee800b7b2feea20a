//! QUIC over real loopback UDP: stream echo, certificate checks, mTLS,
//! pinning, connection limits and datagrams.

#![cfg(feature = "quic")]
// `allow-unwrap-in-tests` covers `#[test]` functions only, not the helpers here.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio::time::timeout;
use zap_transport::quic::{DatagramError, QuicConnectionError, QuicConnector, QuicListener};
use zap_transport::test_certs::TestPki;
use zap_transport::{
    ALPN, ClientTls, ConnectError, Connector, Limits, Listener, PeerInfo, ServerTls, Url,
    certificate_sha256,
};

/// Generous bound for anything that should "complete".
const PATIENCE: Duration = Duration::from_secs(10);

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

async fn bind(tls: ServerTls, limits: Limits) -> Arc<QuicListener> {
    Arc::new(
        QuicListener::bind(&url("zap+quic://127.0.0.1:0"), tls, limits)
            .await
            .unwrap(),
    )
}

/// Accepts forever; reports every handshake result; echoes every
/// bidirectional stream (read all, write it back, finish) and every
/// datagram.
fn serve_echo(
    listener: Arc<QuicListener>,
) -> mpsc::UnboundedReceiver<Result<PeerInfo, ConnectError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(incoming) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let conn = match incoming.handshake().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(conn.peer.clone()));
                let (c, _peer, guard) = conn.into_parts();
                let dc = c.clone();
                tokio::spawn(async move {
                    while let Ok(d) = dc.read_datagram().await {
                        let _ = dc.send_datagram(d);
                    }
                });
                while let Ok((mut send, mut recv)) = c.accept_bi().await {
                    tokio::spawn(async move {
                        let Ok(body) = recv.read_to_end(16 << 20).await else {
                            return;
                        };
                        let _ = send.write_all(&body).await;
                        let _ = send.finish();
                        // Hold the stream until the peer has read it all.
                        let _ = send.stopped().await;
                    });
                }
                drop(guard);
            });
        }
    });
    rx
}

async fn echo_once(conn: &quinn::Connection, body: &[u8]) -> Vec<u8> {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(body).await.unwrap();
    send.finish().unwrap();
    recv.read_to_end(16 << 20).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_echo_and_the_peer_is_verified() {
    let pki = TestPki::generate();
    let listener = bind(pki.server_tls(), Limits::default()).await;
    let addr = listener.local_url();
    assert_eq!(addr.scheme(), zap_transport::Scheme::Quic);
    assert!(addr.to_string().starts_with("zap+quic://127.0.0.1:"));
    let mut seen = serve_echo(listener);

    let connector = QuicConnector::new(Limits::default(), pki.client_tls()).unwrap();
    let conn = timeout(PATIENCE, connector.connect(&addr))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.peer.alpn.as_deref(), Some(ALPN));
    assert_eq!(conn.peer.server_name.as_deref(), Some("127.0.0.1"));
    assert!(conn.peer.peer_certificate().is_some());
    let server_side = seen.recv().await.unwrap().unwrap();
    assert!(server_side.peer_certificate().is_none(), "no client cert");
    assert_eq!(server_side.alpn.as_deref(), Some(ALPN));

    // Several calls at once, each on its own stream and task.
    let bodies: Vec<Vec<u8>> = (0..16u8).map(|i| vec![i; 1000 * i as usize]).collect();
    let tasks: Vec<_> = bodies
        .iter()
        .map(|b| {
            let (c, b) = (conn.connection.clone(), b.clone());
            tokio::spawn(async move { echo_once(&c, &b).await })
        })
        .collect();
    let mut echoes = Vec::new();
    for t in tasks {
        echoes.push(timeout(PATIENCE, t).await.unwrap().unwrap());
    }
    assert_eq!(echoes, bodies);
}

#[tokio::test]
async fn untrusted_server_and_wrong_hostname_are_rejected() {
    let pki = TestPki::generate();
    let listener = bind(pki.server_tls(), Limits::default()).await;
    let addr = listener.local_url();
    let _seen = serve_echo(listener);

    // Trusting another CA.
    let other = ClientTls::with_roots_pem(pki.other_ca_pem.as_bytes()).unwrap();
    let err = QuicConnector::new(Limits::default(), other)
        .unwrap()
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Tls(_)), "{err:?}");

    // Right CA, name not in the certificate.
    let wrong = pki.client_tls().with_server_name("other.example").unwrap();
    let err = QuicConnector::new(Limits::default(), wrong)
        .unwrap()
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::Tls(_)), "{err:?}");
    assert!(err.to_string().contains("TLS handshake failed"), "{err}");
}

#[tokio::test]
async fn required_mtls_refuses_anonymous_clients_and_sees_the_identity() {
    let pki = TestPki::generate();
    let tls = ServerTls::with_client_auth(
        pki.server_cert_pem.as_bytes(),
        pki.server_key_pem.as_bytes(),
        pki.ca_pem.as_bytes(),
        true,
    )
    .unwrap();
    let listener = bind(tls, Limits::default()).await;
    let addr = listener.local_url();
    let mut seen = serve_echo(listener);

    // No certificate: the server refuses. In TLS 1.3 the client may finish
    // its side first; the refusal then arrives on first use.
    let anonymous = QuicConnector::new(Limits::default(), pki.client_tls()).unwrap();
    match anonymous.connect(&addr).await {
        Err(e) => assert!(matches!(e, ConnectError::Tls(_)), "{e:?}"),
        Ok(conn) => {
            let res = timeout(PATIENCE, async {
                let (mut s, mut r) = conn.connection.open_bi().await?;
                s.write_all(b"x").await?;
                s.finish()?;
                r.read_to_end(10).await?;
                Ok::<_, Box<dyn std::error::Error>>(())
            })
            .await
            .unwrap();
            assert!(res.is_err(), "an anonymous client was served");
        }
    }
    assert!(seen.recv().await.unwrap().is_err());

    // A certificate from another CA is refused too.
    let other = pki
        .client_tls()
        .with_identity(
            pki.other_client_cert_pem.as_bytes(),
            pki.other_client_key_pem.as_bytes(),
        )
        .unwrap();
    let _ = QuicConnector::new(Limits::default(), other)
        .unwrap()
        .connect(&addr)
        .await;
    assert!(seen.recv().await.unwrap().is_err());

    // Signed by the CA: accepted, and the server sees who it is.
    let good = pki
        .client_tls()
        .with_identity(
            pki.client_cert_pem.as_bytes(),
            pki.client_key_pem.as_bytes(),
        )
        .unwrap();
    let conn = QuicConnector::new(Limits::default(), good)
        .unwrap()
        .connect(&addr)
        .await
        .unwrap();
    assert_eq!(echo_once(&conn.connection, b"hi").await, b"hi");
    let peer = seen.recv().await.unwrap().unwrap();
    let expected = CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap();
    assert_eq!(peer.peer_certificate(), Some(&expected));
}

#[tokio::test]
async fn pinning_accepts_the_pinned_certificate_only() {
    let pki = TestPki::generate();
    let listener = bind(pki.server_tls(), Limits::default()).await;
    let addr = listener.local_url();
    let _seen = serve_echo(listener);
    let server_cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap();
    let pin = certificate_sha256(&server_cert);

    let pinned = pki.client_tls().with_pinned_sha256([[0; 32], pin]);
    let conn = QuicConnector::new(Limits::default(), pinned)
        .unwrap()
        .connect(&addr)
        .await
        .unwrap();
    assert_eq!(echo_once(&conn.connection, b"ok").await, b"ok");

    let mut other = pin;
    other[0] ^= 1;
    let wrong = pki.client_tls().with_pinned_sha256([other]);
    let err = QuicConnector::new(Limits::default(), wrong)
        .unwrap()
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::PinMismatch), "{err:?}");
}

#[tokio::test]
async fn pinning_applies_to_tls_over_tcp_too() {
    let pki = TestPki::generate();
    let listener = Listener::bind(
        &url("zaps://127.0.0.1:0"),
        Some(pki.server_tls()),
        Limits::default(),
    )
    .await
    .unwrap();
    let addr = listener.local_url();
    tokio::spawn(async move {
        while let Ok(incoming) = listener.accept().await {
            tokio::spawn(async move {
                let conn = incoming.handshake().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                drop(conn);
            });
        }
    });
    let mut other = [7; 32];
    other[0] = 1;
    let err = Connector::new(Limits::default())
        .with_tls(pki.client_tls().with_pinned_sha256([other]))
        .connect(&addr)
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectError::PinMismatch), "{err:?}");
    let server_cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes()).unwrap();
    Connector::new(Limits::default())
        .with_tls(
            pki.client_tls()
                .with_pinned_sha256([certificate_sha256(&server_cert)]),
        )
        .connect(&addr)
        .await
        .unwrap();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_refused_not_queued() {
    let pki = TestPki::generate();
    let listener = bind(pki.server_tls(), Limits::default().with_max_connections(1)).await;
    let addr = listener.local_url();
    let _seen = serve_echo(Arc::clone(&listener));
    let connector = QuicConnector::new(Limits::default(), pki.client_tls()).unwrap();
    let first = connector.connect(&addr).await.unwrap();
    assert_eq!(echo_once(&first.connection, b"1").await, b"1");

    let err = timeout(PATIENCE, connector.connect(&addr))
        .await
        .expect("a refusal, not a hang")
        .unwrap_err();
    assert!(err.to_string().contains("refused"), "{err}");
    assert_eq!(listener.refused_connections(), 1);

    // The slot comes back when the first connection ends.
    first.connection.close(0u32.into(), b"done");
    drop(first);
    let again = timeout(PATIENCE, async {
        loop {
            if let Ok(c) = connector.connect(&addr).await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(echo_once(&again.connection, b"2").await, b"2");
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_the_idle_timeout() {
    let pki = TestPki::generate();
    let limits = Limits::default()
        .with_keepalive_interval(None)
        .with_idle_timeout(Some(Duration::from_millis(300)));
    let listener = bind(pki.server_tls(), limits.clone()).await;
    let addr = listener.local_url();
    let _seen = serve_echo(listener);
    // The client keeps no keepalive either: after 300 ms of silence the
    // connection is gone on both sides.
    let conn = QuicConnector::new(limits, pki.client_tls())
        .unwrap()
        .connect(&addr)
        .await
        .unwrap();
    let closed = timeout(PATIENCE, conn.connection.closed()).await.unwrap();
    assert!(
        matches!(closed, QuicConnectionError::TimedOut),
        "{closed:?}"
    );
}

#[tokio::test]
async fn datagrams_round_trip_and_oversize_is_a_clear_error() {
    let pki = TestPki::generate();
    let listener = bind(pki.server_tls(), Limits::default()).await;
    let addr = listener.local_url();
    let _seen = serve_echo(listener);
    let conn = QuicConnector::new(Limits::default(), pki.client_tls())
        .unwrap()
        .connect(&addr)
        .await
        .unwrap();
    let max = conn.max_datagram_size().expect("datagrams enabled");
    assert!(max > 1000, "{max}");

    // Unreliable, but loopback without load does not drop: retry a few
    // times rather than assume.
    let got = timeout(PATIENCE, async {
        loop {
            conn.send_datagram(Bytes::from_static(b"vote")).unwrap();
            if let Ok(Ok(d)) = timeout(Duration::from_millis(200), conn.read_datagram()).await {
                return d;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(&got[..], b"vote");

    // Beyond any UDP payload, whatever the path MTU has grown to by now
    // (MTU discovery raises the maximum during the connection).
    let err = conn
        .send_datagram(Bytes::from(vec![0; 65_536]))
        .unwrap_err();
    match &err {
        DatagramError::TooLarge { size, max: m } => {
            assert_eq!(*size, 65_536);
            assert!(*m >= max && *m < 65_536, "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("exceeds"), "{err}");
    // The largest allowed size goes out.
    let max = conn.max_datagram_size().unwrap();
    conn.send_datagram(Bytes::from(vec![1; max])).unwrap();
}

#[tokio::test]
async fn wrong_shapes_are_clear_errors() {
    let pki = TestPki::generate();
    let err = Connector::new(Limits::default())
        .connect(&url("zap+quic://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("QuicConnector"), "{err}");
    let err = Listener::bind(&url("zap+quic://127.0.0.1:0"), None, Limits::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("QuicListener"), "{err}");
    let err = QuicListener::bind(
        &url("zaps://127.0.0.1:0"),
        pki.server_tls(),
        Limits::default(),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("zap+quic"), "{err}");
    let err = QuicConnector::new(Limits::default(), pki.client_tls())
        .unwrap()
        .connect(&url("zap://127.0.0.1:1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("zap+quic"), "{err}");
}
