//! Whole-protocol tests on two state machines wired back to back in
//! memory, with a virtual clock. Every frame kind and every error path.

#![allow(clippy::field_reassign_with_default)]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::frame::setting;
use super::*;
use crate::metadata::Metadata;
use crate::status::Code;

struct Pair {
    client: Connection,
    server: Connection,
    now: Instant,
    /// Frames written by each side, counted when moved (after the handshake).
    c2s_frames: usize,
    s2c_frames: usize,
    c2s: BytesMut,
    s2c: BytesMut,
}

fn count_frames(mut b: &[u8], skip_preface: bool) -> usize {
    if skip_preface && b.starts_with(&PREFACE) {
        b = &b[8..];
    }
    let mut n = 0;
    while b.len() >= FRAME_HEADER_LEN {
        let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
        b = &b[(FRAME_HEADER_LEN + len).min(b.len())..];
        n += 1;
    }
    n
}

impl Pair {
    fn new() -> Pair {
        Pair::with(Config::default(), Config::default())
    }

    fn with(c: Config, s: Config) -> Pair {
        let now = Instant::now();
        let mut p = Pair {
            client: Connection::client(c, now),
            server: Connection::server(s, now),
            now,
            c2s_frames: 0,
            s2c_frames: 0,
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
        };
        p.drive();
        p.c2s_frames = 0;
        p.s2c_frames = 0;
        p
    }

    /// Everything `conn` has to write, written (reported with `wrote`).
    fn out(conn: &mut Connection) -> Vec<u8> {
        let mut chunks = Vec::new();
        conn.poll_transmit(&mut chunks);
        let all = chunks.concat();
        conn.wrote(all.len());
        all
    }

    /// Moves bytes both ways until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let c = Self::out(&mut self.client);
            let s = Self::out(&mut self.server);
            if c.is_empty() && s.is_empty() {
                return;
            }
            self.c2s_frames += count_frames(&c, true);
            self.s2c_frames += count_frames(&s, false);
            self.c2s.extend_from_slice(&c);
            self.s2c.extend_from_slice(&s);
            self.server.handle_input(&mut self.c2s, self.now);
            self.client.handle_input(&mut self.s2c, self.now);
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drive();
    }

    fn client_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    fn server_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    /// Sends raw bytes to the server, as a hostile client would.
    fn raw_to_server(&mut self, bytes: &[u8]) {
        self.c2s.extend_from_slice(bytes);
        self.server.handle_input(&mut self.c2s, self.now);
    }
}

fn head(method: &str) -> OpenHead {
    OpenHead {
        method: Bytes::copy_from_slice(method.as_bytes()),
        timeout: None,
        metadata: Metadata::new(),
    }
}

fn ok() -> CloseHead {
    close_head(Code::OK, "")
}

