//! Property tests: arbitrary and mutated bytes never panic any parse,
//! validate or access path; every slot kind round-trips.

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

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Tree {
    value: u32,
    children: Vec<Tree>,
    label: Option<String>,
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

/// Reads every field of a view, iterating every list.
fn touch(v: AllView<'_>) -> usize {
    let parts = [
        v.b() as usize,
        v.u8_() as usize,
        v.u16_() as usize,
        v.u32_() as usize,
        v.u64_() as usize,
        v.i8_() as usize,
        v.i16_() as usize,
        v.i32_() as usize,
        v.i64_() as usize,
        v.f32_() as usize,
        v.f64_() as usize,
        v.hash()[31] as usize,
        v.body().len(),
        v.name().len(),
        v.label().len(),
        touch_inner(v.inner()),
        v.u64s().iter().fold(0usize, |a, x| a.wrapping_add(x as usize)),
        v.ids().iter().map(|x| x[0] as usize).sum(),
        v.blobs().iter().map(<[u8]>::len).sum(),
        v.blobs()
            .get(v.blobs().len().saturating_sub(1))
            .map_or(0, <[u8]>::len),
        v.names().iter().map(str::len).sum(),
        v.inners().iter().map(touch_inner).fold(0, usize::wrapping_add),
        v.inners().get(1).map_or(0, touch_inner),
        v.opt_i64().unwrap_or(0) as usize,
        v.opt_bytes().map_or(0, <[u8]>::len),
        v.opt_inner().map_or(0, touch_inner),
        format!("{v:?}").len(),
    ];
    parts.into_iter().fold(0, usize::wrapping_add)
}

fn touch_inner(v: InnerView<'_>) -> usize {
    (v.id() as usize)
        .wrapping_add(v.data().len())
        .wrapping_add(v.tags().iter().map(str::len).sum::<usize>())
}

fn touch_tree(v: TreeView<'_>) -> usize {
    (v.value() as usize)
        .wrapping_add(v.label().map_or(0, str::len))
        .wrapping_add(v.children().iter().map(touch_tree).fold(0, usize::wrapping_add))
}

/// Every path over arbitrary bytes: typed decode/view, raw readers.
fn exercise(bytes: &[u8]) {
    if let Ok(v) = All::view(bytes) {
        touch(v);
        // A buffer that validates must also decode, to the same values.
        let owned = All::decode(Bytes::copy_from_slice(bytes)).expect("view ok but decode failed");
        let again = owned.to_bytes().unwrap();
        touch(All::view(&again).expect("re-encoded message must validate"));
    } else {
        assert!(All::decode(Bytes::copy_from_slice(bytes)).is_err());
    }
    if let Ok(v) = Tree::view(bytes) {
        touch_tree(v);
        let _ = Tree::decode(Bytes::copy_from_slice(bytes));
    }
    if let Ok(msg) = Raw::parse(bytes) {
        if let Ok(root) = msg.root() {
            for off in (0..64).chain([u32::MAX as usize, usize::MAX - 3]) {
                let _ = root.get::<u64>(off);
                let _ = root.get::<bool>(off);
                let _ = root.fixed::<32>(off);
                let _ = root.bytes(off);
                let _ = root.text(off);
                if let Ok(Some(o)) = root.object(off) {
                    let _ = o.get::<u32>(0);
                    let _ = o.bytes(4);
                }
                for stride in [0, 1, 4, 8, 1 << 20] {
                    if let Ok(l) = root.list(off, stride) {
                        let _ = l.get::<u64>(0);
                        let _ = l.get::<u16>(l.len().saturating_sub(1));
                        let _ = l.fixed::<4>(1);
                        let _ = l.as_bytes();
                        let _ = l.object(0, stride);
                        let _ = l.object(usize::MAX / 2, 16);
                        let _ = l.object_ptr(0);
                        let _ = l.bytes_iter().take(64).count();
                    }
                }
            }
        }
    }
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)], cut: Option<usize>) -> Vec<u8> {
    for &(pos, kind, val) in edits {
        if bytes.is_empty() {
            break;
        }
        let pos = pos % bytes.len();
        match kind % 4 {
            0 => bytes[pos] = val,
            1 => bytes[pos] ^= 1 << (val % 8),
            2 => {
                // Overwrite a 32-bit word with a boundary value.
                let word: u32 = [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 16, 8][val as usize % 7];
                let end = (pos + 4).min(bytes.len());
                bytes[pos..end].copy_from_slice(&word.to_le_bytes()[..end - pos]);
            }
            _ => bytes[pos] = bytes[pos].wrapping_add(val),
        }
    }
    if let Some(c) = cut {
        let c = c % (bytes.len() + 1);
        bytes.truncate(c);
    }
    bytes
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
        touch(All::view(&bytes).unwrap());
    }

    #[test]
    fn floats_round_trip_bit_exact(x in any::<u64>(), y in any::<u32>()) {
        let v = All { f64_: f64::from_bits(x), f32_: f32::from_bits(y), ..All::default() };
        let d = All::decode(v.to_bytes().unwrap()).unwrap();
        prop_assert_eq!(d.f64_.to_bits(), x);
        prop_assert_eq!(d.f32_.to_bits(), y);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        exercise(&bytes);
    }

    #[test]
    fn random_bytes_behind_a_valid_header_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..512),
        root in 0u32..600,
        version in 1u16..3,
    ) {
        let size = 16 + body.len() as u32;
        let mut bytes = b"ZAP\0".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend_from_slice(&0u16.to_le_bytes());
        bytes.extend_from_slice(&root.to_le_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(&body);
        exercise(&bytes);
    }

    #[test]
    fn mutated_messages_never_panic(
        v in all(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..8),
        cut in proptest::option::weighted(0.2, any::<usize>()),
    ) {
        let bytes = mutate(v.to_bytes().unwrap().to_vec(), &edits, cut);
        exercise(&bytes);
    }

    #[test]
    fn mutated_trees_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let leaf = |v| Tree { value: v, children: vec![], label: Some("x".into()) };
        let t = Tree { value: 1, children: vec![leaf(2), Tree { value: 3, children: vec![leaf(4)], label: None }], label: None };
        exercise(&mutate(t.to_bytes().unwrap().to_vec(), &edits, None));
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
