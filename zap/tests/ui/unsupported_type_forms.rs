// Type forms the macro rejects itself, with a message per form.
#[derive(zap::Message)]
struct Bad {
    ok: u32,
    borrowed: &'static str,
    pair: (u32, u32),
    words: [u32; 4],
    unit: (),
    f: fn(),
}

fn main() {}
