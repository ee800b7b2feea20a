//! Golden vectors (hand-derived hex in `testdata/`), checked both ways:
//! building gives exactly the file's bytes, parsing the file gives every
//! value back.

use bytes::Bytes;
use zap::wire::{Builder, Message as Raw, Version};
use zap::{DecodeErrorKind, Message};

fn hex(name: &str) -> Vec<u8> {
    let path = format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
        .collect()
}

fn build_golden(version: Version) -> Vec<u8> {
    let mut b = Builder::new();
    b.set_version(version);
    let mut root = b.object(24);
    root.set(0, 0xDEAD_BEEFu32);
    root.set_text(8, "zap");
    root.set_bytes(16, &[1, 2, 3, 4]);
    let root = root.finish();
    b.finish(root).expect("fits").to_vec()
}

#[test]
fn golden_v1_builds_byte_exact() {
    assert_eq!(build_golden(Version::V1), hex("golden_v1.hex"));
    assert_eq!(hex("golden_v1.hex").len(), 47);
}

#[test]
fn golden_v2_builds_byte_exact() {
    assert_eq!(build_golden(Version::V2), hex("golden_v2.hex"));
}

#[test]
fn golden_parses_every_field() {
    for (file, version) in [
        ("golden_v1.hex", Version::V1),
        ("golden_v2.hex", Version::V2),
    ] {
        let bytes = hex(file);
        let msg = Raw::parse(&bytes).unwrap();
        assert_eq!(msg.header().version, version);
        assert_eq!(msg.header().flags, 0);
        assert_eq!(msg.header().root, 16);
        assert_eq!(msg.header().size, 47);
        let root = msg.root().unwrap();
        assert_eq!(root.get::<u32>(0).unwrap(), 0xDEAD_BEEF);
        assert_eq!(root.get::<u32>(4).unwrap(), 0);
        assert_eq!(root.text(8).unwrap(), "zap");
        assert_eq!(root.bytes(16).unwrap(), &[1, 2, 3, 4]);
    }
}

/// The golden layout as a derived type with explicit offsets (no size word).
#[derive(zap::Message, Debug, PartialEq)]
struct Golden {
    #[zap(offset = 0)]
    value: u32,
    #[zap(offset = 8)]
    name: String,
    #[zap(offset = 16)]
    data: Bytes,
}

#[test]
fn golden_through_derive_both_ways() {
    let g = Golden {
        value: 0xDEAD_BEEF,
        name: "zap".into(),
        data: Bytes::from_static(&[1, 2, 3, 4]),
    };
    let mut b = Builder::new();
    assert_eq!(g.encode(&mut b).unwrap(), &hex("golden_v1.hex")[..]);
    let decoded = Golden::decode(Bytes::from(hex("golden_v2.hex"))).unwrap();
    assert_eq!(decoded, g);
    let bytes = hex("golden_v1.hex");
    let view = Golden::view(&bytes).unwrap();
    assert_eq!(view.value(), 0xDEAD_BEEF);
    assert_eq!(view.name(), "zap");
    assert_eq!(view.data(), &[1, 2, 3, 4]);
}

