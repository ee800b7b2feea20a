//! Call outcomes: gRPC status codes, message and details.

use std::fmt;

use bytes::Bytes;

use crate::metadata::Metadata;

/// A status code. The constants are gRPC's codes 0–16; unknown values are
/// kept as they are (a peer may be newer).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u32);

impl Code {
    /// Not an error.
    pub const OK: Code = Code(0);
    /// The operation was cancelled, typically by the caller.
    pub const CANCELLED: Code = Code(1);
    /// Unknown error.
    pub const UNKNOWN: Code = Code(2);
    /// The client specified an invalid argument.
    pub const INVALID_ARGUMENT: Code = Code(3);
    /// The deadline expired before the operation could complete.
    pub const DEADLINE_EXCEEDED: Code = Code(4);
    /// Some requested entity was not found.
    pub const NOT_FOUND: Code = Code(5);
    /// The entity a client attempted to create already exists.
    pub const ALREADY_EXISTS: Code = Code(6);
    /// The caller may not execute the operation.
    pub const PERMISSION_DENIED: Code = Code(7);
    /// A resource (quota, memory, streams) has been exhausted.
    pub const RESOURCE_EXHAUSTED: Code = Code(8);
    /// The system is not in a state required for the operation.
    pub const FAILED_PRECONDITION: Code = Code(9);
    /// The operation was aborted (concurrency conflict).
    pub const ABORTED: Code = Code(10);
    /// The operation was attempted past the valid range.
    pub const OUT_OF_RANGE: Code = Code(11);
    /// The operation is not implemented or supported.
    pub const UNIMPLEMENTED: Code = Code(12);
    /// Internal error: an invariant is broken.
    pub const INTERNAL: Code = Code(13);
    /// The service is currently unavailable; retrying may help.
    pub const UNAVAILABLE: Code = Code(14);
    /// Unrecoverable data loss or corruption.
    pub const DATA_LOSS: Code = Code(15);
    /// The request lacks valid authentication credentials.
    pub const UNAUTHENTICATED: Code = Code(16);

    /// The gRPC name, or `None` for a code outside 0–16.
    pub fn name(self) -> Option<&'static str> {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        NAMES.get(self.0 as usize).copied()
    }
}

impl fmt::Debug for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "Code({})", self.0),
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The outcome of a call that failed: a code, a human-readable message and
/// opaque details (gRPC's `grpc-status-details-bin`).
#[derive(Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
    details: Bytes,
    metadata: Metadata,
}

impl Status {
    /// A status with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
            metadata: Metadata::new(),
        }
    }

    /// A status with details.
    pub fn with_details(code: Code, message: impl Into<String>, details: Bytes) -> Self {
        Status {
            code,
            message: message.into(),
            details,
            metadata: Metadata::new(),
        }
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The details.
    pub fn details(&self) -> &Bytes {
        &self.details
    }

    /// Trailers that travel with the status (server: sent; client:
    /// received).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Trailers, to add entries before returning the status.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// `CANCELLED`.
    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(Code::CANCELLED, message)
    }
    /// `UNKNOWN`.
    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(Code::UNKNOWN, message)
    }
    /// `INVALID_ARGUMENT`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(Code::INVALID_ARGUMENT, message)
    }
    /// `DEADLINE_EXCEEDED`.
    pub fn deadline_exceeded(message: impl Into<String>) -> Self {
        Self::new(Code::DEADLINE_EXCEEDED, message)
    }
    /// `NOT_FOUND`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Code::NOT_FOUND, message)
    }
    /// `PERMISSION_DENIED`.
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(Code::PERMISSION_DENIED, message)
    }
    /// `RESOURCE_EXHAUSTED`.
    pub fn resource_exhausted(message: impl Into<String>) -> Self {
        Self::new(Code::RESOURCE_EXHAUSTED, message)
    }
    /// `FAILED_PRECONDITION`.
    pub fn failed_precondition(message: impl Into<String>) -> Self {
        Self::new(Code::FAILED_PRECONDITION, message)
    }
    /// `UNIMPLEMENTED`.
    pub fn unimplemented(message: impl Into<String>) -> Self {
        Self::new(Code::UNIMPLEMENTED, message)
    }
    /// `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(Code::INTERNAL, message)
    }
    /// `UNAVAILABLE`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(Code::UNAVAILABLE, message)
    }
    /// `UNAUTHENTICATED`.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(Code::UNAUTHENTICATED, message)
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Status");
        d.field("code", &self.code).field("message", &self.message);
        if !self.details.is_empty() {
            d.field("details", &self.details);
        }
        d.finish()
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status {}", self.code)?;
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for Status {}

impl From<crate::DecodeError> for Status {
    fn from(e: crate::DecodeError) -> Self {
        Status::invalid_argument(e.to_string())
    }
}
