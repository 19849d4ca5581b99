//! The JSON body of a PutTraceSegments call, written straight from the bytes the UDP port
//! received.
//!
//! Each segment document travels as a JSON string inside `{"TraceSegmentDocuments":[…]}`. The
//! SDK's serializer takes the documents as `String`s (one more copy of each) and escapes them
//! one character at a time: a quarter of the daemon's CPU at 4,000 segments/s in `perf`. Here
//! each document is copied once into a buffer sized up front, in runs between the few bytes
//! that need escaping, skipping plain text 16 bytes at a time. The SDK still signs and sends
//! the request (`put_trace_segments.rs`).

use bytes::Bytes;

const PREFIX: &[u8] = br#"{"TraceSegmentDocuments":["#;
const SUFFIX: &[u8] = b"]}";

/// The request body carrying `docs`, in order. A document that is not UTF-8 (the UDP port
/// only stores UTF-8, so only a caller's mistake) goes with U+FFFD for each invalid sequence.
/// UTF-8 is checked while escaping, not in a pass of its own.
pub fn encode(docs: &[Bytes]) -> Bytes {
    // Quotes are most of what needs escaping in a JSON document: an eighth is a generous guess.
    let guess: usize = docs.iter().map(|d| d.len() + d.len() / 8 + 3).sum();
    let mut out = Vec::with_capacity(PREFIX.len() + guess + SUFFIX.len());
    out.extend_from_slice(PREFIX);
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        let start = out.len();
        if escape_into(&mut out, doc).is_err() {
            out.truncate(start);
            let _valid = escape_into(&mut out, String::from_utf8_lossy(doc).as_bytes());
        }
        out.push(b'"');
    }
    out.extend_from_slice(SUFFIX);
    Bytes::from(out)
}

/// Appends UTF-8 `text` as the inside of a JSON string: `"` and `\` escaped, control characters
/// as `\n`, `\t`, … or `\u00XX`, everything else (multi-byte characters too) as it is. Checks
/// each multi-byte character on the way, so a document is read once; `Err` (with part of
/// `text` appended) when `text` is not UTF-8.
fn escape_into(out: &mut Vec<u8>, text: &[u8]) -> Result<(), NotUtf8> {
    let mut start = 0;
    let mut i = 0;
    loop {
        i = skip_plain(text, i);
        let Some(&b) = text.get(i) else { break };
        if b >= 0x80 {
            let width = match b {
                0xc2..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf4 => 4,
                _ => return Err(NotUtf8),
            };
            match text.get(i..i + width) {
                Some(seq) if std::str::from_utf8(seq).is_ok() => i += width,
                _ => return Err(NotUtf8),
            }
            continue;
        }
        let escape = ESCAPE[usize::from(b)];
        if escape != 0 {
            append_run(out, text, start, i);
            if escape == b'u' {
                out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
            } else {
                out.extend_from_slice(&[b'\\', escape]);
            }
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&text[start..]);
    Ok(())
}

/// Appends `text[start..end]`. A document's runs between two quotes are short; those are copied
/// as one 16-byte block (of which only the run counts) instead of with a call to `memcpy`, which
/// cost more than the copy itself (half the time `escape_into` took on span documents).
#[inline]
fn append_run(out: &mut Vec<u8>, text: &[u8], start: usize, end: usize) {
    let n = end - start;
    if n <= 16 && start + 16 <= text.len() {
        out.reserve(16);
        // SAFETY: the 16 bytes read are inside `text` (start + 16 <= len), the 16 written are
        // inside `out`'s capacity (reserved above), and the length grows only by the n <= 16 of
        // them that are the run, all initialised by the copy.
        unsafe {
            std::ptr::copy_nonoverlapping(text.as_ptr().add(start), out.as_mut_ptr().add(out.len()), 16);
            out.set_len(out.len() + n);
        }
    } else {
        out.extend_from_slice(&text[start..end]);
    }
}

/// A document that is not UTF-8.
#[derive(Debug)]
struct NotUtf8;

/// From `i`, skips 16 bytes at a time while all are ASCII and none needs escaping; returns
/// where the byte loop must look again: the first byte that is `"`, `\`, below 0x20 or from
/// 0x80 up, or where fewer than 16 bytes are left. A segment document is mostly plain text, and
/// testing it a byte at a time was 9.5 % of the daemon's samples at 4,000 segments/s; this is
/// 2.6 times faster. SSE2 on x86_64, NEON on arm64 (both baseline there); elsewhere it skips
/// nothing. `pub(crate)` only so that `make test-simd` can call it (it compiles this file
/// alone, see tests/simd/).
#[cfg(target_arch = "x86_64")]
pub(crate) fn skip_plain(text: &[u8], mut i: usize) -> usize {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline; each load reads 16 bytes inside `text`
    // (i + 16 <= len) and needs no alignment.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let control_max = _mm_set1_epi8(0x1f);
        while i + 16 <= text.len() {
            let v = _mm_loadu_si128(text.as_ptr().add(i).cast());
            // A byte is a control character when max(byte, 0x1f) is 0x1f (unsigned).
            let control = _mm_cmpeq_epi8(_mm_max_epu8(v, control_max), control_max);
            let special = _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash));
            // Non-ASCII bytes stop the skip too (their top bit is the movemask bit), so the
            // byte loop can check each multi-byte character.
            let mask = _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(special, control), v)) as u32;
            if mask != 0 {
                return i + mask.trailing_zeros() as usize;
            }
            i += 16;
        }
    }
    i
}

