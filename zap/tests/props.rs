//! Property tests: every slot kind round-trips, through the builder, the
//! owned decoder and the view. (Arbitrary and mutated bytes are in the
//! `zap-fuzz` crate's tests, with the fuzz target.)

use bytes::Bytes;
use proptest::prelude::*;
use zap::wire::{Builder, Message as Raw};
use zap::{Message, Text};

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Inner {
    id: u32,
    data: Bytes,
    tags: Vec<String>,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct All {
    b: bool,
    u8_: u8,
    u16_: u16,
    u32_: u32,
    u64_: u64,
    i8_: i8,
    i16_: i16,
    i32_: i32,
    i64_: i64,
    f32_: f32,
    f64_: f64,
    hash: [u8; 32],
    body: Bytes,
    name: String,
    label: Text,
    inner: Inner,
    u64s: Vec<u64>,
    ids: Vec<[u8; 20]>,
    blobs: Vec<Bytes>,
    names: Vec<String>,
    inners: Vec<Inner>,
    opt_i64: Option<i64>,
    opt_bytes: Option<Bytes>,
    opt_inner: Option<Inner>,
}

fn inner() -> impl Strategy<Value = Inner> {
    (
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(".{0,8}", 0..4),
    )
        .prop_map(|(id, data, tags)| Inner {
            id,
            data: data.into(),
            tags,
        })
}

prop_compose! {
    fn scalars()(
        b in any::<bool>(), u8_ in any::<u8>(), u16_ in any::<u16>(), u32_ in any::<u32>(),
        u64_ in any::<u64>(), i8_ in any::<i8>(), i16_ in any::<i16>(), i32_ in any::<i32>(),
        i64_ in any::<i64>(), f32_ in -1e30f32..1e30, f64_ in -1e300f64..1e300,
    ) -> All {
        All { b, u8_, u16_, u32_, u64_, i8_, i16_, i32_, i64_, f32_, f64_, ..All::default() }
    }
}

prop_compose! {
    fn all()(
        base in scalars(),
        hash in any::<[u8; 32]>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
        name in ".{0,20}",
        label in ".{0,20}",
        inner in inner(),
        u64s in proptest::collection::vec(any::<u64>(), 0..20),
        ids in proptest::collection::vec(any::<[u8; 20]>(), 0..5),
        blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..5),
        names in proptest::collection::vec(".{0,10}", 0..5),
        inners in proptest::collection::vec(inner(), 0..4),
        opt_i64 in any::<Option<i64>>(),
        opt_bytes in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10)),
        opt_inner in proptest::option::of(inner()),
    ) -> All {
        All {
            hash,
            body: body.into(),
            name,
            label: Text::from(label),
            inner,
            u64s,
            ids,
            blobs: blobs.into_iter().map(Bytes::from).collect(),
            names,
            inners,
            opt_i64,
            opt_bytes: opt_bytes.map(Bytes::from),
            opt_inner,
            ..base
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_slot_kind_round_trips(v in all()) {
        let bytes = v.to_bytes().unwrap();
        let d = All::decode(bytes.clone()).unwrap();
        prop_assert_eq!(&d, &v);
        let mut b = Builder::new();
        prop_assert_eq!(d.encode(&mut b).unwrap(), &bytes[..]);
        let v = All::view(&bytes).unwrap();
        prop_assert_eq!(v.body(), &d.body[..]);
        prop_assert_eq!(v.inners().len(), d.inners.len());
        prop_assert_eq!(v.names().iter().collect::<Vec<_>>(), d.names.iter().map(String::as_str).collect::<Vec<_>>());
        prop_assert_eq!(v.opt_inner().map(|i| i.id()), d.opt_inner.as_ref().map(|i| i.id));
    }

    #[test]
    fn floats_round_trip_bit_exact(x in any::<u64>(), y in any::<u32>()) {
        let v = All { f64_: f64::from_bits(x), f32_: f32::from_bits(y), ..All::default() };
        let d = All::decode(v.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(d.f64_.to_bits(), x);
        prop_assert_eq!(d.f32_.to_bits(), y);
    }

    #[test]
    fn raw_scalar_slots_round_trip(off in 0usize..56, a in any::<u64>(), b in any::<i16>(), c in any::<bool>()) {
        let mut builder = Builder::new();
        let mut o = builder.object(72);
        o.set(off, a).set(off + 8, b).set(off + 10, c);
        let root = o.finish();
        let bytes = builder.finish(root).unwrap().to_vec();
        let o = Raw::parse(&bytes).unwrap().root().unwrap();
        prop_assert_eq!(o.get::<u64>(off).unwrap(), a);
        prop_assert_eq!(o.get::<i16>(off + 8).unwrap(), b);
        prop_assert_eq!(o.get::<bool>(off + 10).unwrap(), c);
    }
}
