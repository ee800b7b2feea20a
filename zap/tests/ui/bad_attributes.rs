#[derive(zap::Message)]
#[zap(offset = 0)]
struct A {
    #[zap(offest = 4)]
    a: u32,
    #[zap(offset = "eight")]
    b: u32,
    #[zap(offset = 8, offset = 12)]
    c: u32,
}

#[derive(zap::Message)]
struct Mixed {
    #[zap(offset = 0)]
    a: u32,
    b: u32,
}

fn main() {}