fn raw(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_le_bytes().to_vec();
    v.push(kind);
    v.push(flags);
    v.extend_from_slice(&stream.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn open_payload(method: &str, metadata_block: &[u8]) -> Vec<u8> {
    let mut p = (method.len() as u16).to_le_bytes().to_vec();
    p.extend_from_slice(method.as_bytes());
    p.extend_from_slice(&0u64.to_le_bytes());
    p.extend_from_slice(&(metadata_block.len() as u32).to_le_bytes());
    p.extend_from_slice(metadata_block);
    p
}

fn closed_reason(events: &[Event]) -> Option<Reason> {
    events.iter().find_map(|e| match e {
        Event::Closed(err) => Some(err.reason),
        _ => None,
    })
}

#[test]
fn handshake_exchanges_settings() {
    let mut s = Config::default();
    s.settings.max_concurrent_streams = 7;
    s.settings.max_message = 1000;
    let p = Pair::with(Config::default(), s);
    assert_eq!(p.client.peer_settings().max_concurrent_streams, 7);
    assert_eq!(p.client.peer_settings().max_message, 1000);
    assert_eq!(p.server.peer_settings(), &Settings::default());
    assert!(p.client.accepts_new_calls() && p.server.accepts_new_calls());
}

#[test]
fn unary_call_is_one_frame_each_way() {
    let mut p = Pair::new();
    let mut md = Metadata::new();
    md.insert("x-user", "alice").unwrap();
    md.insert_bin("trace-bin", vec![0u8, 1, 255]).unwrap();
    let h = OpenHead {
        metadata: md.clone(),
        ..head("/pkg.Svc/Echo")
    };
    let id = p
        .client
        .open(&h, Some(&Bytes::from_static(b"ping")), true, p.now)
        .unwrap();
    p.drive();
    assert_eq!(p.c2s_frames, 1, "request must be one frame");
    let ev = p.server_events();
    assert_eq!(
        ev,
        [Event::Open {
            id,
            head: h,
            message: Some(Bytes::from_static(b"ping")),
            end: true,
        }]
    );
    let mut headers = Metadata::new();
    headers.insert("x-served-by", "s1").unwrap();
    let mut trailers = ok();
    trailers.trailers.insert_bin("cost-bin", vec![9u8]).unwrap();
    p.server
        .close(
            id,
            &trailers,
            Some(&headers),
            &mut Some(Bytes::from_static(b"pong")),
        )
        .unwrap();
    p.drive();
    assert_eq!(p.s2c_frames, 1, "response must be one frame");
    assert_eq!(
        p.client_events(),
        [Event::Close {
            id,
            head: trailers,
            headers: Some(headers),
            message: Some(Bytes::from_static(b"pong")),
        }]
    );
    assert_eq!(p.client.open_streams(), 0);
    assert_eq!(p.server.open_streams(), 0);
}

#[test]
fn server_streaming() {
    let mut p = Pair::new();
    let id = p
        .client
        .open(&head("/s/S"), Some(&Bytes::from_static(b"q")), true, p.now)
        .unwrap();
    p.drive();
    assert!(matches!(
        p.server_events()[..],
        [Event::Open { end: true, .. }]
    ));
    let mut md = Metadata::new();
    md.insert("h", "1").unwrap();
    p.server.send_headers(id, &md).unwrap();
    for i in 0..3u8 {
        p.server.send(id, Bytes::from(vec![i]), false).unwrap();
    }
    p.server.close(id, &ok(), None, &mut None).unwrap();
    p.drive();
    let ev = p.client_events();
    assert_eq!(ev.len(), 5);
    assert_eq!(ev[0], Event::Headers { id, metadata: md });
    for i in 0..3u8 {
        assert_eq!(
            ev[1 + i as usize],
            Event::Message {
                id,
                message: Bytes::from(vec![i]),
                end: false
            }
        );
    }
    assert!(matches!(&ev[4], Event::Close { head, message: None, .. } if head.code == Code::OK));
}

#[test]
fn client_streaming_and_end() {
    let mut p = Pair::new();
    let id = p.client.open(&head("/s/C"), None, false, p.now).unwrap();
    for i in 0..3u8 {
        p.client.send(id, Bytes::from(vec![i]), false).unwrap();
    }
    p.client.finish(id).unwrap();
    assert_eq!(p.client.finish(id), Err(SendError::NoStream));
    p.drive();
    let ev = p.server_events();
    assert!(matches!(
        ev[0],
        Event::Open {
            message: None,
            end: false,
            ..
        }
    ));
    assert!(matches!(&ev[3], Event::Message { message, end: false, .. } if message[..] == [2]));
    assert_eq!(ev[4], Event::End { id });
    p.server
        .close(id, &ok(), None, &mut Some(Bytes::from_static(b"sum")))
        .unwrap();
    p.drive();
    assert!(
        matches!(&p.client_events()[..], [Event::Close { message: Some(m), .. }] if m[..] == *b"sum")
    );
}

#[test]
fn flow_control_blocks_and_reopens() {
    let mut s = Config::default();
    s.settings.stream_window = 1000;
    let mut p = Pair::with(Config::default(), s);
    let id = p.client.open(&head("/s/B"), None, false, p.now).unwrap();
    let msg = Bytes::from(vec![0u8; 300]);
    let mut sent = 0;
    while p.client.send(id, msg.clone(), false).is_ok() {
        sent += 1;
    }
    // Window 1000, each message costs 300 + overhead: the fourth overdraws.
    assert_eq!(sent, 4);
    assert!(!p.client.can_send(id));
    p.drive();
    let ev = p.server_events();
    let msgs = ev
        .iter()
        .filter(|e| matches!(e, Event::Message { .. }))
        .count();
    assert_eq!(msgs, 4);
    // Consuming returns credit once half the window is unannounced.
    for _ in 0..4 {
        p.server.consumed(id, 300);
    }
    p.drive();
    assert_eq!(p.client_events(), [Event::Writable { id }]);
    assert!(p.client.can_send(id));
}

#[test]
fn empty_messages_cost_window() {
    let mut s = Config::default();
    s.settings.stream_window = 200;
    let mut p = Pair::with(Config::default(), s);
    let id = p.client.open(&head("/s/E"), None, false, p.now).unwrap();
    let mut sent = 0;
    while p.client.send(id, Bytes::new(), false).is_ok() {
        sent += 1;
        assert!(sent < 100, "empty messages must not be free");
    }
    assert_eq!(sent, 200_usize.div_ceil(MESSAGE_OVERHEAD as usize));
}

#[test]
fn flow_control_violation_closes_the_connection() {
    let mut s = Config::default();
    s.settings.stream_window = 100;
    let mut p = Pair::with(Config::default(), s);
    let id = p.client.open(&head("/s/V"), None, false, p.now).unwrap();
    p.drive();
    p.server_events();
    // A hostile client ignores the window: two 200-byte messages.
    let m = raw(2, 0, id, &[0; 200]);
    p.raw_to_server(&[m.clone(), m].concat());
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::FLOW_CONTROL_ERROR)
    );
}

#[test]
fn cancel_reaches_the_server() {
    let mut p = Pair::new();
    let id = p.client.open(&head("/s/X"), None, false, p.now).unwrap();
    p.drive();
    p.server_events();
    p.client.cancel(id, Code::CANCELLED);
    p.drive();
    assert_eq!(
        p.server_events(),
        [Event::Cancel {
            id,
            code: Code::CANCELLED
        }]
    );
    assert_eq!(
        p.server.close(id, &ok(), None, &mut None),
        Err(SendError::NoStream)
    );
    assert!(p.client_events().is_empty());
}

#[test]
fn deadline_ends_the_call_on_both_sides() {
    let mut p = Pair::new();
    let h = OpenHead {
        timeout: Some(Duration::from_millis(50)),
        ..head("/s/Slow")
    };
    let id = p.client.open(&h, Some(&Bytes::new()), true, p.now).unwrap();
    p.drive();
    let ev = p.server_events();
    assert!(
        matches!(&ev[..], [Event::Open { head, .. }] if head.timeout == Some(Duration::from_millis(50)))
    );
    p.advance(Duration::from_millis(49));
    assert!(p.client_events().is_empty() && p.server_events().is_empty());
    p.advance(Duration::from_millis(2));
    let ev = p.client_events();
    assert!(
        matches!(&ev[..], [Event::Close { head, .. }] if head.code == Code::DEADLINE_EXCEEDED),
        "{ev:?}"
    );
    assert_eq!(
        p.server_events(),
        [Event::Cancel {
            id,
            code: Code::DEADLINE_EXCEEDED
        }]
    );
    assert!(!p.client.is_closed() && !p.server.is_closed());
}