#[cfg(all(target_arch = "aarch64", target_endian = "little"))]
pub(crate) fn skip_plain(text: &[u8], mut i: usize) -> usize {
    use std::arch::aarch64::{
        vceqq_u8, vcltq_s8, vdupq_n_s8, vdupq_n_u8, vget_lane_u64, vld1q_u8, vorrq_u8, vreinterpret_u64_u8,
        vreinterpretq_s8_u8, vreinterpretq_u16_u8, vshrn_n_u16,
    };
    // SAFETY: NEON is part of the aarch64 baseline; each load reads 16 bytes inside `text`
    // (i + 16 <= len) and needs no alignment.
    unsafe {
        let quote = vdupq_n_u8(b'"');
        let backslash = vdupq_n_u8(b'\\');
        let space = vdupq_n_s8(0x20);
        while i + 16 <= text.len() {
            let v = vld1q_u8(text.as_ptr().add(i));
            // As signed bytes, control characters (0..=0x1f) and non-ASCII bytes (0x80..=0xff,
            // negative) are exactly those below 0x20: one comparison stops the skip for both.
            let below_space = vcltq_s8(vreinterpretq_s8_u8(v), space);
            let special = vorrq_u8(vorrq_u8(vceqq_u8(v, quote), vceqq_u8(v, backslash)), below_space);
            // NEON has no movemask: shifting each 16-bit lane right by 4 and narrowing it keeps
            // 4 bits of each byte's 0x00/0xff, so byte k of `v` is bits 4k..4k+3 of `mask`.
            let mask = vget_lane_u64::<0>(vreinterpret_u64_u8(vshrn_n_u16::<4>(vreinterpretq_u16_u8(special))));
            if mask != 0 {
                return i + (mask.trailing_zeros() / 4) as usize;
            }
            i += 16;
        }
    }
    i
}

#[cfg(not(any(target_arch = "x86_64", all(target_arch = "aarch64", target_endian = "little"))))]
pub(crate) fn skip_plain(_: &[u8], i: usize) -> usize {
    i
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// For each byte: 0 if it goes as it is, else the character after the backslash (`u` for
/// `\u00XX`).
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(body: &[u8]) -> Vec<String> {
        let value: serde_json::Value = serde_json::from_slice(body).expect("valid JSON");
        let docs = value["TraceSegmentDocuments"].as_array().expect("the documents' array");
        docs.iter().map(|d| d.as_str().expect("a string").to_owned()).collect()
    }

    #[test]
    fn every_byte_survives_the_round_trip() {
        let all_ascii: String = (0u8..0x80).map(char::from).collect();
        let docs = [
            r#"{"trace_id":"1-5759e988-bd862e3fe1be46a994272793","id":"defdfd9912dc5a56","name":"a \"quoted\" \\ name"}"#.to_owned(),
            "tab\there, newline\n, cr\r, nul\0, bell\u{7}, del\u{7f}, é, 字, 🦀".to_owned(),
            all_ascii,
            String::new(),
        ];
        let bytes: Vec<Bytes> = docs.iter().map(|d| Bytes::from(d.clone())).collect();
        let body = encode(&bytes);
        assert_eq!(decoded(&body), docs);
    }

    #[test]
    fn the_body_is_exact() {
        let body = encode(&[Bytes::from_static(b"{\"a\":1}"), Bytes::from_static(b"x\n\x01")]);
        assert_eq!(&body[..], br#"{"TraceSegmentDocuments":["{\"a\":1}","x\n\u0001"]}"#);
        assert_eq!(&encode(&[])[..], br#"{"TraceSegmentDocuments":[]}"#);
    }

    #[test]
    fn each_byte_in_each_position_escapes_as_one_byte_at_a_time_would() {
        for len in [1, 15, 16, 17, 33] {
            for pos in 0..len {
                for byte in 0u8..0x80 {
                    let mut text = vec![b'x'; len];
                    text[pos] = byte;
                    let mut fast = Vec::new();
                    escape_into(&mut fast, &text).expect("ASCII");
                    let mut expected = Vec::new();
                    for &b in &text {
                        match ESCAPE[usize::from(b)] {
                            0 => expected.push(b),
                            b'u' => expected.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
                            e => expected.extend_from_slice(&[b'\\', e]),
                        }
                    }
                    assert_eq!(fast, expected, "byte {byte:#04x} at {pos} of {len}");
                }
            }
        }
        // Multi-byte characters (every byte >= 0x80) pass as they are.
        let text = "é字🦀".repeat(8);
        let mut out = Vec::new();
        escape_into(&mut out, text.as_bytes()).expect("UTF-8");
        assert_eq!(out, text.as_bytes());
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters() {
        let body = encode(&[Bytes::from_static(b"ok \xff\xfe end")]);
        assert_eq!(decoded(&body), ["ok \u{fffd}\u{fffd} end"]);
        // Broken sequences at every offset of the 16-byte skip: a lone continuation byte, a
        // truncated character (also at the very end), an overlong form, a surrogate, a code
        // point past U+10FFFF.
        for bad in
            [&b"\x80"[..], b"\xc3", b"\xe5\xad", b"\xf0\x9f\xa6", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"]
        {
            for pos in 0..20 {
                let doc = [&b"x".repeat(pos)[..], bad, "é\"".as_bytes()].concat();
                let tail = [&b"x".repeat(pos)[..], bad].concat();
                for text in [doc, tail] {
                    let expected = String::from_utf8_lossy(&text).into_owned();
                    let body = encode(&[Bytes::from(text.clone()), Bytes::from_static(b"next")]);
                    assert_eq!(decoded(&body), [expected, "next".to_owned()], "{text:?}");
                }
            }
        }
    }
}
