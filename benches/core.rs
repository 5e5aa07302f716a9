//! Criterion benches for the pyo3-free core: PKCE, callback query parsing, token parsing.
//! Run with `cargo bench --no-default-features --bench core`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use fedbearer::core::{callback, pkce, token};

fn benches(c: &mut Criterion) {
    c.bench_function("pkce_pair_and_state", |b| {
        b.iter(|| (pkce::new_pkce().unwrap(), pkce::new_state().unwrap()));
    });
    // The OS CSPRNG is most of a login's secrets on a VM (a syscall each): two calls (as
    // new_pkce + new_state make) against one call for both.
    c.bench_function("os_random_two_calls_32_24", |b| {
        b.iter(|| {
            let (mut v, mut s) = ([0u8; 32], [0u8; 24]);
            getrandom::fill(&mut v).unwrap();
            getrandom::fill(&mut s).unwrap();
            black_box((v, s))
        });
    });
    c.bench_function("os_random_one_call_56", |b| {
        b.iter(|| {
            let mut both = [0u8; 56];
            getrandom::fill(&mut both).unwrap();
            black_box(both)
        });
    });
    let query = "code=SplxlOBeZQQYbYS6WxSbIA&state=af0ifjsldkj-9q8w7e6r5t4y3u2i1o0p&iss=https%3A%2F%2Fidp.example";
    c.bench_function("parse_callback_query", |b| {
        b.iter(|| callback::parse_callback_query(black_box(query)).unwrap());
    });
    let body = format!(
        r#"{{"access_token":"{}","token_type":"Bearer","expires_in":3600,"refresh_token":"{}","id_token":"{}","scope":"openid"}}"#,
        "a".repeat(400),
        "r".repeat(120),
        "i".repeat(380)
    );
    c.bench_function("parse_token_response_1k", |b| {
        b.iter(|| token::parse_token_response(black_box(body.as_bytes()), 200).unwrap());
    });
}

criterion_group!(core_benches, benches);
criterion_main!(core_benches);
