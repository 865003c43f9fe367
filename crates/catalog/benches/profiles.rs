//! Rendering a `validation_failed` with three field errors: the default RFC 9457 problem
//! details against each error profile's envelope. Target: a profile costs at most 1.2× the
//! default. Run with `cargo bench -p candor-catalog --bench profiles` (`-- --quick` for a
//! short run).

use candor_catalog::profile::ErrorFacts;
use candor_catalog::{Catalog, FieldError, Problem, Profile, codes};
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// The gateway binary's allocator, so that the numbers are the gateway's.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn fields() -> Vec<FieldError> {
    let field = |name: &str, reason: &str, detail: &str| FieldError {
        location: "body".into(),
        pointer: format!("#/{name}"),
        name: name.into(),
        reason: reason.into(),
        detail: detail.into(),
    };
    vec![
        field("name", "blank", "must not be blank"),
        field(
            "serial",
            "format",
            "must be 4 to 32 characters A-Z, 0-9 or '-'; it is `a b`",
        ),
        field(
            "kind",
            "enum",
            "must be one of sensor, gateway, camera; it is \"toaster\"",
        ),
    ]
}

fn render(c: &mut Criterion) {
    let catalog = Catalog::builtin();
    let entry = catalog.get(codes::VALIDATION_FAILED).unwrap();
    let fields = fields();
    let params = [
        ("count", "3"),
        (
            "summary",
            "name must not be blank; serial must be 4 to 32 characters; kind must be one of sensor, gateway, camera",
        ),
    ];
    let (base, instance, rid, trace) = (
        "https://api.example.com",
        "/v1/customers/acme/devices",
        "01JEXAMPLE0000000000000000",
        Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    );
    let mut group = c.benchmark_group("validation_failed_3_fields");
    // What the gateway's default renderer does: the detail, then problem details.
    group.bench_function("default_problem", |b| {
        b.iter(|| {
            let detail = entry.message.render(black_box(&params));
            Problem::new(entry, base, &detail, instance, rid)
                .trace_id(trace)
                .status(400)
                .errors(black_box(&fields).clone())
                .to_json()
        })
    });
    for profile in Profile::builtins().iter().filter(|p| !p.is_problem()) {
        group.bench_function(profile.name.as_str(), |b| {
            b.iter(|| {
                let detail = entry.message.render(black_box(&params));
                profile
                    .render(&ErrorFacts {
                        params: &params,
                        fields: black_box(&fields),
                        trace_id: trace,
                        base_url: base,
                        ..ErrorFacts::new(entry, &detail, instance, rid)
                    })
                    .body
            })
        });
    }
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