#[test]
fn pointer_back_into_header_is_invalid() {
    // The text slot is at 24; rel 0xFFFF_FFF0 reaches 8 with 32-bit
    // wrap-around (a Go reader reads it as null). Here it is an error.
    let mut bytes = hex("golden_v1.hex");
    bytes[24..28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    let msg = Raw::parse(&bytes).unwrap();
    let err = msg.root().unwrap().text(8).unwrap_err();
    assert!(matches!(
        err.kind(),
        DecodeErrorKind::PointerOutOfBounds { .. }
    ));
    assert_eq!(err.offset(), 24);
    let err = Golden::decode(Bytes::from(bytes)).unwrap_err();
    assert_eq!(err.field(), Some("Golden.name"));
    assert!(matches!(
        err.kind(),
        DecodeErrorKind::PointerOutOfBounds { .. }
    ));

    // A root offset inside the header is rejected too.
    let mut bytes = hex("golden_v1.hex");
    bytes[8] = 8;
    assert!(Raw::parse(&bytes).unwrap().root().is_err());
    assert!(Golden::view(&bytes).is_err());
}

#[test]
fn scalars_both_ways() {
    let mut b = Builder::new();
    let mut o = b.object(48);
    o.set(0, true)
        .set(1, 0xABu8)
        .set(2, 0x1234u16)
        .set(4, 0xDEAD_BEEFu32)
        .set(8, 0x0102_0304_0506_0708u64)
        .set(16, -2i8)
        .set(18, -300i16)
        .set(20, -70000i32)
        .set(24, -5i64)
        .set(32, 1.5f32)
        .set(40, -2.25f64);
    let root = o.finish();
    let want = hex("scalars.hex");
    assert_eq!(b.finish(root).unwrap(), &want[..]);

    let o = Raw::parse(&want).unwrap().root().unwrap();
    assert!(o.get::<bool>(0).unwrap());
    assert_eq!(o.get::<u8>(1).unwrap(), 0xAB);
    assert_eq!(o.get::<u16>(2).unwrap(), 0x1234);
    assert_eq!(o.get::<u32>(4).unwrap(), 0xDEAD_BEEF);
    assert_eq!(o.get::<u64>(8).unwrap(), 0x0102_0304_0506_0708);
    assert_eq!(o.get::<i8>(16).unwrap(), -2);
    assert_eq!(o.get::<i16>(18).unwrap(), -300);
    assert_eq!(o.get::<i32>(20).unwrap(), -70000);
    assert_eq!(o.get::<i64>(24).unwrap(), -5);
    assert_eq!(o.get::<f32>(32).unwrap(), 1.5);
    assert_eq!(o.get::<f64>(40).unwrap(), -2.25);
    assert!(o.get::<u64>(44).is_err(), "read past the end");
}

#[test]
fn fixed_and_nested_forward_and_backward() {
    // Child after the root.
    let mut b = Builder::new();
    let mut root = b.object(40);
    root.set_fixed(0, &[0x11; 32]).set(36, 7u32);
    let mut child = root.builder().object(8);
    child.set(0, 42u64);
    let child = child.finish();
    root.set_object(32, child);
    let root = root.finish();
    assert_eq!(
        b.finish(root).unwrap(),
        &hex("fixed_nested_forward.hex")[..]
    );

    // Child before the root.
    let mut b = Builder::new();
    let mut child = b.object(8);
    child.set(0, 42u64);
    let child = child.finish();
    let mut root = b.object(40);
    root.set_fixed(0, &[0x11; 32])
        .set(36, 7u32)
        .set_object(32, child);
    let root = root.finish();
    assert_eq!(
        b.finish(root).unwrap(),
        &hex("fixed_nested_backward.hex")[..]
    );

    for file in ["fixed_nested_forward.hex", "fixed_nested_backward.hex"] {
        let bytes = hex(file);
        let o = Raw::parse(&bytes).unwrap().root().unwrap();
        assert_eq!(o.fixed::<32>(0).unwrap(), &[0x11; 32]);
        assert_eq!(o.get::<u32>(36).unwrap(), 7);
        let child = o.object(32).unwrap().expect("non-null");
        assert_eq!(child.get::<u64>(0).unwrap(), 42);
    }
}

#[test]
fn lists_both_ways() {
    let mut b = Builder::new();
    let mut root = b.object(32);
    let u16s = root.builder().scalar_list(&[1u16, 2, 3]);
    let var = root
        .builder()
        .bytes_list([&b"ab"[..], &b""[..], &b"xyz"[..]]);
    let mut ptrs = root.builder().ptr_list(2);
    for i in 0..2 {
        let mut o = ptrs.builder().object(8);
        o.set(0, i as u64 + 1);
        let o = o.finish();
        ptrs.set(i, o);
    }
    let ptrs = ptrs.finish();
    let mut inline = root.builder().inline_list(8, 2);
    for i in 0..2 {
        let mut e = inline.element(i);
        e.set(0, 5 + 2 * i as u32).set(4, 6 + 2 * i as u32);
    }
    let inline = inline.finish();
    root.set_list(0, u16s)
        .set_list(8, var)
        .set_list(16, ptrs)
        .set_list(24, inline);
    let root = root.finish();
    let want = hex("lists.hex");
    assert_eq!(b.finish(root).unwrap(), &want[..]);

    let o = Raw::parse(&want).unwrap().root().unwrap();
    let l = o.list(0, 2).unwrap();
    assert_eq!(
        (0..l.len())
            .map(|i| l.get::<u16>(i).unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(l.get::<u16>(3).is_err());
    let l = o.list(8, 4).unwrap();
    let items: Vec<&[u8]> = l.bytes_iter().map(Result::unwrap).collect();
    assert_eq!(items, [&b"ab"[..], b"", b"xyz"]);
    let l = o.list(16, 4).unwrap();
    for i in 0..2 {
        let obj = l.object_ptr(i).unwrap().unwrap();
        assert_eq!(obj.get::<u64>(0).unwrap(), i as u64 + 1);
    }
    let l = o.list(24, 8).unwrap();
    for i in 0..2 {
        let e = l.object(i, 8).unwrap();
        assert_eq!(e.get::<u32>(0).unwrap(), 5 + 2 * i as u32);
        assert_eq!(e.get::<u32>(4).unwrap(), 6 + 2 * i as u32);
    }
}

#[derive(zap::Message, Debug, PartialEq)]
struct EvolveV1 {
    a: u32,
    b: Bytes,
}

#[test]
fn derived_layout_has_size_word() {
    let v = EvolveV1 {
        a: 42,
        b: Bytes::from_static(b"hi"),
    };
    let want = hex("derived_evolve_v1.hex");
    assert_eq!(&v.to_bytes().unwrap()[..], &want[..]);
    assert_eq!(EvolveV1::decode(Bytes::from(want)).unwrap(), v);
}
