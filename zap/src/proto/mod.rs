//! The ZAP-RPC protocol core, sans I/O (docs/PROTOCOL.md).
//!
//! [`Connection`] is a state machine: feed it the bytes read from the
//! transport ([`Connection::handle_input`]) and the time
//! ([`Connection::handle_timeout`] at [`Connection::poll_timeout`]); it
//! produces bytes to write ([`Connection::poll_transmit`]) and events for the
//! application ([`Connection::poll_event`]). The application opens, answers,
//! streams and cancels calls through its methods. It owns no socket, no clock
//! and no task: the tokio runtime drives it, and the tests in this module
//! drive two of them back to back in memory, deterministically.

mod conn;
mod frame;
pub(crate) mod sniff;
#[cfg(test)]
mod tests;

#[cfg(feature = "quic")]
pub(crate) use conn::MAX_METHOD;
pub use conn::{
    Config, ConnError, Connection, Event, MESSAGE_OVERHEAD, MIN_MAX_FRAME, Reason, SendError, Side,
    close_head,
};
pub use frame::{CloseHead, FRAME_HEADER_LEN, OpenHead, PREFACE, Settings};
#[cfg(feature = "quic")]
pub(crate) use frame::{Frame, Framing, Header, Malformed, Out, close_len, metadata_len, open_len};
