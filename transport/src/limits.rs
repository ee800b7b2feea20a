//! One place for every connection limit, with fail-fast defaults.

use std::time::Duration;

/// Connection limits shared by the transport and the RPC layer above it.
///
/// The transport enforces [`handshake_timeout`](Self::handshake_timeout),
/// [`listen_backlog`](Self::listen_backlog),
/// [`max_connections`](Self::max_connections) and the per-address limits;
/// the other fields are carried here so one value configures a whole
/// endpoint, and are enforced by the RPC layer. None of them is raised by
/// what a peer announces.
///
/// ```
/// use std::time::Duration;
/// use zap_transport::Limits;
///
/// let limits = Limits::default()
///     .with_handshake_timeout(Duration::from_secs(3))
///     .with_idle_timeout(None)
///     .with_max_connections(512);
/// assert_eq!(limits.idle_timeout, None);
/// ```
#[derive(Clone, Debug)]
pub struct Limits {
    /// Bound on TCP connect plus TLS handshake (client) and on the TLS
    /// handshake (server). Default: 10 s.
    pub handshake_timeout: Duration,
    /// Close a connection with no open calls after this long; `None` never.
    /// Enforced by the RPC layer. Default: 5 min.
    pub idle_timeout: Option<Duration>,
    /// Send a keepalive PING after this much silence; `None` disables.
    /// Enforced by the RPC layer. Default: 30 s.
    pub keepalive_interval: Option<Duration>,
    /// Close the connection if a keepalive PING is not answered within this.
    /// Enforced by the RPC layer. Default: 20 s.
    pub keepalive_timeout: Duration,
    /// Most calls open at once on one connection. Enforced by the RPC layer.
    /// Default: 1024.
    pub max_concurrent_streams: u32,
    /// Most connections a [`Listener`](crate::Listener) holds at once; beyond
    /// it new connections are accepted and closed at once. Default: 10 000.
    pub max_connections: usize,
    /// Largest frame accepted, checked before allocating. Enforced by the RPC
    /// layer. Default: 16 MiB + 64 KiB (a 16 MiB message plus headers).
    pub max_frame: u32,
    /// Most connections open at once from one client address (an IPv4
    /// address, or an IPv6 /64); beyond it new ones are closed at once.
    /// `None`: no per-address count. Default: `None` (clients behind one
    /// NAT share an address).
    pub max_connections_per_ip: Option<usize>,
    /// How fast one client address may open connections (a token bucket;
    /// same grouping as [`max_connections_per_ip`](Self::max_connections_per_ip)).
    /// `None`: no rate limit. Default: `None`.
    pub connection_rate_per_ip: Option<ConnectionRate>,
    /// Length of the kernel's queue of connections not yet accepted
    /// (`listen(2)`'s backlog; the kernel caps it at `net.core.somaxconn`).
    /// Default: 4096.
    pub listen_backlog: u32,
    /// Most bytes of outgoing messages waiting to be written on one
    /// connection; beyond it a call's next message waits (its sender sees
    /// backpressure) until the peer reads. A message larger than the cap
    /// still goes out alone. Enforced by the RPC layer. Default: 8 MiB.
    pub max_queued_output: usize,
    /// Most bytes of outgoing messages one call may have waiting to be
    /// written, so one call cannot take the whole connection's queue.
    /// Enforced by the RPC layer. Default: 2 MiB.
    pub max_queued_output_per_call: usize,
    /// Most bytes of memory the metadata of one connection's open calls may
    /// take, counted as stored (entries cost their bookkeeping, not only
    /// their wire bytes); a call that would pass it is refused with
    /// `RESOURCE_EXHAUSTED`. Enforced by the RPC layer. Default: 4 MiB.
    pub max_metadata_memory: usize,
}

/// A token bucket: `burst` connections at once, then `per_second`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionRate {
    /// Tokens added per second.
    pub per_second: u32,
    /// Most tokens held (connections that may start back to back).
    pub burst: u32,
}

