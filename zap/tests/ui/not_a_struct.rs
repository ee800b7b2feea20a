#[derive(zap::Message)]
enum E {
    A,
}

#[derive(zap::Message)]
struct Tuple(u32, u64);

#[derive(zap::Message)]
struct Generic<T> {
    t: T,
}

fn main() {}
