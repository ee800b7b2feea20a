//! zap-build output, compiled: the golden fixture, awkward names, and two
//! versions of an evolving message. The tests in `tests/` exercise them.

#![allow(missing_docs)]

pub mod golden {
    pub mod v1 {
        zap::include_proto!("golden.v1");
    }
}

pub mod awkward {
    zap::include_proto!("awkward");
    pub mod other {
        zap::include_proto!("awkward.other");
    }
}

pub mod compat {
    pub mod v1 {
        zap::include_proto!("compat.v1");
    }
    pub mod v2 {
        zap::include_proto!("compat.v2");
    }
}
