//! Allocation counts on the hot paths, with a counting global allocator.
//! One test in this binary, so nothing else allocates concurrently.

use bytes::Bytes;
use zap::Message;
use zap::wire::Builder;
use zap_benches::alloc::{Counting, count};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(zap::Message, Debug, PartialEq)]
struct Block {
    id: [u8; 32],
    parent_id: [u8; 32],
    height: u64,
    timestamp: i64,
    body: Bytes,
}

#[test]
fn hot_paths_do_not_allocate() {
    let block = Block {
        id: [1; 32],
        parent_id: [2; 32],
        height: 10,
        timestamp: -3,
        body: Bytes::from(vec![9u8; 100 * 1024]),
    };
    let mut b = Builder::new();
    let encoded = Bytes::copy_from_slice(block.encode(&mut b).unwrap());

    // Warm builder: encoding again does not allocate.
    let (len, n) = count(|| block.encode(&mut b).unwrap().len());
    assert_eq!(len, encoded.len());
    assert_eq!(n, 0, "warm encode allocated");

    // The first clone of a `Bytes` made from an exact-size `Vec` promotes
    // it to a shared buffer (one allocation, a `bytes` crate detail).
    // Frames from the network (`BytesMut::freeze`) are shared already.
    drop(encoded.clone());
    // Owned decode: `body` is a refcounted slice of `encoded`.
    let (decoded, n) = count(|| Block::decode(encoded.clone()).unwrap());
    assert_eq!(n, 0, "decode allocated");
    assert_eq!(decoded, block);

    // Owned: validation, buffer kept, reads in place.
    let (owned, n) = count(|| zap::Owned::<Block>::decode(encoded.clone()).unwrap());
    assert_eq!(n, 0, "Owned::decode allocated");
    let (sum, n) = count(|| {
        let v = owned.view();
        v.height() + v.body()[0] as u64 + owned.slice(v.body()).len() as u64
    });
    assert_eq!(n, 0, "Owned reads allocated");
    assert_eq!(sum, 10 + 9 + 100 * 1024);

    // View: validation and reads in place.
    let (height, n) = count(|| {
        let v = Block::view(&encoded).unwrap();
        v.height() + v.body().len() as u64 + v.id()[0] as u64
    });
    assert_eq!(n, 0, "view allocated");
    assert_eq!(height, 10 + 100 * 1024 + 1);

    // `to_bytes` sizes its buffer once; `Bytes::from(Vec)` adds its shared
    // header when the (upper-bound) capacity exceeds the length.
    let (_, n) = count(|| block.to_bytes().unwrap());
    assert!(n <= 2, "to_bytes allocated {n} times");
}
