use std::collections::HashMap;

// Types the compiler rejects through `zap::codegen::Field`: each error
// points at its field's type, all in one build.
#[derive(zap::Message)]
struct Bad {
    ok: u32,
    map: HashMap<u32, u32>,
    boxed: Box<[u8]>,
    size: usize,
    maps: Vec<HashMap<u8, u8>>,
}

fn main() {}
