//! Parse and write throughput of `lxc-conf` over the config corpus (bytes per second).
//!
//! Run: `cargo bench -p lxc-conf --bench throughput`. The corpus is `testdata/corpus/lxc`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lxc_conf::{Dialect, Document};

fn corpus() -> PathBuf {
    test_support::testdata::lxc_corpus()
}

/// Every config of the corpus with its dialect (the expected-rewrite files are left out).
fn files() -> Vec<(Vec<u8>, Dialect)> {
    let mut out = Vec::new();
    for (dir, dialect) in [
        ("pve", Dialect::Pve),
        ("synthetic", Dialect::Pve),
        ("pve_rewrites", Dialect::Pve),
        ("plain_lxc", Dialect::Lxc),
    ] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(corpus().join(dir))
            .expect("corpus dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| !p.to_string_lossy().ends_with(".expected-pve-rewrite"))
            .collect();
        paths.sort();
        for p in paths {
            out.push((std::fs::read(&p).expect("corpus file"), dialect));
        }
    }
    out
}

fn throughput(c: &mut Criterion) {
    let files = files();
    let bytes: u64 = files.iter().map(|(b, _)| b.len() as u64).sum();
    let mut g = c.benchmark_group("corpus");
    g.throughput(Throughput::Bytes(bytes));
    g.bench_function("parse", |b| {
        b.iter(|| {
            for (f, d) in &files {
                black_box(Document::parse(black_box(f), *d));
            }
        })
    });
    let docs: Vec<Document> = files.iter().map(|(f, d)| Document::parse(f, *d)).collect();
    g.bench_function("write", |b| {
        b.iter(|| {
            for doc in &docs {
                black_box(doc.to_bytes());
            }
        })
    });
    g.bench_function("parse+write", |b| {
        b.iter(|| {
            for (f, d) in &files {
                black_box(Document::parse(black_box(f), *d).to_bytes());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