#[test]
fn server_enforces_the_deadline_alone() {
    // The client has no timer (hostile or slow clock): the server still
    // ends the call at its own deadline and tells the client.
    let mut p = Pair::new();
    let mut payload = open_payload("/s/Slow", &[]);
    payload[2 + 7..2 + 7 + 8].copy_from_slice(&10_000u64.to_le_bytes()); // 10 ms
    p.raw_to_server(&raw(1, 0x01, 1, &payload));
    assert!(matches!(p.server_events()[..], [Event::Open { .. }]));
    p.now += Duration::from_millis(11);
    p.server.handle_timeout(p.now);
    assert_eq!(
        p.server_events(),
        [Event::Cancel {
            id: 1,
            code: Code::DEADLINE_EXCEEDED
        }]
    );
    let out = Pair::out(&mut p.server);
    assert_eq!(out[4], 4, "CLOSE frame");
    assert_eq!(
        u32::from_le_bytes(out[10..14].try_into().unwrap()),
        Code::DEADLINE_EXCEEDED.0
    );
}

#[test]
fn too_many_streams_are_refused() {
    let mut s = Config::default();
    s.settings.max_concurrent_streams = 2;
    let mut p = Pair::with(Config::default(), s);
    for _ in 0..2 {
        p.client.open(&head("/s/M"), None, false, p.now).unwrap();
    }
    // The client knows the limit and refuses locally.
    assert_eq!(
        p.client.open(&head("/s/M"), None, false, p.now),
        Err(SendError::TooManyStreams { max: 2 })
    );
    p.drive();
    assert_eq!(p.server_events().len(), 2);
    // A client that ignores it is refused by the server, which stays up.
    p.raw_to_server(&raw(1, 0x01, 99, &open_payload("/s/M", &[])));
    assert!(p.server_events().is_empty());
    let out = Pair::out(&mut p.server);
    assert_eq!(out[4], 4, "CLOSE");
    assert_eq!(
        u32::from_le_bytes(out[10..14].try_into().unwrap()),
        Code::RESOURCE_EXHAUSTED.0
    );
    assert!(!p.server.is_closed());
}

#[test]
fn bad_call_input_fails_only_that_call() {
    let mut p = Pair::new();
    assert!(matches!(
        p.client.open(&head("no-slash"), None, true, p.now),
        Err(SendError::Invalid(_))
    ));
    let mut md = Metadata::new();
    md.insert_bin("big-bin", vec![0u8; 20 << 10]).unwrap();
    let h = OpenHead {
        metadata: md,
        ..head("/s/M")
    };
    assert!(matches!(
        p.client.open(&h, None, true, p.now),
        Err(SendError::Invalid(_))
    ));
    // A CANCEL for a call the server already closed is not a reset.
    let id = p.client.open(&head("/s/M"), None, true, p.now).unwrap();
    p.drive();
    p.server_events();
    p.server.close(id, &ok(), None, &mut None).unwrap();
    for _ in 0..5000 {
        p.raw_to_server(&raw(5, 0, id, &1u32.to_le_bytes()));
    }
    assert!(!p.server.is_closed());
}

#[test]
fn keepalive_does_not_keep_an_idle_connection_open() {
    let mut c = Config::default();
    c.keepalive_interval = Some(Duration::from_secs(1));
    c.keepalive_timeout = Duration::from_secs(5);
    let mut s = Config::default();
    s.idle_timeout = Some(Duration::from_secs(3));
    s.keepalive_interval = None;
    let mut p = Pair::with(c, s);
    for _ in 0..4 {
        p.advance(Duration::from_millis(1100));
    }
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::IDLE_TIMEOUT)
    );
}

#[test]
fn oversized_message_is_refused_with_resource_exhausted() {
    let mut s = Config::default();
    s.settings.max_message = 10;
    let mut p = Pair::with(Config::default(), s);
    // The client knows the limit and refuses to send.
    assert_eq!(
        p.client
            .open(&head("/s/L"), Some(&Bytes::from(vec![0; 11])), true, p.now),
        Err(SendError::TooLarge { size: 11, max: 10 })
    );
    // A client that ignores it gets RESOURCE_EXHAUSTED, the connection lives.
    let mut payload = open_payload("/s/L", &[]);
    payload.extend_from_slice(&[0; 11]);
    p.raw_to_server(&raw(1, 0x03, 1, &payload));
    assert!(p.server_events().is_empty());
    let out = Pair::out(&mut p.server);
    assert_eq!(out[4], 4);
    assert_eq!(
        u32::from_le_bytes(out[10..14].try_into().unwrap()),
        Code::RESOURCE_EXHAUSTED.0
    );
    assert!(!p.server.is_closed());
}

#[test]
fn goaway_drains() {
    let mut p = Pair::new();
    let first = p
        .client
        .open(&head("/s/A"), Some(&Bytes::new()), true, p.now)
        .unwrap();
    p.drive();
    p.server_events();
    p.server.goaway("shutting down");
    // A call the client opened before it saw the GOAWAY.
    let second = p
        .client
        .open(&head("/s/A"), Some(&Bytes::new()), true, p.now)
        .unwrap();
    p.drive();
    assert!(p.server_events().is_empty(), "second call must not start");
    let ev = p.client_events();
    assert!(ev.iter().any(|e| matches!(e, Event::GoAway { last_stream, reason, .. } if *last_stream == first && *reason == Reason::NO_ERROR)));
    assert!(ev.iter().any(|e| matches!(e, Event::Close { id, head, .. } if *id == second && head.code == Code::UNAVAILABLE)));
    assert_eq!(
        p.client.open(&head("/s/A"), None, true, p.now),
        Err(SendError::Closed)
    );
    // The call in flight still completes.
    p.server.close(first, &ok(), None, &mut None).unwrap();
    p.drive();
    assert!(
        matches!(&p.client_events()[..], [Event::Close { id, head, .. }] if *id == first && head.code == Code::OK)
    );
}

