//! Criterion benches of ZAP's unary echo latency (one call in flight) over
//! TCP and Unix sockets at 64 B and 1 KB: the `zap` rows of
//! `compare rpc`, with the same server, client and payload
//! (`zap_benches::rpc`). The client runs as a spawned task on a tokio
//! multi-thread runtime with the default worker count.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use zap_benches::rpc::{Client, Impl, Payload, Server, Transport, default_workers, runtime};

fn rpc(c: &mut Criterion) {
    let rt = runtime(default_workers()).expect("tokio runtime");
    let mut group = c.benchmark_group("rpc_unary_latency");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for transport in Transport::ALL {
        for size in [64, 1024] {
            let (server, client) = rt
                .block_on(async move {
                    tokio::spawn(async move {
                        let server = Server::start(Impl::Zap, transport).await?;
                        let client = Client::connect(&server, &Payload::new(size)).await?;
                        Ok::<_, zap_benches::rpc::Error>((server, client))
                    })
                    .await
                })
                .expect("task")
                .expect("zap server and client");
            group.bench_function(BenchmarkId::new(transport.name(), size), |b| {
                b.iter_custom(|iters| {
                    let mut client = client.try_clone().expect("zap clients clone");
                    rt.block_on(rt.spawn(async move {
                        let start = Instant::now();
                        for _ in 0..iters {
                            client.call().await.expect("echo");
                        }
                        start.elapsed()
                    }))
                    .expect("task")
                })
            });
            drop(client);
            drop(server);
        }
    }
    group.finish();
}

criterion_group!(benches, rpc);
criterion_main!(benches);
