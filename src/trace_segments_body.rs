//! The JSON body of a PutTraceSegments call, written straight from the bytes the UDP port
//! received.
//!
//! Each segment document travels as a JSON string inside `{"TraceSegmentDocuments":[…]}`. The
//! SDK's serializer takes the documents as `String`s (one more copy of each) and escapes them
//! one character at a time: a quarter of the daemon's CPU at 4,000 segments/s in `perf`. Here
//! each document is copied once into a buffer sized up front, in runs between the few bytes
//! that need escaping. The SDK still signs and sends the request (`aws.rs`).

use bytes::Bytes;

const PREFIX: &[u8] = br#"{"TraceSegmentDocuments":["#;
const SUFFIX: &[u8] = b"]}";

/// The request body carrying `docs`, in order. A document that is not UTF-8 (the UDP port
/// only stores UTF-8, so only a caller's mistake) goes with U+FFFD for each invalid sequence.
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
        match std::str::from_utf8(doc) {
            Ok(text) => escape_into(&mut out, text.as_bytes()),
            Err(_) => escape_into(&mut out, String::from_utf8_lossy(doc).as_bytes()),
        }
        out.push(b'"');
    }
    out.extend_from_slice(SUFFIX);
    Bytes::from(out)
}

/// Appends UTF-8 `text` as the inside of a JSON string: `"` and `\` escaped, control characters
/// as `\n`, `\t`, … or `\u00XX`, everything else (multi-byte characters too) as it is.
fn escape_into(out: &mut Vec<u8>, text: &[u8]) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let escape = ESCAPE[usize::from(b)];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&text[start..i]);
        if escape == b'u' {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(&[b'\\', escape]);
        }
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
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
    fn invalid_utf8_becomes_replacement_characters() {
        let body = encode(&[Bytes::from_static(b"ok \xff\xfe end")]);
        assert_eq!(decoded(&body), ["ok \u{fffd}\u{fffd} end"]);
    }
}