#[test]
fn keepalive_pings_and_times_out() {
    let mut c = Config::default();
    c.keepalive_interval = Some(Duration::from_secs(1));
    c.keepalive_timeout = Duration::from_secs(1);
    c.idle_timeout = None;
    let mut s = Config::default();
    s.keepalive_interval = None;
    s.idle_timeout = None;
    let mut p = Pair::with(c, s);
    // Answered pings keep the connection up.
    for _ in 0..5 {
        p.advance(Duration::from_millis(1100));
    }
    assert!(!p.client.is_closed());
    // A peer that stops answering is detected.
    p.now += Duration::from_millis(1100);
    p.client.handle_timeout(p.now);
    let _ = Pair::out(&mut p.client); // the PING, never delivered
    p.now += Duration::from_millis(1100);
    p.client.handle_timeout(p.now);
    assert_eq!(
        closed_reason(&p.client_events()),
        Some(Reason::KEEPALIVE_TIMEOUT)
    );
}

#[test]
fn idle_connection_closes() {
    let mut s = Config::default();
    s.idle_timeout = Some(Duration::from_secs(2));
    s.keepalive_interval = None;
    let mut c = Config::default();
    c.keepalive_interval = None;
    let mut p = Pair::with(c, s);
    p.advance(Duration::from_secs(3));
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::IDLE_TIMEOUT)
    );
    // The client learns through GOAWAY.
    assert!(p.client.is_closed());
}

#[test]
fn handshake_timeout() {
    let now = Instant::now();
    let mut cfg = Config::default();
    cfg.handshake_timeout = Duration::from_millis(100);
    let mut server = Connection::server(cfg, now);
    let mut buf = BytesMut::from(&PREFACE[..4]);
    server.handle_input(&mut buf, now);
    assert_eq!(
        server.poll_timeout(),
        Some(now + Duration::from_millis(100))
    );
    server.handle_timeout(now + Duration::from_millis(100));
    let ev: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert_eq!(closed_reason(&ev), Some(Reason::HANDSHAKE_TIMEOUT));
}

fn server_after_preface() -> (Connection, Instant) {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let mut b = BytesMut::from(&PREFACE[..]);
    b.extend_from_slice(&raw(0, 0, 0, &[]));
    server.handle_input(&mut b, now);
    assert!(server.poll_event().is_none());
    (server, now)
}

fn feed(server: &mut Connection, now: Instant, bytes: &[u8]) -> Option<Reason> {
    let mut b = BytesMut::from(bytes);
    server.handle_input(&mut b, now);
    let ev: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    closed_reason(&ev)
}

#[test]
fn bad_preface_is_rejected_at_once() {
    for bad in [
        &b"PRI * HTTP/2.0"[..],
        &[0x16, 0x03, 0x01],
        b"GET / HTTP/1.1",
        b"Z",
    ] {
        let now = Instant::now();
        let mut server = Connection::server(Config::default(), now);
        let r = feed(&mut server, now, bad);
        if bad == b"Z" {
            assert_eq!(r, None, "a prefix of the preface waits");
        } else {
            assert_eq!(r, Some(Reason::PROTOCOL_ERROR), "{bad:?}");
        }
    }
}

#[test]
fn huge_length_prefix_is_rejected_without_allocating() {
    let (mut server, now) = server_after_preface();
    let mut b = BytesMut::with_capacity(64);
    b.extend_from_slice(&raw(2, 0, 1, &[])[..]);
    b[0..4].copy_from_slice(&u32::MAX.to_le_bytes()); // 4 GiB announced
    server.handle_input(&mut b, now);
    assert!(b.capacity() < 1 << 20, "announced size was allocated");
    let ev: Vec<Event> = std::iter::from_fn(|| server.poll_event()).collect();
    assert_eq!(closed_reason(&ev), Some(Reason::FRAME_TOO_LARGE));
    // A GOAWAY with the reason goes out (after the server's SETTINGS).
    let out = Pair::out(&mut server);
    let goaway = out
        .windows(FRAME_HEADER_LEN + 8)
        .find(|w| w[4] == 8 && w[6..10] == [0; 4])
        .expect("GOAWAY frame");
    assert_eq!(
        u32::from_le_bytes(goaway[14..18].try_into().unwrap()),
        Reason::FRAME_TOO_LARGE.0
    );
}

#[test]
fn truncated_frame_waits_then_eof_fails_calls() {
    let mut p = Pair::new();
    let id = p.client.open(&head("/s/T"), None, false, p.now).unwrap();
    p.drive();
    // Half a frame arrives, then the transport ends.
    let f = raw(2, 0, id, b"abcdef");
    p.s2c.extend_from_slice(&f[..8]);
    p.client.handle_input(&mut p.s2c, p.now);
    assert!(p.client_events().is_empty());
    p.client.handle_eof("connection reset");
    let ev = p.client_events();
    assert!(matches!(&ev[0], Event::Close { head, .. } if head.code == Code::UNAVAILABLE));
    assert!(matches!(&ev[1], Event::Closed(_)));
}

