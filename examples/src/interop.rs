//! The gRPC interop test service (`proto/interop.proto`), served over ZAP
//! and over the gRPC fallback by the compatibility tests, as grpc/grpc's
//! interop server behaves: payloads of the sizes asked, the status asked
//! (`response_status`), `interval_us` sleeps, and the echo metadata
//! `x-grpc-test-echo-initial` (as a response header) and
//! `x-grpc-test-echo-trailing-bin` (as a trailer).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use zap::{BoxStream, Code, Metadata, Request, Response, Status, Streaming};

pub use crate::grpc_testing::*;

/// The largest payload a request may ask for.
pub const MAX_PAYLOAD: i32 = 4 << 20;

/// The interop service. Counts the calls it saw cancelled (by the client
/// or a deadline) before they finished, so tests can check cancellation
/// reached the server, and the client-streaming calls whose handler
/// started, so a test can cancel one that the server has surely begun.
#[derive(Clone, Debug, Default)]
pub struct Interop {
    cancelled: Arc<AtomicUsize>,
    client_streams: Arc<AtomicUsize>,
}

impl Interop {
    /// Calls that ended cancelled (handler dropped or its request stream
    /// failed with `CANCELLED`) so far.
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// `StreamingInputCall` handlers started so far.
    pub fn client_streams(&self) -> usize {
        self.client_streams.load(Ordering::SeqCst)
    }
}

/// Counts a call as cancelled unless marked finished first.
struct Watch {
    cancelled: Arc<AtomicUsize>,
    finished: bool,
}

impl Watch {
    fn new(i: &Interop) -> Self {
        Watch {
            cancelled: i.cancelled.clone(),
            finished: false,
        }
    }
}

impl Watch {
    /// Marks the call finished, unless it ended with `CANCELLED`.
    fn end(&mut self, cancelled: bool) {
        self.finished = !cancelled;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.finished {
            self.cancelled.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn payload(size: i32) -> Result<Option<Payload>, Status> {
    if !(0..=MAX_PAYLOAD).contains(&size) {
        return Err(Status::invalid_argument(format!("payload size {size}")));
    }
    Ok(Some(Payload {
        r#type: PayloadType::COMPRESSABLE,
        body: Bytes::from(vec![0u8; size as usize]),
    }))
}

/// The status a request asks for, if any.
fn asked(s: &Option<EchoStatus>) -> Result<(), Status> {
    match s {
        Some(s) if s.code != 0 => Err(Status::new(
            Code(s.code as u32),
            s.message.as_str().to_owned(),
        )),
        _ => Ok(()),
    }
}

/// The echo metadata of the request, onto the response.
fn echo<T>(from: &Metadata, to: &mut Response<T>) {
    if let Some(v) = from.get("x-grpc-test-echo-initial") {
        let _ = to
            .headers_mut()
            .insert("x-grpc-test-echo-initial", v.to_owned());
    }
    if let Some(v) = from.get_bin("x-grpc-test-echo-trailing-bin") {
        let _ = to
            .trailers_mut()
            .insert_bin("x-grpc-test-echo-trailing-bin", v.clone());
    }
}

fn body_len(p: &Option<Payload>) -> usize {
    p.as_ref().map_or(0, |p| p.body.len())
}

/// The responses one `StreamingOutputCallRequest` asks for.
async fn respond(
    req: &StreamingOutputCallRequest,
    out: &tokio::sync::mpsc::Sender<Result<StreamingOutputCallResponse, Status>>,
) -> Result<(), ()> {
    if let Err(s) = asked(&req.response_status) {
        let _ = out.send(Err(s)).await;
        return Err(());
    }
    for p in &req.response_parameters {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        let item = payload(p.size).map(|payload| StreamingOutputCallResponse { payload });
        let failed = item.is_err();
        if out.send(item).await.is_err() || failed {
            return Err(());
        }
    }
    Ok(())
}

fn channel_stream(
    rx: tokio::sync::mpsc::Receiver<Result<StreamingOutputCallResponse, Status>>,
) -> BoxStream<StreamingOutputCallResponse> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

impl TestService for Interop {
    async fn empty_call(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    async fn unary_call(
        &self,
        request: Request<SimpleRequest>,
    ) -> Result<Response<SimpleResponse>, Status> {
        let r = request.get_ref();
        asked(&r.response_status)?;
        let mut resp = Response::new(SimpleResponse {
            payload: payload(r.response_size)?,
            ..SimpleResponse::default()
        });
        echo(request.metadata(), &mut resp);
        Ok(resp)
    }

    async fn streaming_output_call(
        &self,
        request: Request<StreamingOutputCallRequest>,
    ) -> Result<Response<BoxStream<StreamingOutputCallResponse>>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut watch = Watch::new(self);
        let req = request.into_inner();
        tokio::spawn(async move {
            let _ = respond(&req, &tx).await;
            watch.end(false);
        });
        Ok(Response::new(channel_stream(rx)))
    }

    async fn streaming_input_call(
        &self,
        request: Request<Streaming<StreamingInputCallRequest>>,
    ) -> Result<Response<StreamingInputCallResponse>, Status> {
        let mut watch = Watch::new(self);
        self.client_streams.fetch_add(1, Ordering::SeqCst);
        let mut stream = request.into_inner();
        let mut total = 0usize;
        loop {
            match stream.message().await {
                Ok(Some(m)) => total += body_len(&m.payload),
                Ok(None) => break,
                Err(s) => {
                    watch.end(s.code() == Code::CANCELLED);
                    return Err(s);
                }
            }
        }
        watch.end(false);
        Ok(Response::new(StreamingInputCallResponse {
            aggregated_payload_size: total as i32,
        }))
    }

    async fn full_duplex_call(
        &self,
        request: Request<Streaming<StreamingOutputCallRequest>>,
    ) -> Result<Response<BoxStream<StreamingOutputCallResponse>>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let mut watch = Watch::new(self);
        let metadata = request.metadata().clone();
        let mut requests = request.into_inner();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = requests.next() => match next {
                        Some(Ok(req)) => {
                            if respond(&req, &tx).await.is_err() {
                                break;
                            }
                        }
                        Some(Err(s)) => {
                            watch.end(s.code() == Code::CANCELLED);
                            let _ = tx.send(Err(s)).await;
                            return;
                        }
                        None => break,
                    },
                    // The client went away: the response stream is gone.
                    _ = tx.closed() => return,
                }
            }
            watch.end(false);
        });
        let mut resp = Response::new(channel_stream(rx));
        echo(&metadata, &mut resp);
        Ok(resp)
    }

    async fn unimplemented_call(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<Empty>, Status> {
        Err(Status::unimplemented(
            "UnimplementedCall is not implemented",
        ))
    }
}
