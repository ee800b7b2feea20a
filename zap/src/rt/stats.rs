//! What a server holds for its peers, by its own accounting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
struct Cells {
    peak_output: AtomicUsize,
    peak_metadata: AtomicUsize,
}

/// The largest amounts a [`Server`](crate::Server) has held for one
/// connection, by the same accounting that enforces the caps of
/// [`Limits`](zap_transport::Limits) (PROTOCOL.md §9): output queued and
/// not yet written (`max_queued_output`), and memory taken by the open
/// calls' metadata (`max_metadata_memory`). Over every connection kind the
/// server serves: ZAP byte streams and the gRPC fallback.
///
/// Cheap to clone; every clone reads the same numbers. Get it with
/// [`Server::stats`](crate::Server::stats) before serving.
///
/// ```
/// let server = zap::Server::builder();
/// let stats = server.stats();
/// assert_eq!(stats.peak_queued_output(), 0);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ServerStats(Arc<Cells>);

impl ServerStats {
    /// The most bytes of output one connection had queued and not yet
    /// written (messages and control frames), as seen each time its driver
    /// ran.
    pub fn peak_queued_output(&self) -> usize {
        self.0.peak_output.load(Ordering::Relaxed)
    }

    /// The most bytes of memory one connection's open calls held in
    /// metadata.
    pub fn peak_metadata_memory(&self) -> usize {
        self.0.peak_metadata.load(Ordering::Relaxed)
    }

    pub(crate) fn note_output(&self, bytes: usize) {
        note(&self.0.peak_output, bytes);
    }

    pub(crate) fn note_metadata(&self, bytes: usize) {
        note(&self.0.peak_metadata, bytes);
    }
}

/// Raises `cell` to `v`; a plain load first keeps the usual case (no new
/// peak) free of writes to the shared line.
fn note(cell: &AtomicUsize, v: usize) {
    if v > cell.load(Ordering::Relaxed) {
        cell.fetch_max(v, Ordering::Relaxed);
    }
}
