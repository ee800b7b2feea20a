//! `#[derive(zap::Message)]`: every field kind, zero-copy decoding, views,
//! schema evolution both ways, and the validation limits.

use bytes::Bytes;
use zap::wire::Builder;
use zap::{DecodeErrorKind, Message, Text};

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Inner {
    id: u32,
    data: Bytes,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Kitchen {
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
    u32s: Vec<u32>,
    raw: Vec<u8>,
    ids: Vec<[u8; 20]>,
    blobs: Vec<Bytes>,
    names: Vec<String>,
    labels: Vec<Text>,
    inners: Vec<Inner>,
    opt_u64: Option<u64>,
    opt_fixed: Option<[u8; 4]>,
    opt_bytes: Option<Bytes>,
    opt_name: Option<String>,
    opt_inner: Option<Inner>,
    opt_list: Option<Vec<u16>>,
    r#type: u8,
}

fn kitchen() -> Kitchen {
    Kitchen {
        b: true,
        u8_: 0xAB,
        u16_: 0xBEEF,
        u32_: 0xDEAD_BEEF,
        u64_: u64::MAX - 1,
        i8_: -8,
        i16_: -16_000,
        i32_: i32::MIN,
        i64_: -1,
        f32_: 3.25,
        f64_: -1e300,
        hash: [7; 32],
        body: Bytes::from(vec![0x5A; 1000]),
        name: "héllo".into(),
        label: Text::from_static("zero-copy"),
        inner: Inner {
            id: 9,
            data: Bytes::from_static(b"inner"),
        },
        u32s: vec![1, 2, 3, u32::MAX],
        raw: vec![9, 8, 7],
        ids: vec![[1; 20], [2; 20]],
        blobs: vec![
            Bytes::from_static(b"a"),
            Bytes::new(),
            Bytes::from_static(b"ccc"),
        ],
        names: vec!["x".into(), "".into(), "yz".into()],
        labels: vec![Text::from_static("l1"), Text::from_static("l2")],
        inners: vec![
            Inner {
                id: 1,
                data: Bytes::from_static(b"one"),
            },
            Inner::default(),
        ],
        opt_u64: Some(0),
        opt_fixed: Some([1, 2, 3, 4]),
        opt_bytes: Some(Bytes::new()),
        opt_name: None,
        opt_inner: Some(Inner::default()),
        opt_list: Some(vec![]),
        r#type: 3,
    }
}

fn within(outer: &[u8], inner: &[u8]) -> bool {
    let o = outer.as_ptr_range();
    let i = inner.as_ptr_range();
    !inner.is_empty() && o.start <= i.start && i.end <= o.end
}

#[test]
fn every_field_kind_round_trips() {
    let k = kitchen();
    let bytes = k.to_bytes().unwrap();
    assert_eq!(Kitchen::decode(bytes.clone()).unwrap(), k);

    let mut b = Builder::new();
    assert_eq!(k.encode(&mut b).unwrap(), &bytes[..]);

    let d = Kitchen::default();
    assert_eq!(Kitchen::decode(d.to_bytes().unwrap()).unwrap(), d);
}

#[test]
fn bytes_and_text_fields_are_slices_of_the_input() {
    let bytes = kitchen().to_bytes().unwrap();
    let d = Kitchen::decode(bytes.clone()).unwrap();
    assert!(within(&bytes, &d.body), "body was copied");
    assert!(within(&bytes, &d.inner.data), "nested bytes were copied");
    assert!(within(&bytes, d.label.as_bytes()), "text was copied");
    assert!(within(&bytes, &d.blobs[0]), "list element was copied");
    assert!(within(&bytes, d.labels[1].as_bytes()));
    assert!(within(&bytes, &d.inners[0].data));
}

#[test]
fn view_reads_every_field_in_place() {
    let k = kitchen();
    let bytes = k.to_bytes().unwrap();
    let v = Kitchen::view(&bytes).unwrap();
    assert!(v.b());
    assert_eq!(v.u8_(), k.u8_);
    assert_eq!(v.u16_(), k.u16_);
    assert_eq!(v.u32_(), k.u32_);
    assert_eq!(v.u64_(), k.u64_);
    assert_eq!(v.i8_(), k.i8_);
    assert_eq!(v.i16_(), k.i16_);
    assert_eq!(v.i32_(), k.i32_);
    assert_eq!(v.i64_(), k.i64_);
    assert_eq!(v.f32_(), k.f32_);
    assert_eq!(v.f64_(), k.f64_);
    assert_eq!(v.hash(), &k.hash);
    assert_eq!(v.body(), &k.body[..]);
    assert!(within(&bytes, v.body()));
    assert_eq!(v.name(), "héllo");
    assert_eq!(v.label(), "zero-copy");
    assert_eq!(v.inner().id(), 9);
    assert_eq!(v.inner().data(), b"inner");
    assert_eq!(v.u32s().iter().collect::<Vec<_>>(), k.u32s);
    assert_eq!(v.u32s().get(3), Some(u32::MAX));
    assert_eq!(v.u32s().get(4), None);
    assert_eq!(v.raw().iter().collect::<Vec<_>>(), k.raw);
    assert_eq!(v.ids().get(1), Some(&[2; 20]));
    assert_eq!(
        v.blobs().iter().collect::<Vec<_>>(),
        [&b"a"[..], b"", b"ccc"]
    );
    assert_eq!(v.blobs().get(2), Some(&b"ccc"[..]));
    assert_eq!(v.names().iter().collect::<Vec<_>>(), ["x", "", "yz"]);
    assert_eq!(v.labels().len(), 2);
    assert_eq!(v.inners().get(0).unwrap().data(), b"one");
    assert_eq!(v.inners().get(1).unwrap().id(), 0);
    assert_eq!(v.opt_u64(), Some(0));
    assert_eq!(v.opt_fixed(), Some(&[1, 2, 3, 4]));
    assert_eq!(v.opt_bytes(), Some(&b""[..]));
    assert_eq!(v.opt_name(), None);
    assert!(v.opt_inner().is_some());
    assert_eq!(v.opt_list().map(|l| l.len()), Some(0));
    assert_eq!(v.r#type(), 3);
    // Views are Debug.
    assert!(format!("{v:?}").contains("héllo"));
}

#[test]
fn options_distinguish_absent_from_zero_and_empty() {
    let mut k = Kitchen {
        opt_u64: None,
        opt_fixed: None,
        opt_bytes: None,
        opt_inner: None,
        opt_list: None,
        ..Kitchen::default()
    };
    let d = Kitchen::decode(k.to_bytes().unwrap()).unwrap();
    assert_eq!(d.opt_u64, None);
    assert_eq!(d.opt_bytes, None);
    assert_eq!(d.opt_inner, None);
    assert_eq!(d.opt_list, None);
    k.opt_u64 = Some(0);
    k.opt_bytes = Some(Bytes::new());
    k.opt_name = Some(String::new());
    k.opt_list = Some(vec![]);
    let d = Kitchen::decode(k.to_bytes().unwrap()).unwrap();
    assert_eq!(d.opt_u64, Some(0));
    assert_eq!(d.opt_bytes, Some(Bytes::new()));
    assert_eq!(d.opt_name, Some(String::new()));
    assert_eq!(d.opt_list, Some(vec![]));
}

// Schema evolution: V2 adds fields at the end of V1 (and of a nested type).

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct PointV1 {
    x: i32,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct PointV2 {
    x: i32,
    y: i32,
    tag: Option<String>,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct RecordV1 {
    id: u64,
    name: String,
    point: PointV1,
    points: Vec<PointV1>,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct RecordV2 {
    id: u64,
    name: String,
    point: PointV2,
    points: Vec<PointV2>,
    extra: Bytes,
    count: Option<u32>,
    more: Vec<u64>,
}

#[test]
fn old_writer_new_reader_gets_defaults() {
    let old = RecordV1 {
        id: 7,
        name: "old".into(),
        point: PointV1 { x: -1 },
        points: vec![PointV1 { x: 1 }, PointV1 { x: 2 }],
    };
    let new = RecordV2::decode(old.to_bytes().unwrap()).unwrap();
    assert_eq!(
        new,
        RecordV2 {
            id: 7,
            name: "old".into(),
            point: PointV2 {
                x: -1,
                ..Default::default()
            },
            points: vec![
                PointV2 {
                    x: 1,
                    ..Default::default()
                },
                PointV2 {
                    x: 2,
                    ..Default::default()
                }
            ],
            extra: Bytes::new(),
            count: None,
            more: vec![],
        }
    );
    let bytes = old.to_bytes().unwrap();
    let v = RecordV2::view(&bytes).unwrap();
    assert_eq!(v.count(), None);
    assert_eq!(v.point().tag(), None);
    assert!(v.more().is_empty());
}

#[test]
fn new_writer_old_reader_skips_new_fields() {
    let new = RecordV2 {
        id: 8,
        name: "new".into(),
        point: PointV2 {
            x: 5,
            y: 6,
            tag: Some("t".into()),
        },
        points: vec![PointV2 {
            x: 3,
            y: 4,
            tag: None,
        }],
        extra: Bytes::from_static(b"extra"),
        count: Some(3),
        more: vec![1, 2, 3],
    };
    let old = RecordV1::decode(new.to_bytes().unwrap()).unwrap();
    assert_eq!(
        old,
        RecordV1 {
            id: 8,
            name: "new".into(),
            point: PointV1 { x: 5 },
            points: vec![PointV1 { x: 3 }],
        }
    );
}

#[test]
fn errors_name_the_field() {
    let rec = RecordV1 {
        id: 1,
        name: "n".into(),
        point: PointV1 { x: 1 },
        points: vec![],
    };
    let mut bytes = rec.to_bytes().unwrap().to_vec();
    // Break the `name` slot's length: the field comes first in the error.
    let root = 16;
    let name_slot = root + 16; // size word @0, id @8 (align 8), name @16
    bytes[name_slot + 4..name_slot + 8].copy_from_slice(&1000u32.to_le_bytes());
    let err = RecordV1::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.field(), Some("RecordV1.name"));
    assert_eq!(err.offset(), name_slot);
    assert!(err.to_string().contains("RecordV1.name"), "{err}");
}

#[test]
fn size_word_below_four_is_rejected() {
    let mut bytes = PointV1 { x: 1 }.to_bytes().unwrap().to_vec();
    bytes[16..20].copy_from_slice(&3u32.to_le_bytes());
    let err = PointV1::validate(&bytes).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::BadObjectSize(3));
    bytes[16..20].copy_from_slice(&100u32.to_le_bytes());
    assert!(matches!(
        PointV1::validate(&bytes).unwrap_err().kind(),
        DecodeErrorKind::OutOfBounds { .. }
    ));
}

#[test]
fn invalid_utf8_is_rejected() {
    let mut bytes = PointV2 {
        x: 0,
        y: 0,
        tag: Some("ok".into()),
    }
    .to_bytes()
    .unwrap()
    .to_vec();
    let n = bytes.len();
    bytes[n - 2] = 0xFF;
    let err = PointV2::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::InvalidUtf8);
    assert_eq!(err.field(), Some("PointV2.tag"));
}

// Recursion and aliasing.

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Tree {
    value: u32,
    children: Vec<Tree>,
}

#[test]
fn recursive_types_round_trip() {
    let t = Tree {
        value: 1,
        children: vec![
            Tree {
                value: 2,
                children: vec![Tree {
                    value: 3,
                    children: vec![],
                }],
            },
            Tree::default(),
        ],
    };
    assert_eq!(Tree::decode(t.to_bytes().unwrap()).unwrap(), t);
}

#[test]
fn pointer_cycle_is_too_deep_not_a_stack_overflow() {
    // A tree whose single child pointer points back at the root object.
    let t = Tree {
        value: 1,
        children: vec![Tree::default()],
    };
    let mut bytes = t.to_bytes().unwrap().to_vec();
    // Root @16: size word, value @4, children list slot @8 -> list at 32
    // holding one i32 rel; point it back at the root (16).
    let list_slot = 16 + 8;
    let rel = i32::from_le_bytes(bytes[list_slot..list_slot + 4].try_into().unwrap());
    let elem = (list_slot as i64 + rel as i64) as usize;
    let back = 16i32 - elem as i32;
    bytes[elem..elem + 4].copy_from_slice(&back.to_le_bytes());
    let err = Tree::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::TooDeep);
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Leaf {
    values: Vec<u64>,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Wide {
    leaves: Vec<Leaf>,
}

#[test]
fn aliased_pointers_hit_the_traversal_limit() {
    // 2,000 pointers to one leaf of 2,000 u64s: 16 KB on the wire, but a
    // naive walk (or owned decode) would touch 32 MB.
    let w = Wide {
        leaves: vec![
            Leaf {
                values: vec![7; 2000],
            },
            Leaf::default(),
        ],
    };
    let mut bytes = w.to_bytes().unwrap().to_vec();
    // Rewrite: make the list 2,000 long, every element aliasing element 0.
    let list_slot = 16 + 4;
    let rel = i32::from_le_bytes(bytes[list_slot..list_slot + 4].try_into().unwrap());
    let list = (list_slot as i64 + rel as i64) as usize;
    let first = list as i64 + i32::from_le_bytes(bytes[list..list + 4].try_into().unwrap()) as i64;
    let n = 2000usize;
    // Append a new pointer list at the end and point the slot at it.
    while !bytes.len().is_multiple_of(8) {
        bytes.push(0);
    }
    let new_list = bytes.len();
    for i in 0..n {
        let pos = new_list + 4 * i;
        bytes.extend_from_slice(&((first - pos as i64) as i32).to_le_bytes());
    }
    bytes[list_slot..list_slot + 4].copy_from_slice(&((new_list - list_slot) as i32).to_le_bytes());
    bytes[list_slot + 4..list_slot + 8].copy_from_slice(&(n as u32).to_le_bytes());
    let size = bytes.len() as u32;
    bytes[12..16].copy_from_slice(&size.to_le_bytes());
    let err = Wide::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::TraversalLimit);
}

#[test]
fn builder_is_reused_across_messages() {
    let mut b = Builder::new();
    let k = kitchen();
    let first = k.encode(&mut b).unwrap().to_vec();
    let p = PointV1 { x: 3 };
    let small = p.encode(&mut b).unwrap().to_vec();
    assert_eq!(PointV1::decode(Bytes::from(small)).unwrap(), p);
    assert_eq!(k.encode(&mut b).unwrap(), &first[..]);
}

#[test]
fn owned_messages_read_in_place_and_slice_without_copy() {
    use zap::Owned;
    let k = kitchen();
    let bytes = k.to_bytes().unwrap();
    let owned = Owned::<Kitchen>::decode(bytes.clone()).unwrap();
    let v = owned.view();
    assert_eq!(v.u64_(), k.u64_);
    assert_eq!(v.inner().data(), b"inner");
    let body = owned.slice(v.body());
    assert_eq!(body, k.body);
    assert!(within(&bytes, &body), "slice copied");
    assert!(owned.slice(&[]).is_empty());
    // The struct built from an Owned shares the buffer too.
    let s = owned.to_message();
    assert_eq!(s, k);
    assert!(within(&bytes, &s.body));
    assert!(within(&bytes, &s.inner.data));
    // Owned is 'static + Send + Sync and clones cheaply.
    fn assert_send_sync<T: Send + Sync + 'static>(_: &T) {}
    assert_send_sync(&owned);
    let again = owned.clone();
    assert_eq!(again.view().name(), "héllo");
    assert!(format!("{again:?}").contains("KitchenView"));
    assert_eq!(again.into_bytes(), bytes);
    // Invalid input is an error, not a panic.
    assert!(Owned::<Kitchen>::decode(Bytes::from_static(b"ZAP\0")).is_err());
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct Named {
    text: String,
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct ManyNamed {
    items: Vec<Named>,
}

#[derive(zap::Message, Debug, Clone, PartialEq)]
struct Big {
    a: [u8; 4096],
}

#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
struct ManyBig {
    items: Vec<Big>,
}

/// Appends a pointer list of `n` elements all pointing at `target` (or null)
/// and points the list slot at `slot` to it; fixes the header size.
fn alias_list(mut bytes: Vec<u8>, slot: usize, target: Option<usize>, n: usize) -> Vec<u8> {
    while !bytes.len().is_multiple_of(8) {
        bytes.push(0);
    }
    let list = bytes.len();
    for i in 0..n {
        let rel = target.map_or(0, |t| (t as i64 - (list + 4 * i) as i64) as i32);
        bytes.extend_from_slice(&rel.to_le_bytes());
    }
    bytes[slot..slot + 4].copy_from_slice(&((list - slot) as i32).to_le_bytes());
    bytes[slot + 4..slot + 8].copy_from_slice(&(n as u32).to_le_bytes());
    let size = bytes.len() as u32;
    bytes[12..16].copy_from_slice(&size.to_le_bytes());
    bytes
}

#[test]
fn aliased_text_is_charged_per_visit() {
    // One 64 KB string, referenced 10,000 times: 40 KB more on the wire,
    // 640 MB of UTF-8 checking (and String copies) if not charged.
    let one = ManyNamed {
        items: vec![Named {
            text: "x".repeat(64 << 10),
        }],
    };
    let bytes = one.to_bytes().unwrap().to_vec();
    let slot = 16 + 4;
    let rel = i32::from_le_bytes(bytes[slot..slot + 4].try_into().unwrap());
    let list = (slot as i64 + rel as i64) as usize;
    let elem = (list as i64 + i32::from_le_bytes(bytes[list..list + 4].try_into().unwrap()) as i64)
        as usize;
    let bytes = alias_list(bytes, slot, Some(elem), 10_000);
    let err = ManyNamed::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::TraversalLimit);
}

#[test]
fn null_elements_are_charged_their_decoded_size() {
    // 100,000 null pointers (400 KB) would decode to 100,000 default
    // `Big`s: 400 MB.
    let bytes = ManyBig::default().to_bytes().unwrap().to_vec();
    let bytes = alias_list(bytes, 16 + 4, None, 100_000);
    let err = ManyBig::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.kind(), &DecodeErrorKind::TraversalLimit);
    // A few null elements are fine (they read as defaults).
    let bytes = alias_list(ManyBig::default().to_bytes().unwrap().to_vec(), 20, None, 3);
    assert_eq!(ManyBig::decode(Bytes::from(bytes)).unwrap().items.len(), 3);
}

#[test]
fn owned_slice_of_a_foreign_slice_copies_instead_of_panicking() {
    use zap::Owned;
    // An object whose size word leaves out `hash`: the view returns the
    // static default, which is not inside the buffer.
    #[derive(zap::Message)]
    struct H {
        hash: [u8; 32],
    }
    let mut bytes = H { hash: [1; 32] }.to_bytes().unwrap().to_vec();
    bytes[16..20].copy_from_slice(&4u32.to_le_bytes());
    let o = Owned::<H>::decode(Bytes::from(bytes)).unwrap();
    assert_eq!(o.slice(o.view().hash()), Bytes::from_static(&[0; 32]));
}

/// `#[zap(number = N)]`: field N at offset 8·N after the size word, so a
/// field added with any new number (here below, between and above) keeps
/// both directions working.
#[test]
fn numbered_layout_evolves_with_any_new_number() {
    #[derive(zap::Message, Debug, PartialEq, Default)]
    struct Old {
        #[zap(number = 2)]
        a: u32,
        #[zap(number = 4)]
        b: Bytes,
    }
    #[derive(zap::Message, Debug, PartialEq, Default)]
    struct New {
        #[zap(number = 1)]
        first: u64,
        #[zap(number = 2)]
        a: u32,
        #[zap(number = 3)]
        middle: String,
        #[zap(number = 4)]
        b: Bytes,
        #[zap(number = 9)]
        last: Option<u32>,
    }
    let old = Old {
        a: 7,
        b: Bytes::from_static(b"bee"),
    };
    let bytes = old.to_bytes().unwrap();
    // Header, then the object: size word 40 = 8 * (4 + 1), a at 16, b at 32.
    let obj = &bytes[16..];
    assert_eq!(u32::from_le_bytes(obj[0..4].try_into().unwrap()), 40);
    assert_eq!(u32::from_le_bytes(obj[16..20].try_into().unwrap()), 7);
    let new = New::decode(bytes).unwrap();
    assert_eq!(
        (new.a, &new.b[..], new.first, new.last),
        (7, &b"bee"[..], 0, None)
    );
    assert!(new.middle.is_empty());

    let new = New {
        first: 1,
        a: 2,
        middle: "m".into(),
        b: Bytes::from_static(b"b"),
        last: Some(9),
    };
    let old = Old::decode(new.to_bytes().unwrap()).unwrap();
    assert_eq!(
        old,
        Old {
            a: 2,
            b: Bytes::from_static(b"b")
        }
    );
}
