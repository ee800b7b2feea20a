//! The compatibility suite (issue #5): gRPC's interop cases
//! (grpc/grpc `doc/interop-test-descriptions.md`) run against one server
//! that serves ZAP and gRPC on one port, over three wires:
//!
//! - `zap`: the generated client over a ZAP `Channel`;
//! - `grpc`: the same client over a `GrpcChannel` (tonic, HTTP/2,
//!   protobuf messages converted by the generated tables);
//! - `grpc+zap`: over a `GrpcChannel` with ZAP messages.
//!
//! Each case checks its expected result and returns what it observed; the
//! observations must be the same on every wire. tonic's own generated
//! client (tonic-prost-build) calls the fallback too, and the one-port
//! tests check plaintext sniffing and ALPN under TLS.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tokio::sync::mpsc;
use zap::grpc::GrpcChannel;
use zap::transport::test_certs::TestPki;
use zap::transport::{Limits, Listener, Url};
use zap::{CallChannel, Channel, Code, Request, Router, Server, Status};
use zap_examples::chain::ChainVm;
use zap_examples::interop::*;
use zap_examples::vm::VMServer;

type Boxed<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

struct Fixture {
    url: Url,
    port: u16,
    interop: Interop,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn serve(tls: Option<&TestPki>) -> Fixture {
    let interop = Interop::default();
    let router = Router::new()
        .add_service(TestServiceServer::new(interop.clone()))
        .and_then(|r| r.add_service(VMServer::new(ChainVm::new())))
        .expect("routes");
    let (url, server_tls) = match tls {
        None => ("zap://127.0.0.1:0", None),
        Some(pki) => ("zaps://127.0.0.1:0", Some(pki.server_tls().with_h2())),
    };
    let url = Url::parse(url).expect("url");
    let listener = Listener::bind(&url, server_tls, Limits::default())
        .await
        .expect("bind");
    let url = listener.local_url();
    let port = url.port().expect("port");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::builder().grpc(router.protobuf());
    tokio::spawn(async move {
        server
            .serve_with_shutdown(listener, router, async {
                let _ = stopped.await;
            })
            .await
            .expect("serve");
    });
    Fixture {
        url,
        port,
        interop,
        _stop: stop,
    }
}

async fn tonic_channel(port: u16) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

fn zeros(n: usize) -> Option<Payload> {
    Some(Payload {
        r#type: PayloadType::COMPRESSABLE,
        body: Bytes::from(vec![0u8; n]),
    })
}

fn len(p: &Option<Payload>) -> usize {
    p.as_ref().map_or(0, |p| p.body.len())
}

fn params(sizes: &[i32]) -> Vec<ResponseParameters> {
    sizes
        .iter()
        .map(|&size| ResponseParameters {
            size,
            interval_us: 0,
        })
        .collect()
}

/// A request stream the test feeds by hand.
fn feed<T: Send + 'static>() -> (mpsc::Sender<T>, Boxed<T>) {
    let (tx, rx) = mpsc::channel(4);
    let s =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    (tx, Box::pin(s))
}

