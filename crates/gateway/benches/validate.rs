//! Validating a typical 1 KiB JSON body (bench/fixtures/device.json) against its compiled
//! schema (bench/fixtures/device.schema.json), as the gateway does for a route with a
//! `validate.body`: one parse, then the schema. Target: under 10 µs per body on the
//! project's machine (bench/README.md). Run with `cargo bench -p candor-gateway`.

use candor_gateway::BodyCheck;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// The gateway binary's allocator, so that the numbers are the gateway's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../bench/fixtures/");
    std::fs::read(format!("{path}{name}")).expect("bench fixture")
}

fn validate(c: &mut Criterion) {
    let schema = serde_json::from_slice(&fixture("device.schema.json")).expect("schema JSON");
    let check = BodyCheck::compile(schema).expect("schema compiles");
    let valid = fixture("device.json");
    assert_eq!(
        check.problems(&valid).map(|p| p.len()),
        Some(0),
        "the fixture is valid"
    );
    // The same body with five problems: what a client's bad request costs.
    let invalid = String::from_utf8(valid.clone())
        .expect("UTF-8")
        .replace("ABC-1234", "abc")
        .replace("facilities@example.com", "facilities")
        .replace("\"sensor\"", "\"toaster\"")
        .replace("52.3676", "152.3676")
        .replace("8080", "\"8080\"")
        .into_bytes();
    assert_eq!(check.problems(&invalid).map(|p| p.len()), Some(5));

    let mut g = c.benchmark_group("validate");
    g.throughput(Throughput::Bytes(valid.len() as u64));
    g.bench_function("device_1k_valid", |b| {
        b.iter(|| check.problems(black_box(&valid)))
    });
    g.bench_function("device_1k_five_problems", |b| {
        b.iter(|| check.problems(black_box(&invalid)))
    });
    g.bench_function("parse_only", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&valid)).map(|_| ()))
    });
    g.finish();
}

criterion_group!(benches, validate);
criterion_main!(benches);