#[test]
fn malformed_frames_close_the_connection() {
    let md_upper = {
        let mut b = 1u16.to_le_bytes().to_vec();
        b.extend_from_slice(b"K");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.push(b'v');
        b
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("unknown type", raw(200, 0, 0, &[])),
        ("settings twice", raw(0, 0, 0, &[])),
        ("settings on a stream", raw(0, 0, 1, &[])),
        ("odd settings payload", raw(0, 0, 0, &[1, 2, 3])),
        (
            "method without slash",
            raw(1, 0, 1, &open_payload("pkg/M", &[])),
        ),
        (
            "uppercase metadata key",
            raw(1, 0, 1, &open_payload("/p/M", &md_upper)),
        ),
        ("metadata past the frame", {
            let mut p = open_payload("/p/M", &[]);
            let n = p.len();
            p[n - 4..].copy_from_slice(&100u32.to_le_bytes());
            raw(1, 0, 1, &p)
        }),
        (
            "trailing bytes in OPEN",
            raw(1, 0, 1, &[open_payload("/p/M", &[]), vec![1]].concat()),
        ),
        ("HEADERS to a server", raw(3, 0, 1, &0u32.to_le_bytes())),
        ("CLOSE to a server", raw(4, 0, 1, &[0; 14])),
        ("window of zero", raw(6, 0, 0, &0u32.to_le_bytes())),
        ("window overflow", raw(6, 0, 0, &u32::MAX.to_le_bytes())),
        ("short ping", raw(7, 0, 0, &[1, 2, 3])),
        ("END with payload", raw(9, 0, 1, &[1])),
        ("stream 0 OPEN", raw(1, 0, 0, &open_payload("/p/M", &[]))),
    ];
    for (name, bytes) in cases {
        let (mut server, now) = server_after_preface();
        let r = feed(&mut server, now, &bytes);
        let want = if name == "window overflow" {
            Reason::FLOW_CONTROL_ERROR
        } else {
            Reason::PROTOCOL_ERROR
        };
        assert_eq!(r, Some(want), "{name}");
    }
}

#[test]
fn stream_ids_must_increase_and_message_after_end_is_an_error() {
    let (mut server, now) = server_after_preface();
    let open = raw(1, 0x01, 5, &open_payload("/p/M", &[]));
    assert_eq!(feed(&mut server, now, &open), None);
    assert_eq!(
        feed(&mut server, now, &raw(2, 0, 5, b"x")),
        Some(Reason::PROTOCOL_ERROR)
    );
    let (mut server, now) = server_after_preface();
    assert_eq!(feed(&mut server, now, &open), None);
    assert_eq!(
        feed(&mut server, now, &raw(1, 0, 3, &open_payload("/p/M", &[]))),
        Some(Reason::PROTOCOL_ERROR)
    );
}

#[test]
fn first_frame_must_be_settings() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    let mut b = PREFACE.to_vec();
    b.extend_from_slice(&raw(7, 0, 0, &[0; 8]));
    assert_eq!(feed(&mut server, now, &b), Some(Reason::PROTOCOL_ERROR));
}

#[test]
fn rapid_reset_is_stopped() {
    let mut s = Config::default();
    s.max_resets_per_sec = 50;
    let mut p = Pair::with(Config::default(), s);
    for _ in 0..60 {
        let id = p.client.open(&head("/s/R"), None, false, p.now).unwrap();
        p.client.cancel(id, Code::CANCELLED);
    }
    p.drive();
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
    assert!(p.client.is_closed(), "client hears GOAWAY");
}

