//! `make test-simd` (tests/simd/run.sh): the SIMD scan of the request body, `skip_plain` in
//! src/aws/trace_segments_body.rs, run for real on arm64 (NEON, under qemu-aarch64-static) and on
//! x86_64 (SSE2), without building the daemon and the AWS SDK for arm64. rustc compiles this file
//! on its own for each target, with src/aws/trace_segments_body.rs as a module and the `bytes` crate
//! (that file's one dependency); it is not a cargo target (cargo only finds `tests/*.rs` and
//! `tests/*/main.rs`).
//!
//! It checks `skip_plain` against the scalar rule it stands for, exactly (stopping early would
//! be correct but slow, so "same output as a byte loop" would not notice), on every byte value
//! at every position after every start offset 0..=32, and on random text; then `encode` against
//! escaping one character at a time. It exits non-zero (a panic) on the first difference.

#![allow(dead_code)]

#[path = "../../src/aws/trace_segments_body.rs"]
mod trace_segments_body;

use bytes::Bytes;
use trace_segments_body::{encode, skip_plain};

/// The rule the SIMD versions implement, a byte at a time: from `i`, whole 16-byte blocks while
/// none of their bytes is `"`, `\`, below 0x20 or from 0x80 up; then the first such byte of the
/// block that has one, or where fewer than 16 bytes are left.
fn scalar_skip_plain(text: &[u8], mut i: usize) -> usize {
    let stops = |b: u8| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b);
    while i + 16 <= text.len() {
        if let Some(k) = text[i..i + 16].iter().position(|&b| stops(b)) {
            return i + k;
        }
        i += 16;
    }
    i
}

fn check(text: &[u8], start: usize) {
    let (got, expected) = (skip_plain(text, start), scalar_skip_plain(text, start));
    assert_eq!(got, expected, "skip_plain from {start} of {} bytes {text:02x?}", text.len());
}

/// xorshift64*: random enough for test inputs, and this file needs no crate for it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn main() {
    let arch = std::env::consts::ARCH;
    let mut cases = 0u64;

    // Every byte value at every position after every start offset 0..=32, on plain text long
    // enough for two blocks past the furthest start (and on text ending right after the byte).
    let plain: Vec<u8> = (0x20u8..0x7f).filter(|&b| b != b'"' && b != b'\\').collect();
    for start in 0..=32 {
        for len in [start, start + 15, start + 16, start + 17, start + 31, start + 32, start + 48] {
            let base: Vec<u8> = (0..len).map(|k| plain[k % plain.len()]).collect();
            check(&base, start);
            cases += 1;
            for pos in 0..len {
                for byte in 0..=255u8 {
                    let mut text = base.clone();
                    text[pos] = byte;
                    check(&text, start);
                    check(&text[..=pos], start.min(pos + 1));
                    cases += 2;
                }
            }
        }
    }

    // Random text, mostly plain with some of every kind of stop, at random starts.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..200_000 {
        let len = rng.below(100);
        let text: Vec<u8> = (0..len)
            .map(|_| match rng.below(40) {
                0 => b'"',
                1 => b'\\',
                2 => rng.below(0x20) as u8,
                3 => 0x80 + rng.below(0x80) as u8,
                _ => plain[rng.below(plain.len())],
            })
            .collect();
        check(&text, rng.below(len + 1));
        cases += 1;
    }

    // The whole body, escaped as one character at a time would.
    for _ in 0..20_000 {
        let len = rng.below(60);
        let doc: String = (0..len)
            .map(|_| match rng.below(12) {
                0 => char::from(rng.below(0x80) as u8),
                1 => ['é', '字', '🦀', '\u{7f}', '\u{80}'][rng.below(5)],
                _ => char::from(plain[rng.below(plain.len())]),
            })
            .collect();
        let mut expected = String::from(r#"{"TraceSegmentDocuments":[""#);
        for c in doc.chars() {
            match c {
                '"' => expected.push_str("\\\""),
                '\\' => expected.push_str("\\\\"),
                '\n' => expected.push_str("\\n"),
                '\r' => expected.push_str("\\r"),
                '\t' => expected.push_str("\\t"),
                '\u{8}' => expected.push_str("\\b"),
                '\u{c}' => expected.push_str("\\f"),
                c if u32::from(c) < 0x20 => expected.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => expected.push(c),
            }
        }
        expected.push_str("\"]}");
        assert_eq!(&encode(&[Bytes::from(doc.clone())])[..], expected.as_bytes(), "{doc:?}");
        cases += 1;
    }

    println!("skip_plain and encode on {arch}: {cases} cases, all as the scalar rule");
}
