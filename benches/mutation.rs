//! The pure Job mutation on a typical Job (three containers, one init container), and the whole
//! admission handler (parse, mutate, serialize) on the same Job.

#[path = "fixtures.rs"]
mod fixtures;

// Measured with the allocator the `jobtrace` binary ships with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use jobtrace::context::SpanId;
use jobtrace::webhook::review::{Endpoint, review};

fn benches(c: &mut Criterion) {
    let job = serde_json::from_value(fixtures::typical_job("nightly-report")).unwrap();
    c.bench_function("mutate::job (3 containers + 1 init)", |b| {
        b.iter(|| {
            jobtrace::mutate::job::mutate(black_box(&job), "reports", SpanId::from_random([7; 8]))
        });
    });
    let body = fixtures::typical_review();
    c.bench_function("review (parse + mutate + respond)", |b| {
        b.iter(|| {
            review(
                Endpoint::Jobs,
                black_box(&body),
                SpanId::from_random([7; 8]),
            )
            .unwrap()
        });
    });
}

criterion_group!(mutation, benches);
criterion_main!(mutation);