#[test]
fn ping_flood_is_stopped_and_pings_are_answered() {
    let (mut server, now) = server_after_preface();
    let ping = raw(7, 0, 0, b"12345678");
    assert_eq!(feed(&mut server, now, &ping), None);
    let out = Pair::out(&mut server);
    let ack = out
        .windows(ping.len())
        .any(|w| w[4] == 7 && w[5] == 1 && &w[10..] == b"12345678");
    assert!(ack, "PING must be answered with ACK");
    let flood: Vec<u8> = (0..100).flat_map(|_| ping.clone()).collect();
    assert_eq!(
        feed(&mut server, now, &flood),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn settings_change_windows_and_unknown_settings_are_ignored() {
    let now = Instant::now();
    let mut client = Connection::client(Config::default(), now);
    let _ = Pair::out(&mut client);
    let mut payload = Vec::new();
    for (id, v) in [(setting::STREAM_WINDOW, 10u32), (999, 1)] {
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(&v.to_le_bytes());
    }
    let mut b = BytesMut::from(&raw(0, 0, 0, &payload)[..]);
    client.handle_input(&mut b, now);
    let id = client.open(&head("/s/W"), None, false, now).unwrap();
    client.send(id, Bytes::new(), false).unwrap();
    assert_eq!(
        client.send(id, Bytes::new(), false),
        Err(SendError::Blocked)
    );
}

/// The hex examples in docs/PROTOCOL.md, by name (comments after `#`
/// stripped).
fn doc_examples() -> Vec<(String, Vec<u8>)> {
    let doc = include_str!("../../../docs/PROTOCOL.md");
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(name) = line
            .strip_prefix("<!-- example: ")
            .and_then(|l| l.strip_suffix(" -->"))
        else {
            continue;
        };
        assert_eq!(lines.next(), Some("```hex"), "example {name}");
        let mut hex = String::new();
        for l in lines.by_ref() {
            if l == "```" {
                break;
            }
            hex.extend(
                l.split('#')
                    .next()
                    .unwrap()
                    .chars()
                    .filter(|c| !c.is_whitespace()),
            );
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        out.push((name.to_owned(), bytes));
    }
    out
}

#[test]
fn protocol_doc_examples_match_the_encoder() {
    use super::frame::Out;
    let mut md = Metadata::new();
    md.insert("x-user", "alice").unwrap();
    let mut headers = Metadata::new();
    headers.insert("x-served-by", "s1").unwrap();
    let mut err = close_head(Code::NOT_FOUND, "not found");
    err.trailers.insert_bin("retry-bin", vec![1u8]).unwrap();
    let encode = |f: &dyn Fn(&mut Out)| {
        let mut o = Out::default();
        f(&mut o);
        let mut chunks = Vec::new();
        o.drain_into(&mut chunks);
        let bytes = chunks.concat();
        // A QUIC call's exact-size buffers hold the same bytes.
        #[cfg(feature = "quic")]
        {
            let mut exact = Out::exact();
            f(&mut exact);
            assert_eq!(exact.pending().concat(), bytes);
        }
        bytes
    };
    let examples = doc_examples();
    assert_eq!(examples.len(), 13);
    for (name, want) in examples {
        let got = match name.as_str() {
            "preface" => encode(&|o| o.preface()),
            "settings" => encode(&|o| o.settings(&Settings::default())),
            "unary-request" => encode(&|o| {
                let h = OpenHead {
                    method: Bytes::from_static(b"/echo.Echo/Say"),
                    timeout: Some(Duration::from_secs(1)),
                    metadata: md.clone(),
                };
                o.open(1, &h, Some(&Bytes::from_static(b"hi")), true)
            }),
            "unary-response" => encode(&|o| {
                o.close(
                    1,
                    &ok(),
                    Some(&Metadata::new()),
                    Some(Bytes::from_static(b"hi")),
                )
            }),
            "error-response" => encode(&|o| o.close(3, &err, None, None)),
            "message" => encode(&|o| o.message(1, Bytes::from_static(b"abc"), false)),
            "end" => encode(&|o| o.end(1)),
            "headers" => encode(&|o| o.headers(1, &headers)),
            "cancel" => encode(&|o| o.cancel(1, Code::CANCELLED)),
            "window" => encode(&|o| o.window(0, 65536)),
            "ping" => encode(&|o| o.ping(false, *b"keepaliv")),
            "ping-ack" => encode(&|o| o.ping(true, *b"keepaliv")),
            "goaway" => encode(&|o| o.goaway(7, 0, b"bye")),
            other => panic!("no encoder for example {other}"),
        };
        assert_eq!(got, want, "example `{name}` differs from the encoder");
        // And every frame example parses back.
        if name != "preface" {
            let h = super::frame::Header::parse(&want).unwrap();
            let payload = Bytes::copy_from_slice(&want[FRAME_HEADER_LEN..]);
            super::frame::Frame::parse(h, payload, &Settings::default())
                .unwrap_or_else(|e| panic!("example {name} does not parse: {e:?}"));
        }
    }
}

/// A QUIC call's output: each frame in one buffer of its exact size, a
/// large message as its own chunk (not copied), and the writer's progress
/// (whole chunks, then part of one) taken off the front.
#[cfg(feature = "quic")]
#[test]
fn exact_output_gives_each_frame_its_own_buffer() {
    use super::frame::Out;
    use bytes::Buf;
    let head = OpenHead {
        method: Bytes::from_static(b"/a.B/C"),
        timeout: None,
        metadata: Metadata::new(),
    };
    let big = Bytes::from(vec![7u8; 5000]);
    let mut out = Out::exact();
    out.open(0, &head, Some(&Bytes::from_static(b"small")), false);
    out.message(0, big.clone(), true);
    let pending = out.pending();
    assert_eq!(pending.len(), 3);
    assert_eq!(pending[0].len(), FRAME_HEADER_LEN + 2 + 6 + 8 + 4 + 5);
    assert_eq!(pending[1].len(), FRAME_HEADER_LEN);
    assert_eq!(
        pending[2].as_ptr(),
        big.as_ptr(),
        "a large message is not copied"
    );
    let total = out.len();
    assert_eq!(total, pending_len(&mut out));
    // A writer took the first chunk and 4 bytes of the second.
    let first = out.pending()[0].len();
    out.pending()[1].advance(4);
    out.consumed(1, first + 4);
    assert_eq!(out.pending().len(), 2);
    assert_eq!(out.len(), total - first - 4);
    assert_eq!(pending_len(&mut out), out.len());
    out.clear();
    assert!(out.pending().is_empty());
    assert_eq!(out.len(), 0);

    fn pending_len(out: &mut Out) -> usize {
        out.pending().iter().map(Bytes::len).sum()
    }
}

/// The §11 rules for frames on QUIC streams.
#[cfg(feature = "quic")]
#[test]
fn quic_framing_rules() {
    use super::frame::{Frame, Framing, Header, Out};
    let local = Settings::default();
    let head = OpenHead {
        method: Bytes::from_static(b"/a.B/C"),
        timeout: None,
        metadata: Metadata::new(),
    };
    let encode = |f: &dyn Fn(&mut Out)| {
        let mut out = Out::default();
        f(&mut out);
        let mut chunks = Vec::new();
        out.drain_into(&mut chunks);
        let all: Vec<u8> = chunks.concat();
        let h = Header::parse(&all).unwrap();
        (h, Bytes::from(all[FRAME_HEADER_LEN..].to_vec()))
    };
    let parse = |framing, (h, p): (Header, Bytes)| Frame::parse_in(framing, h, p, &local);
    // A call frame with stream field 0 is a call stream's frame, and not a
    // byte stream's.
    let open0 = encode(&|o| o.open(0, &head, Some(&Bytes::from_static(b"x")), true));
    assert!(matches!(
        parse(Framing::QuicCall, open0.clone()),
        Ok(Frame::Open { end: true, .. })
    ));
    assert!(parse(Framing::Connection, open0).is_err());
    // A nonzero stream field, or a connection frame, is refused on a call
    // stream.
    let open7 = encode(&|o| o.open(7, &head, None, false));
    assert!(parse(Framing::QuicCall, open7).is_err());
    let cancel = encode(&|o| o.cancel(0, Code::CANCELLED));
    assert!(parse(Framing::QuicCall, cancel).is_err());
    let ping = encode(&|o| o.ping(false, [0; 8]));
    assert!(parse(Framing::QuicCall, ping).is_err());
    // Control streams take SETTINGS and GOAWAY only.
    let settings = encode(&|o| o.settings(&local));
    assert!(matches!(
        parse(Framing::QuicControl, settings),
        Ok(Frame::Settings(_))
    ));
    let goaway = encode(&|o| o.goaway(3, 0, b"bye"));
    assert!(parse(Framing::QuicControl, goaway).is_ok());
    let msg = encode(&|o| o.message(0, Bytes::from_static(b"m"), false));
    assert!(parse(Framing::QuicControl, msg.clone()).is_err());
    assert!(matches!(
        parse(Framing::QuicCall, msg),
        Ok(Frame::Message { end: false, .. })
    ));
}

#[test]
fn largest_frame_reports_complete_and_partial_frames() {
    let mut p = Pair::new();
    p.drive();
    // The handshake's frames are small.
    let small = p.server.take_largest_frame();
    assert!(small > 0 && small < 100, "{small}");
    assert_eq!(p.server.take_largest_frame(), 0, "taken");
    let body = Bytes::from(vec![7u8; 5000]);
    let id = p
        .client
        .open(&head("/pkg.Svc/Echo"), Some(&body.clone()), true, p.now)
        .unwrap();
    let wire = Pair::out(&mut p.client);
    // Only part of the frame: its size is known from the header already.
    let mut part = BytesMut::from(&wire[..100]);
    p.server.handle_input(&mut part, p.now);
    let whole = p.server.take_largest_frame();
    assert_eq!(whole, wire.len(), "the announced frame, header included");
    part.extend_from_slice(&wire[100..]);
    p.server.handle_input(&mut part, p.now);
    assert_eq!(p.server.take_largest_frame(), whole);
    assert!(matches!(
        p.server_events().as_slice(),
        [Event::Open { id: i, message: Some(m), .. }] if *i == id && *m == body
    ));
}

/// A pair whose client announces the largest windows, so that only the
/// server's own output caps hold its sending back.
fn greedy_pair(server: Config) -> Pair {
    let mut c = Config::default();
    c.settings.stream_window = i32::MAX as u32;
    c.settings.connection_window = i32::MAX as u32;
    Pair::with(c, server)
}

fn writable(events: &[Event]) -> Vec<u32> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Writable { id } => Some(*id),
            _ => None,
        })
        .collect()
}

