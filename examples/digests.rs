//! `make bench` part: SHA-256 of 1,000,000 rows of 200 bytes (the bench table's size) with
//! the `sha2` crate elt uses and with ring's, so the choice of digest crate rests on a
//! measurement of this machine: `cargo run --release --example digests`.

use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rows: Vec<Vec<u8>> = (0..1_000_000u32)
        .map(|i| {
            let mut v = vec![0u8; 200];
            v[..4].copy_from_slice(&i.to_be_bytes());
            v
        })
        .collect();
    let (mut with_sha2, mut with_ring) = (Vec::new(), Vec::new());
    let mut x = 0u8;
    for _ in 0..5 {
        let t = Instant::now();
        for r in &rows {
            use sha2::Digest;
            x ^= sha2::Sha256::digest(r)[0];
        }
        with_sha2.push(t.elapsed());
        let t = Instant::now();
        for r in &rows {
            x ^= ring::digest::digest(&ring::digest::SHA256, r).as_ref()[0];
        }
        with_ring.push(t.elapsed());
    }
    let (s, r) = (median(with_sha2), median(with_ring));
    println!(
        "SHA-256 of 1M rows of 200 bytes, median of 5: sha2 {:.0} ms, ring {:.0} ms (ring/sha2 {:.2}) [{x}]",
        s.as_secs_f64() * 1000.0,
        r.as_secs_f64() * 1000.0,
        r.as_secs_f64() / s.as_secs_f64()
    );
}
