#[derive(zap::Message)]
struct Numbers {
    #[zap(number = 0)]
    zero: u32,
    #[zap(number = 5000)]
    big: u32,
    #[zap(number = 3)]
    a: u32,
    #[zap(number = 3)]
    again: u32,
    missing: u32,
}

#[derive(zap::Message)]
struct Both {
    #[zap(number = 1)]
    a: u32,
    #[zap(offset = 8)]
    b: u32,
}

#[derive(zap::Message)]
struct Wide {
    #[zap(number = 1)]
    wide: Option<u64>,
    #[zap(number = 2)]
    next: u32,
}

fn main() {}