/// A greedy pair whose server may queue `max_queued_output` bytes, with
/// one call open (the server has seen it).
fn one_call_capped(max_queued_output: usize) -> (Pair, u32) {
    let mut s = Config::default();
    s.max_queued_output = max_queued_output;
    let mut p = greedy_pair(s);
    let id = p
        .client
        .open(&head("/s/Stream"), None, true, p.now)
        .unwrap();
    p.drive();
    p.server_events();
    (p, id)
}

#[test]
fn output_cap_holds_senders_until_the_transport_writes() {
    let (mut p, id) = one_call_capped(100_000);
    let m = Bytes::from(vec![0u8; 40_000]);
    // Under the cap a message goes; the one that crosses it goes too.
    for _ in 0..3 {
        p.server.send(id, m.clone(), false).unwrap();
    }
    assert_eq!(p.server.send(id, m.clone(), false), Err(SendError::Blocked));
    // Handed to the transport is not written: still held.
    let mut chunks = Vec::new();
    p.server.poll_transmit(&mut chunks);
    assert_eq!(p.server.unwritten(), 3 * (40_000 + FRAME_HEADER_LEN));
    assert_eq!(p.server.send(id, m.clone(), false), Err(SendError::Blocked));
    assert!(writable(&p.server_events()).is_empty());
    // Written: the call may go on.
    p.server.wrote(60_000);
    assert_eq!(writable(&p.server_events()), vec![id]);
    p.server.send(id, m, false).unwrap();
}

#[test]
fn one_call_cannot_take_the_whole_output_queue() {
    let mut s = Config::default();
    s.max_queued_output_per_call = 50_000;
    let mut p = greedy_pair(s);
    let a = p.client.open(&head("/s/A"), None, true, p.now).unwrap();
    let b = p.client.open(&head("/s/B"), None, true, p.now).unwrap();
    p.drive();
    p.server_events();
    let m = Bytes::from(vec![0u8; 40_000]);
    p.server.send(a, m.clone(), false).unwrap();
    p.server.send(a, m.clone(), false).unwrap();
    assert_eq!(p.server.send(a, m.clone(), false), Err(SendError::Blocked));
    // Another call still has its share.
    p.server.send(b, m.clone(), false).unwrap();
    // Once A's first message is written, A is under its cap again.
    let mut chunks = Vec::new();
    p.server.poll_transmit(&mut chunks);
    p.server.wrote(40_000 + FRAME_HEADER_LEN);
    assert_eq!(writable(&p.server_events()), vec![a]);
    p.server.send(a, m, false).unwrap();
}

/// Metadata of `n` empty-valued entries: 7 wire bytes and about 70 bytes of
/// memory each.
fn many_entries(n: usize) -> Metadata {
    let mut md = Metadata::new();
    for _ in 0..n {
        md.insert("a", "").unwrap();
    }
    md
}

#[test]
fn metadata_memory_of_open_calls_is_capped() {
    let md = many_entries(2000);
    let cost = md.memory_size();
    assert!(cost > 2000 * 64, "{cost}");
    let mut s = Config::default();
    s.max_metadata_memory = 2 * cost + cost / 2;
    let mut p = Pair::with(Config::default(), s);
    let mut h = head("/s/Md");
    h.metadata = md;
    let first = p.client.open(&h, None, true, p.now).unwrap();
    p.client.open(&h, None, true, p.now).unwrap();
    let third = p.client.open(&h, None, true, p.now).unwrap();
    p.drive();
    let opened = p
        .server_events()
        .iter()
        .filter(|e| matches!(e, Event::Open { .. }))
        .count();
    assert_eq!(opened, 2);
    assert!(p.server.metadata_memory() <= 2 * cost + cost / 2);
    let refused = p.client_events().into_iter().find_map(|e| match e {
        Event::Close { id, head, .. } if id == third => Some(head.code),
        _ => None,
    });
    assert_eq!(refused, Some(Code::RESOURCE_EXHAUSTED));
    // A call that ends gives its share back.
    p.server.close(first, &ok(), None, &mut None).unwrap();
    p.drive();
    p.client.open(&h, None, true, p.now).unwrap();
    p.drive();
    assert!(
        p.server_events()
            .iter()
            .any(|e| matches!(e, Event::Open { .. }))
    );
}

