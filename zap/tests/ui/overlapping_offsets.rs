#[derive(zap::Message)]
struct Overlap {
    #[zap(offset = 0)]
    a: u64,
    #[zap(offset = 4)]
    b: u32,
}

fn main() {}