impl Limits {
    /// Default [`handshake_timeout`](Self::handshake_timeout): 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default [`idle_timeout`](Self::idle_timeout): 5 min.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    /// Default [`keepalive_interval`](Self::keepalive_interval): 30 s.
    pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
    /// Default [`keepalive_timeout`](Self::keepalive_timeout): 20 s.
    pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
    /// Default [`max_concurrent_streams`](Self::max_concurrent_streams): 1024.
    pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;
    /// Default [`max_connections`](Self::max_connections): 10 000.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    /// Default [`max_frame`](Self::max_frame): 16 MiB + 64 KiB.
    pub const DEFAULT_MAX_FRAME: u32 = 16 * 1024 * 1024 + 64 * 1024;
    /// Default [`listen_backlog`](Self::listen_backlog): 4096.
    pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
    /// Default [`max_queued_output`](Self::max_queued_output): 8 MiB.
    pub const DEFAULT_MAX_QUEUED_OUTPUT: usize = 8 << 20;
    /// Default [`max_queued_output_per_call`](Self::max_queued_output_per_call): 2 MiB.
    pub const DEFAULT_MAX_QUEUED_OUTPUT_PER_CALL: usize = 2 << 20;
    /// Default [`max_metadata_memory`](Self::max_metadata_memory): 4 MiB.
    pub const DEFAULT_MAX_METADATA_MEMORY: usize = 4 << 20;

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Sets [`idle_timeout`](Self::idle_timeout); `None` disables it.
    #[must_use]
    pub fn with_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// Sets [`keepalive_interval`](Self::keepalive_interval); `None` disables keepalive.
    #[must_use]
    pub fn with_keepalive_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.keepalive_interval = interval.into();
        self
    }

    /// Sets [`keepalive_timeout`](Self::keepalive_timeout).
    #[must_use]
    pub fn with_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.keepalive_timeout = timeout;
        self
    }

    /// Sets [`max_concurrent_streams`](Self::max_concurrent_streams).
    #[must_use]
    pub fn with_max_concurrent_streams(mut self, max: u32) -> Self {
        self.max_concurrent_streams = max;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn with_max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets [`max_frame`](Self::max_frame).
    #[must_use]
    pub fn with_max_frame(mut self, max: u32) -> Self {
        self.max_frame = max;
        self
    }

    /// Sets [`max_connections_per_ip`](Self::max_connections_per_ip).
    #[must_use]
    pub fn with_max_connections_per_ip(mut self, max: impl Into<Option<usize>>) -> Self {
        self.max_connections_per_ip = max.into();
        self
    }

    /// Sets [`connection_rate_per_ip`](Self::connection_rate_per_ip).
    #[must_use]
    pub fn with_connection_rate_per_ip(mut self, rate: impl Into<Option<ConnectionRate>>) -> Self {
        self.connection_rate_per_ip = rate.into();
        self
    }

    /// Sets [`listen_backlog`](Self::listen_backlog).
    #[must_use]
    pub fn with_listen_backlog(mut self, backlog: u32) -> Self {
        self.listen_backlog = backlog;
        self
    }

    /// Sets [`max_queued_output`](Self::max_queued_output).
    #[must_use]
    pub fn with_max_queued_output(mut self, bytes: usize) -> Self {
        self.max_queued_output = bytes;
        self
    }

    /// Sets [`max_queued_output_per_call`](Self::max_queued_output_per_call).
    #[must_use]
    pub fn with_max_queued_output_per_call(mut self, bytes: usize) -> Self {
        self.max_queued_output_per_call = bytes;
        self
    }

    /// Sets [`max_metadata_memory`](Self::max_metadata_memory).
    #[must_use]
    pub fn with_max_metadata_memory(mut self, bytes: usize) -> Self {
        self.max_metadata_memory = bytes;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: Some(Self::DEFAULT_IDLE_TIMEOUT),
            keepalive_interval: Some(Self::DEFAULT_KEEPALIVE_INTERVAL),
            keepalive_timeout: Self::DEFAULT_KEEPALIVE_TIMEOUT,
            max_concurrent_streams: Self::DEFAULT_MAX_CONCURRENT_STREAMS,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_frame: Self::DEFAULT_MAX_FRAME,
            max_connections_per_ip: None,
            connection_rate_per_ip: None,
            listen_backlog: Self::DEFAULT_LISTEN_BACKLOG,
            max_queued_output: Self::DEFAULT_MAX_QUEUED_OUTPUT,
            max_queued_output_per_call: Self::DEFAULT_MAX_QUEUED_OUTPUT_PER_CALL,
            max_metadata_memory: Self::DEFAULT_MAX_METADATA_MEMORY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let l = Limits::default();
        assert_eq!(l.handshake_timeout, Duration::from_secs(10));
        assert_eq!(l.idle_timeout, Some(Duration::from_secs(300)));
        assert_eq!(l.keepalive_interval, Some(Duration::from_secs(30)));
        assert_eq!(l.keepalive_timeout, Duration::from_secs(20));
        assert_eq!(l.max_concurrent_streams, 1024);
        assert_eq!(l.max_connections, 10_000);
        assert_eq!(l.max_frame, 16_842_752);
        assert_eq!(l.max_connections_per_ip, None);
        assert_eq!(l.connection_rate_per_ip, None);
        assert_eq!(l.listen_backlog, 4096);
        assert_eq!(l.max_queued_output, 8 << 20);
        assert_eq!(l.max_queued_output_per_call, 2 << 20);
        assert_eq!(l.max_metadata_memory, 4 << 20);
    }

    #[test]
    fn setters() {
        let l = Limits::default()
            .with_handshake_timeout(Duration::from_millis(5))
            .with_idle_timeout(None)
            .with_keepalive_interval(Duration::from_secs(1))
            .with_keepalive_timeout(Duration::from_secs(2))
            .with_max_concurrent_streams(3)
            .with_max_connections(4)
            .with_max_frame(5);
        assert_eq!(l.handshake_timeout, Duration::from_millis(5));
        assert_eq!(l.idle_timeout, None);
        assert_eq!(l.keepalive_interval, Some(Duration::from_secs(1)));
        assert_eq!(l.keepalive_timeout, Duration::from_secs(2));
        assert_eq!(l.max_concurrent_streams, 3);
        assert_eq!(l.max_connections, 4);
        assert_eq!(l.max_frame, 5);
    }
}