#[test]
fn small_frames_can_be_copied_out_of_a_large_input_buffer() {
    let (mut server, now) = server_after_preface();
    let mut frame = raw(1, 0x03, 1, &open_payload("/s/U", &[]));
    frame.extend_from_slice(b"hello");
    let len = (frame.len() - FRAME_HEADER_LEN) as u32;
    frame[0..4].copy_from_slice(&len.to_le_bytes());
    for copy in [false, true] {
        let mut f = frame.clone();
        f[6..10].copy_from_slice(&(if copy { 3u32 } else { 1 }).to_le_bytes());
        let mut b = BytesMut::with_capacity(1 << 20);
        b.extend_from_slice(&f);
        let range = b.as_ptr() as usize..b.as_ptr() as usize + (1 << 20);
        server.set_copy_below(if copy { 4096 } else { 0 });
        server.handle_input(&mut b, now);
        let message = std::iter::from_fn(|| server.poll_event())
            .find_map(|e| match e {
                Event::Open { message, .. } => message,
                _ => None,
            })
            .unwrap();
        assert_eq!(message, "hello");
        assert_eq!(!range.contains(&(message.as_ptr() as usize)), copy);
    }
}

#[test]
fn nothing_is_written_to_a_peer_without_the_preface() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    assert!(
        Pair::out(&mut server).is_empty(),
        "SETTINGS before the preface"
    );
    assert_eq!(
        feed(&mut server, now, b"GET / HTTP/1.1"),
        Some(Reason::PROTOCOL_ERROR)
    );
    assert!(
        Pair::out(&mut server).is_empty(),
        "an answer to a non-client"
    );
    // Nor at the handshake timeout, before any preface.
    let mut server = Connection::server(Config::default(), now);
    server.handle_timeout(now + Duration::from_secs(11));
    assert!(server.is_closed());
    assert!(Pair::out(&mut server).is_empty());
    // A preface gets SETTINGS.
    let mut server = Connection::server(Config::default(), now);
    assert_eq!(feed(&mut server, now, &PREFACE), None);
    assert_eq!(count_frames(&Pair::out(&mut server), false), 1);
}

#[test]
fn max_frame_below_the_minimum_is_a_protocol_error() {
    let mut c = Config::default();
    c.settings.max_frame = MIN_MAX_FRAME - 1;
    let mut p = Pair::with(c, Config::default());
    p.drive();
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::PROTOCOL_ERROR)
    );
}

#[test]
fn frames_fit_the_peers_max_frame() {
    let mut c = Config::default();
    c.settings.max_frame = MIN_MAX_FRAME;
    c.settings.max_message = 1 << 20;
    let mut p = Pair::with(c, Config::default());
    let id = p.client.open(&head("/s/U"), None, true, p.now).unwrap();
    p.drive();
    p.server_events();
    let big = Bytes::from(vec![0u8; MIN_MAX_FRAME as usize + 1]);
    // A message that cannot fit a frame is refused, as too large.
    assert!(matches!(
        p.server.send(id, big.clone(), false),
        Err(SendError::TooLarge { .. })
    ));
    let mut m = Some(big);
    assert!(matches!(
        p.server.close(id, &ok(), None, &mut m),
        Err(SendError::TooLarge { .. })
    ));
    // Status details too large for a frame: the call ends with INTERNAL.
    let mut head = ok();
    head.details = Bytes::from(vec![0u8; MIN_MAX_FRAME as usize]);
    p.server.close(id, &head, None, &mut None).unwrap();
    p.drive();
    let code = p.client_events().into_iter().find_map(|e| match e {
        Event::Close { head, .. } => Some(head.code),
        _ => None,
    });
    assert_eq!(code, Some(Code::INTERNAL));
    assert!(!p.client.is_closed());
}

#[test]
fn deadline_expiries_count_as_resets() {
    let mut s = Config::default();
    s.max_resets_per_sec = 50;
    let mut p = Pair::with(Config::default(), s);
    let mut h = head("/s/Slow");
    h.timeout = Some(Duration::from_millis(1));
    for _ in 0..60 {
        p.client.open(&h, None, true, p.now).unwrap();
    }
    p.drive();
    p.now += Duration::from_millis(2);
    p.server.handle_timeout(p.now);
    assert_eq!(
        closed_reason(&p.server_events()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn a_server_going_away_before_the_preface_writes_nothing() {
    let now = Instant::now();
    let mut server = Connection::server(Config::default(), now);
    server.goaway("shutting down");
    assert!(Pair::out(&mut server).is_empty());
    assert!(!server.accepts_new_calls());
}

#[test]
fn no_event_follows_closed() {
    let (mut p, id) = one_call_capped(1000);
    let m = Bytes::from(vec![0u8; 2000]);
    p.server.send(id, m.clone(), false).unwrap();
    assert_eq!(p.server.send(id, m, false), Err(SendError::Blocked));
    let mut chunks = Vec::new();
    p.server.poll_transmit(&mut chunks);
    p.server.handle_eof("gone");
    // What the transport wrote before it failed wakes nobody now.
    assert!(!p.server.wrote(2010));
    let events = p.server_events();
    assert!(
        matches!(events.last(), Some(Event::Closed(_))),
        "{events:?}"
    );
}
