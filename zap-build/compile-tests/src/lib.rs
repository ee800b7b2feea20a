//! zap-build output, compiled: the golden fixture, awkward names, and two
//! versions of an evolving message. The tests in `tests/` exercise them.

#![allow(missing_docs)]

pub mod golden {
    pub mod v1 {
        zap::include_proto!("golden.v1");
    }

    /// A golden `Everything` with every field set to a telling value.
    pub fn everything() -> v1::Everything {
        v1::Everything {
            f64: 1.5,
            f32: -2.5,
            i32: -3,
            i64: -4,
            u32: 5,
            u64: u64::MAX,
            s32: i32::MIN,
            s64: i64::MIN,
            fx32: 9,
            fx64: 10,
            sfx32: -11,
            sfx64: -12,
            flag: true,
            name: "name".into(),
            data: bytes::Bytes::from_static(b"\x00\x01data"),
            color: v1::Color::GREEN,
            inner: Some(v1::everything::Inner {
                id: 7,
                kind: v1::everything::inner::Kind::B,
            }),
            numbers: vec![1, 2, 3],
            names: vec!["a".into(), "".into(), "c".into()],
            blobs: vec![bytes::Bytes::from_static(b"x"), bytes::Bytes::new()],
            inners: vec![v1::everything::Inner::default(); 3],
            colors: vec![v1::Color::RED, v1::Color(99)],
            maybe: Some(0),
            maybe_name: None,
            maybe_wide: Some(-1),
        }
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