fn code_of<T>(r: &Result<T, Status>) -> String {
    match r {
        Ok(_) => "OK".to_owned(),
        Err(s) => format!("{:?}: {}", s.code(), s.message()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Waits (at most 10 s) until `count` reaches `n`.
async fn wait_for(what: &str, count: impl Fn() -> usize, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while count() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not see {what} ({} of {n})",
            count()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the server saw `n` calls cancelled.
async fn server_saw_cancelled(interop: &Interop, n: usize) {
    wait_for("the cancellation", || interop.cancelled(), n).await;
}

/// Waits until the server started `n` client-streaming handlers.
async fn server_started_client_streams(interop: &Interop, n: usize) {
    wait_for("the call begin", || interop.client_streams(), n).await;
}

/// Sends one full-duplex request of `req` bytes asking for `resp` bytes;
/// the size of the response that comes back.
async fn ping(
    tx: &mpsc::Sender<StreamingOutputCallRequest>,
    responses: &mut zap::Streaming<StreamingOutputCallResponse>,
    req: usize,
    resp: i32,
) -> usize {
    tx.send(StreamingOutputCallRequest {
        response_parameters: params(&[resp]),
        payload: zeros(req),
        ..StreamingOutputCallRequest::default()
    })
    .await
    .expect("send");
    let m = responses
        .message()
        .await
        .expect("pong")
        .expect("a response");
    len(&m.payload)
}

const SPECIAL: &str =
    "\t\ntest with whitespace\r\nand Unicode BMP \u{263a} and non-BMP \u{1f608}\t\n";

/// The custom_metadata request metadata: an initial value and a binary
/// trailing value for the server to echo back.
fn ask_for_echo(md: &mut zap::Metadata) {
    md.insert("x-grpc-test-echo-initial", "test_initial_metadata_value")
        .expect("ascii");
    md.insert_bin(
        "x-grpc-test-echo-trailing-bin",
        Bytes::from_static(&[0xab, 0xab, 0xab]),
    )
    .expect("bin");
}

/// Runs every case on `channel`; returns what each observed.
async fn run_cases<C: CallChannel>(channel: C, interop: &Interop) -> Vec<(String, String)> {
    let client = TestServiceClient::new(channel.clone());
    let mut seen = Vec::new();
    let mut note = |case: &str, what: String| seen.push((case.to_owned(), what));

    // empty_unary
    let r = client.empty_call(Empty {}).await.expect("empty_unary");
    assert_eq!(r.get_ref(), &Empty {});
    note("empty_unary", "OK".into());

    // large_unary
    let r = client
        .unary_call(SimpleRequest {
            response_size: 314_159,
            payload: zeros(271_828),
            ..SimpleRequest::default()
        })
        .await
        .expect("large_unary");
    assert_eq!(len(&r.get_ref().payload), 314_159);
    note("large_unary", len(&r.get_ref().payload).to_string());

    // client_streaming
    let requests: Vec<_> = [27_182, 8, 1_828, 45_904]
        .iter()
        .map(|&n| StreamingInputCallRequest { payload: zeros(n) })
        .collect();
    let r = client
        .streaming_input_call(futures_util::stream::iter(requests))
        .await
        .expect("client_streaming");
    assert_eq!(r.get_ref().aggregated_payload_size, 74_922);
    note(
        "client_streaming",
        r.get_ref().aggregated_payload_size.to_string(),
    );

    // server_streaming
    let sizes = [31_415, 9, 2_653, 58_979];
    let r = client
        .streaming_output_call(StreamingOutputCallRequest {
            response_parameters: params(&sizes),
            ..StreamingOutputCallRequest::default()
        })
        .await
        .expect("server_streaming");
    let got: Vec<usize> = r
        .into_inner()
        .map(|m| len(&m.expect("message").payload))
        .collect()
        .await;
    assert_eq!(got, sizes.map(|s| s as usize));
    note("server_streaming", format!("{got:?}"));

    // ping_pong
    let (tx, requests) = feed();
    let mut responses = client
        .full_duplex_call(requests)
        .await
        .expect("ping_pong")
        .into_inner();
    let mut got = Vec::new();
    for (req, resp) in [(27_182, 31_415), (8, 9), (1_828, 2_653), (45_904, 58_979)] {
        got.push(ping(&tx, &mut responses, req, resp).await);
    }
    drop(tx);
    assert!(responses.message().await.expect("end").is_none());
    assert_eq!(got, [31_415, 9, 2_653, 58_979]);
    note("ping_pong", format!("{got:?}"));

    // empty_stream
    let r = client
        .full_duplex_call(futures_util::stream::empty())
        .await
        .expect("empty_stream");
    let mut s = r.into_inner();
    assert!(s.message().await.expect("empty_stream end").is_none());
    note("empty_stream", "0 responses".into());

    // custom_metadata, unary and bidirectional
    let mut req = Request::new(SimpleRequest {
        response_size: 314_159,
        payload: zeros(271_828),
        ..SimpleRequest::default()
    });
    ask_for_echo(req.metadata_mut());
    let r = client.unary_call(req).await.expect("custom_metadata");
    let initial = r
        .headers()
        .get("x-grpc-test-echo-initial")
        .map(str::to_owned);
    let trailing = r
        .trailers()
        .get_bin("x-grpc-test-echo-trailing-bin")
        .cloned();
    assert_eq!(initial.as_deref(), Some("test_initial_metadata_value"));
    assert_eq!(trailing.as_deref(), Some(&[0xab, 0xab, 0xab][..]));
    let mut req: Request<Boxed<_>> = Request::new(Box::pin(futures_util::stream::iter([
        StreamingOutputCallRequest {
            response_parameters: params(&[314_159]),
            payload: zeros(271_828),
            ..StreamingOutputCallRequest::default()
        },
    ])));
    ask_for_echo(req.metadata_mut());
    let r = client
        .full_duplex_call::<Boxed<_>>(req)
        .await
        .expect("custom_metadata bidi");
    assert_eq!(
        r.headers().get("x-grpc-test-echo-initial"),
        Some("test_initial_metadata_value")
    );
    let mut s = r.into_inner();
    while s.message().await.expect("bidi message").is_some() {}
    assert_eq!(
        s.trailers()
            .and_then(|t| t.get_bin("x-grpc-test-echo-trailing-bin"))
            .map(|b| b.to_vec()),
        Some(vec![0xab, 0xab, 0xab])
    );
    note(
        "custom_metadata",
        format!(
            "{} {}",
            initial.unwrap_or_default(),
            hex(&trailing.unwrap_or_default())
        ),
    );

    // status_code_and_message, special_status_message
    for (case, message) in [
        ("status_code_and_message", "test status message"),
        ("special_status_message", SPECIAL),
    ] {
        let status = || {
            Some(EchoStatus {
                code: 2,
                message: message.into(),
            })
        };
        let r = client
            .unary_call(SimpleRequest {
                response_status: status(),
                ..SimpleRequest::default()
            })
            .await;
        let unary = code_of(&r);
        assert_eq!(unary, format!("{:?}: {message}", Code::UNKNOWN), "{case}");
        let r = client
            .full_duplex_call(futures_util::stream::iter([StreamingOutputCallRequest {
                response_status: status(),
                ..StreamingOutputCallRequest::default()
            }]))
            .await;
        let bidi = match r {
            Err(s) => code_of::<()>(&Err(s)),
            Ok(r) => {
                let mut s = r.into_inner();
                code_of(&s.message().await)
            }
        };
        assert_eq!(bidi, unary, "{case} (bidi)");
        note(case, unary);
    }

    // unimplemented_method
    let r = client.unimplemented_call(Empty {}).await;
    assert_eq!(
        r.as_ref().err().map(Status::code),
        Some(Code::UNIMPLEMENTED)
    );
    note("unimplemented_method", format!("{:?}", Code::UNIMPLEMENTED));

    // unimplemented_service
    let other = UnimplementedServiceClient::new(channel.clone());
    let r = other.unimplemented_call(Empty {}).await;
    assert_eq!(
        r.as_ref().err().map(Status::code),
        Some(Code::UNIMPLEMENTED)
    );
    note(
        "unimplemented_service",
        format!("{:?}", Code::UNIMPLEMENTED),
    );

    // cancel_after_begin: the client gives up on a client stream before
    // sending anything, once the server's handler has started (so the
    // check does not race the request's way there); the handler sees the
    // cancellation.
    let before = interop.cancelled();
    let started = interop.client_streams();
    let (tx, requests) = feed::<StreamingInputCallRequest>();
    let call = client.streaming_input_call(requests);
    let begun = server_started_client_streams(interop, started + 1);
    tokio::select! {
        r = call => panic!("the call cannot end before the client does: {r:?}"),
        () = begun => {}
    }
    drop(tx);
    server_saw_cancelled(interop, before + 1).await;
    note("cancel_after_begin", "server saw CANCELLED".into());

    // cancel_after_first_response
    let before = interop.cancelled();
    let (tx, requests) = feed();
    let mut responses = client
        .full_duplex_call(requests)
        .await
        .expect("cancel_after_first_response")
        .into_inner();
    assert_eq!(ping(&tx, &mut responses, 27_182, 31_415).await, 31_415);
    drop(responses);
    drop(tx);
    server_saw_cancelled(interop, before + 1).await;
    note("cancel_after_first_response", "server saw CANCELLED".into());

    // timeout_on_sleeping_server: 1 ms for a server that sleeps 1 s.
    let mut req: Request<Boxed<_>> = Request::new(Box::pin(futures_util::stream::iter([
        StreamingOutputCallRequest {
            response_parameters: vec![ResponseParameters {
                size: 31_415,
                interval_us: 1_000_000,
            }],
            payload: zeros(27_182),
            ..StreamingOutputCallRequest::default()
        },
    ])));
    req.set_timeout(Duration::from_millis(1));
    let code = match client.full_duplex_call::<Boxed<_>>(req).await {
        Err(s) => s.code(),
        Ok(r) => match r.into_inner().message().await {
            Err(s) => s.code(),
            Ok(m) => panic!("timeout_on_sleeping_server: got {m:?}"),
        },
    };
    assert_eq!(code, Code::DEADLINE_EXCEEDED);
    note("timeout_on_sleeping_server", format!("{code:?}"));

    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interop_cases_agree_on_zap_grpc_and_grpc_zap() {
    let f = serve(None).await;
    let zap = Channel::builder(f.url.clone()).connect_lazy();
    let on_zap = run_cases(zap, &f.interop).await;
    let grpc = GrpcChannel::protobuf(
        tonic_channel(f.port).await,
        test_service_protobuf().merge(&unimplemented_service_protobuf()),
    );
    let on_grpc = run_cases(grpc, &f.interop).await;
    let on_grpc_zap = run_cases(GrpcChannel::zap(tonic_channel(f.port).await), &f.interop).await;
    assert_eq!(on_zap.len(), 14);
    assert_eq!(on_zap, on_grpc, "ZAP and gRPC (protobuf) differ");
    assert_eq!(on_zap, on_grpc_zap, "ZAP and gRPC (ZAP messages) differ");
}

/// A tonic channel over TLS 1.3 (the test CA, ALPN `h2`) to `port`.
async fn tonic_tls_channel(pki: &TestPki, port: u16) -> tonic::transport::Channel {
    let mut config = (*pki.client_tls().config()).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let connector = connector.clone();
        async move {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            let tls = connector.connect(name, tcp).await?;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
        }
    });
    tonic::transport::Endpoint::from_shared(format!("https://localhost:{port}"))
        .expect("endpoint")
        .connect_with_connector(connect)
        .await
        .expect("connect over TLS")
}

/// One call each way, to tell the wires apart in the one-port tests.
async fn both_answer<C: CallChannel, D: CallChannel>(zap: C, grpc: D) {
    let r = TestServiceClient::new(zap)
        .unary_call(SimpleRequest {
            response_size: 10,
            ..SimpleRequest::default()
        })
        .await
        .expect("ZAP call");
    assert_eq!(len(&r.get_ref().payload), 10);
    let r = TestServiceClient::new(grpc)
        .unary_call(SimpleRequest {
            response_size: 20,
            ..SimpleRequest::default()
        })
        .await
        .expect("gRPC call");
    assert_eq!(len(&r.get_ref().payload), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_zap_and_grpc_over_plaintext() {
    let f = serve(None).await;
    let zap = Channel::builder(f.url.clone()).connect_lazy();
    let grpc = GrpcChannel::protobuf(tonic_channel(f.port).await, test_service_protobuf());
    both_answer(zap, grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_port_serves_zap_and_grpc_over_tls_by_alpn() {
    let pki = TestPki::generate();
    let f = serve(Some(&pki)).await;
    assert_eq!(f.url.scheme(), zap::transport::Scheme::Tls);
    let zap = Channel::builder(f.url.clone())
        .tls(pki.client_tls())
        .connect_lazy();
    let grpc = GrpcChannel::protobuf(
        tonic_tls_channel(&pki, f.port).await,
        test_service_protobuf(),
    );
    both_answer(zap, grpc).await;
}

/// tonic's own generated client (tonic-prost-build), not ours, calls the
/// fallback: standard protobuf, status codes, metadata, deadlines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tonic_generated_client_calls_the_fallback() {
    use zap_examples::tonic_clients::grpc_testing as t;
    let f = serve(None).await;
    let mut c = t::test_service_client::TestServiceClient::new(tonic_channel(f.port).await);
    c.empty_call(t::Empty {}).await.expect("empty_unary");

    let mut req = tonic::Request::new(t::SimpleRequest {
        response_size: 314_159,
        payload: Some(t::Payload {
            r#type: 0,
            body: vec![0; 271_828],
        }),
        ..Default::default()
    });
    req.metadata_mut().insert(
        "x-grpc-test-echo-initial",
        "test_initial_metadata_value".parse().expect("ascii"),
    );
    req.metadata_mut().insert_bin(
        "x-grpc-test-echo-trailing-bin",
        tonic::metadata::MetadataValue::from_bytes(&[0xab, 0xab, 0xab]),
    );
    let r = c.unary_call(req).await.expect("large_unary");
    assert_eq!(
        r.metadata()
            .get("x-grpc-test-echo-initial")
            .map(|v| v.to_str().expect("ascii")),
        Some("test_initial_metadata_value")
    );
    assert_eq!(
        r.get_ref().payload.as_ref().map(|p| p.body.len()),
        Some(314_159)
    );

    let r = c
        .streaming_output_call(t::StreamingOutputCallRequest {
            response_parameters: [31_415, 9, 2_653, 58_979]
                .iter()
                .map(|&size| t::ResponseParameters {
                    size,
                    interval_us: 0,
                })
                .collect(),
            ..Default::default()
        })
        .await
        .expect("server_streaming");
    let mut s = r.into_inner();
    let mut sizes = Vec::new();
    while let Some(m) = s.message().await.expect("message") {
        sizes.push(m.payload.map_or(0, |p| p.body.len()));
    }
    assert_eq!(sizes, [31_415, 9, 2_653, 58_979]);

    let e = c
        .unary_call(t::SimpleRequest {
            response_status: Some(t::EchoStatus {
                code: 2,
                message: SPECIAL.into(),
            }),
            ..Default::default()
        })
        .await
        .expect_err("status");
    assert_eq!((e.code(), e.message()), (tonic::Code::Unknown, SPECIAL));

    let e = c
        .unimplemented_call(t::Empty {})
        .await
        .expect_err("unimplemented");
    assert_eq!(e.code(), tonic::Code::Unimplemented);

    // A deadline the server cannot meet: DEADLINE_EXCEEDED from the server
    // (tonic itself does not enforce grpc-timeout on the client).
    let mut req = tonic::Request::new(futures_util::stream::iter([
        t::StreamingOutputCallRequest {
            response_parameters: vec![t::ResponseParameters {
                size: 1,
                interval_us: 1_000_000,
            }],
            ..Default::default()
        },
    ]));
    req.set_timeout(Duration::from_millis(20));
    let code = match c.full_duplex_call(req).await {
        Err(e) => e.code(),
        Ok(r) => r.into_inner().message().await.expect_err("deadline").code(),
    };
    assert_eq!(code, tonic::Code::DeadlineExceeded);
}

/// The Python interpreter of the grpcio virtualenv `.ci/grpcio-venv` makes
/// (`ZAP_GRPCIO_VENV`, relative to the workspace root, or
/// `target/grpcio-venv`).
fn grpcio_python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = std::env::var_os("ZAP_GRPCIO_VENV")
        .map_or_else(|| root.join("target/grpcio-venv"), |v| root.join(v));
    let python = venv.join("bin/python");
    assert!(
        python.exists(),
        "no grpcio virtualenv at {}: run .ci/grpcio-venv first",
        venv.display()
    );
    python
}

/// Tells the grpcio client to go on.
async fn answer(stdin: &mut tokio::process::ChildStdin) {
    use tokio::io::AsyncWriteExt;
    stdin.write_all(b"ok\n").await.expect("answer");
    stdin.flush().await.expect("answer");
}

/// A real external client: Python grpcio (PyPI), with stubs generated by
/// grpcio-tools when the script starts, runs the interop cases and the
/// vm.proto service against the fallback. Its interop observations must be
/// the ZAP client's; for the cancellation cases the script waits until the
/// test has seen the server's handler cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_client_calls_the_fallback() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let python = grpcio_python();
    let f = serve(None).await;
    let on_zap = run_cases(Channel::builder(f.url.clone()).connect_lazy(), &f.interop).await;

    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("zap-grpcio-stubs-{}", std::process::id()));
    let mut child = tokio::process::Command::new(&python)
        .arg(root.join("python/interop_client.py"))
        .arg("--port")
        .arg(f.port.to_string())
        .arg("--proto-dir")
        .arg(root.join("../proto"))
        .arg("--out")
        .arg(&out)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the grpcio client");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut stderr = child.stderr.take().expect("stderr");
    let stderr = tokio::spawn(async move {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s).await;
        s
    });

    let drive = async {
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut before = 0;
        let mut started = 0;
        let mut done = false;
        while let Some(line) = lines.next_line().await.expect("read the client's output") {
            let v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("bad line from the client ({e}): {line}"));
            let text = |k: &str| v.get(k).and_then(|s| s.as_str()).map(str::to_owned);
            if let (Some(case), Some(what)) = (text("case"), text("seen")) {
                seen.push((case, what));
            } else if text("begin").is_some() {
                before = f.interop.cancelled();
                started = f.interop.client_streams();
                answer(&mut stdin).await;
            } else if text("started").is_some() {
                server_started_client_streams(&f.interop, started + 1).await;
                answer(&mut stdin).await;
            } else if text("sync").is_some() {
                server_saw_cancelled(&f.interop, before + 1).await;
                answer(&mut stdin).await;
            } else if v.get("done").is_some() {
                done = true;
            } else {
                panic!("unexpected line from the client: {line}");
            }
        }
        (seen, done)
    };
    let (seen, done) = tokio::time::timeout(Duration::from_secs(120), drive)
        .await
        .expect("the grpcio client finished in time");
    let status = child.wait().await.expect("wait for the client");
    let stderr = stderr.await.expect("stderr");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        status.success() && done,
        "grpcio client failed ({status}):\n{stderr}"
    );

    let (interop, vm): (Vec<_>, Vec<_>) =
        seen.into_iter().partition(|(c, _)| !c.starts_with("vm."));
    assert_eq!(
        interop, on_zap,
        "Python grpcio and ZAP observed different results"
    );
    let vm: Vec<&str> = vm.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        vm,
        [
            "vm.build_block_before_initialize",
            "vm.initialize",
            "vm.initialize_twice",
            "vm.set_state",
            "vm.wait_for_event",
            "vm.build_verify_accept",
            "vm.get_block_id_at_height",
            "vm.get_block_bad_id",
            "vm.parse_block_short",
            "vm.get_ancestors",
            "vm.batched_parse_block_bad_item",
            "vm.health",
            "vm.version",
            "vm.build_block_after_shutdown",
        ]
    );
}
