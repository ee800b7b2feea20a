//! Criterion benches of the codec: the `compare` workloads (ZAP, prost,
//! memcpy) plus ZAP's borrowed view, per body size.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use zap::Message as _;
use zap_benches::codec::{Case, Fixture, Impl};
use zap_benches::{Block, SIZES};

fn codec(c: &mut Criterion) {
    for case in Case::ALL {
        let mut group = c.benchmark_group(case.name());
        for size in SIZES {
            group.throughput(Throughput::Bytes(size as u64));
            let mut f = Fixture::new(size);
            for imp in Impl::ALL {
                group.bench_function(BenchmarkId::new(imp.name(), size), |b| {
                    b.iter(|| f.run(imp, case))
                });
            }
        }
        group.finish();
    }

    let mut group = c.benchmark_group("view_read_all");
    for size in SIZES {
        let bytes = zap_benches::block(size).to_bytes().expect("encode");
        group.bench_function(BenchmarkId::new("zap", size), |b| {
            b.iter(|| {
                let v = Block::view(black_box(&bytes)).expect("valid");
                v.id()[0] as u64 + v.height() + v.timestamp() as u64 + v.body()[size - 1] as u64
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
