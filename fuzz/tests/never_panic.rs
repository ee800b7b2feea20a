//! Arbitrary and mutated bytes never panic any parse, validate or access
//! path ([`zap_fuzz::exercise`]), as property tests and as a short run of
//! the fuzz loop.

use proptest::prelude::*;
use zap::Message;
use zap_fuzz::{All, Fuzzer, Inner, Tree, exercise, seeds};

#[test]
fn fuzz_loop_smoke_run() {
    let mut f = Fuzzer::new(42, Vec::new());
    for _ in 0..50_000 {
        f.step();
    }
    assert_eq!(f.runs, 50_000);
    assert!(
        f.corpus_len() > seeds().len(),
        "no new outcome was ever reached"
    );
}

#[test]
fn seeds_validate() {
    // The seeds must be valid, or the fuzzer only explores header errors.
    for s in seeds() {
        let valid = All::validate(&s).is_ok() || Tree::validate(&s).is_ok();
        assert!(
            valid || s.len() == 47,
            "seed of {} bytes is invalid",
            s.len()
        );
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
                let word: u32 =
                    [0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 16, 8][val as usize % 7];
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

fn inner() -> impl Strategy<Value = Inner> {
    (
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..20),
        proptest::collection::vec(".{0,6}", 0..3),
    )
        .prop_map(|(id, data, tags)| Inner {
            id,
            data: data.into(),
            tags,
        })
}

fn all() -> impl Strategy<Value = All> {
    (
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..200),
        ".{0,12}",
        inner(),
        proptest::collection::vec(any::<u64>(), 0..8),
        proptest::collection::vec(inner(), 0..3),
        proptest::option::of(inner()),
    )
        .prop_map(|(u64_, body, name, inner, u64s, inners, opt_inner)| All {
            u64_,
            body: body.into(),
            name,
            inner,
            u64s,
            inners,
            opt_inner,
            ..All::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
        exercise(&mutate(v.to_bytes().unwrap().to_vec(), &edits, cut));
    }

    #[test]
    fn mutated_trees_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        let tree = seeds()[2].clone();
        exercise(&mutate(tree, &edits, None));
    }
}
