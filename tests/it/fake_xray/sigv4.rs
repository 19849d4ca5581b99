//! A hand-written SigV4 verifier (hmac + sha2), independent of the `aws-sigv4` crate the
//! daemon signs with, so a signing mistake in the daemon cannot be mirrored here.

use super::Credentials;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `kSigning = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service), "aws4_request")`
pub fn signing_key(secret: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    hmac(&k, b"aws4_request")
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// Percent-encode everything but the unreserved characters (and `/` if `keep_slash`).
pub fn uri_encode(input: &[u8], keep_slash: bool) -> String {
    let mut out = String::with_capacity(input.len());
    for &b in input {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex =
            b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The received path (already percent-encoded once) encoded again, as non-S3 services do.
/// No dot-segment normalisation: the X-Ray paths are plain.
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        "/".into()
    } else {
        uri_encode(path.as_bytes(), true)
    }
}

pub fn canonical_query(query: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (uri_encode(&percent_decode(k), false), uri_encode(&percent_decode(v), false))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

/// Trim and collapse runs of whitespace into one space.
fn canonical_value(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn header_values<'a>(headers: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers.iter().filter(move |(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn header<'a>(headers: &'a [(String, String)], name: &'a str) -> Option<&'a str> {
    header_values(headers, name).next()
}

pub fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &[(String, String)],
    signed_headers: &[&str],
    payload_hash: &str,
) -> Result<String, String> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = header_values(headers, name).map(canonical_value).collect();
        if values.is_empty() {
            return Err(format!("signed header {name:?} is not in the request"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    Ok(format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_uri(path),
        canonical_query(query),
        signed_headers.join(";")
    ))
}

/// Parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

pub fn parse_authorization(value: &str) -> Result<Authorization, String> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| format!("Authorization does not start with {ALGORITHM}: {value:?}"))?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) =
            part.trim().split_once('=').ok_or_else(|| format!("malformed Authorization component {part:?}"))?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => return Err(format!("unknown Authorization component {k:?}")),
        }
    }
    let credential = credential.ok_or("Authorization without Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, terminator] = scope[..] else {
        return Err(format!("malformed credential scope {credential:?}"));
    };
    if terminator != "aws4_request" {
        return Err(format!("credential scope must end with aws4_request: {credential:?}"));
    }
    let signed_headers: Vec<String> =
        signed.ok_or("Authorization without SignedHeaders")?.split(';').map(str::to_owned).collect();
    let signature = signature.ok_or("Authorization without Signature")?.to_owned();
    Ok(Authorization {
        access_key: access_key.into(),
        date: date.into(),
        region: region.into(),
        service: service.into(),
        signed_headers,
        signature,
    })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// `YYYYMMDDTHHMMSSZ` → Unix seconds.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (num(0..4)?, num(4..6)?, num(6..8)?, num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// X-Ray's answer to a request signed too long ago or too far ahead, in its words: "Signature
/// expired: 20261201T000000Z is now earlier than 20261201T001000Z (20261201T001500Z - 5 min.)".
fn check_time(amz_date: &str, amz_secs: i64, now: SystemTime, max_skew: Duration) -> Result<(), String> {
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let max = max_skew.as_secs() as i64;
    let minutes = max_skew.as_secs() / 60;
    if amz_secs < now - max {
        return Err(format!(
            "Signature expired: {amz_date} is now earlier than {} ({} - {minutes} min.)",
            format_amz_date(now - max),
            format_amz_date(now)
        ));
    }
    if amz_secs > now + max {
        return Err(format!(
            "Signature not yet current: {amz_date} is still later than {} ({} + {minutes} min.)",
            format_amz_date(now + max),
            format_amz_date(now)
        ));
    }
    Ok(())
}

/// Unix seconds → `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Verify a received request against the accepted credentials.
/// `clock`: `(now, max skew)` to check `X-Amz-Date`, or `None` to skip that check.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &[(String, String)],
    body: &[u8],
    accepted: &[Credentials],
    service: &str,
    clock: Option<(SystemTime, Duration)>,
) -> Result<(), String> {
    let auth = parse_authorization(header(headers, "authorization").ok_or("missing Authorization header")?)?;
    if auth.service != service {
        return Err(format!("credential scope service is {:?}, expected {service:?}", auth.service));
    }
    let signed: Vec<&str> = auth.signed_headers.iter().map(String::as_str).collect();
    if signed.iter().any(|h| h.is_empty() || *h != h.to_ascii_lowercase()) {
        return Err(format!("SignedHeaders must be non-empty lower-case names: {signed:?}"));
    }
    if signed.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("SignedHeaders must be sorted and unique: {signed:?}"));
    }
    for required in ["host", "x-amz-date"] {
        if !signed.contains(&required) {
            return Err(format!("{required} is not among the SignedHeaders {signed:?}"));
        }
    }
    let amz_date = header(headers, "x-amz-date").ok_or("missing X-Amz-Date header")?;
    let amz_secs = parse_amz_date(amz_date).ok_or_else(|| format!("malformed X-Amz-Date {amz_date:?}"))?;
    if !amz_date.starts_with(&auth.date) || auth.date.len() != 8 {
        return Err(format!("credential scope date {:?} does not match X-Amz-Date {amz_date:?}", auth.date));
    }
    if let Some((now, max_skew)) = clock {
        check_time(amz_date, amz_secs, now, max_skew)?;
    }
    let payload_hash = sha256_hex(body);
    if let Some(claimed) = header(headers, "x-amz-content-sha256") {
        if claimed != payload_hash {
            return Err(format!("x-amz-content-sha256 {claimed:?} does not match the body's sha256 {payload_hash}"));
        }
    }
    let candidates: Vec<&Credentials> = accepted.iter().filter(|c| c.access_key == auth.access_key).collect();
    if candidates.is_empty() {
        return Err(format!("unknown access key {:?}", auth.access_key));
    }
    let token = header(headers, "x-amz-security-token");
    let canonical = canonical_request(method, path, query, headers, &signed, &payload_hash)?;
    let scope = format!("{}/{}/{}/aws4_request", auth.date, auth.region, auth.service);
    let sts = string_to_sign(amz_date, &scope, &canonical);
    let mut first_error = None;
    for creds in candidates {
        let result = match (&creds.session_token, token) {
            (Some(_), None) => Err("missing x-amz-security-token".to_owned()),
            (Some(expected), Some(got)) if expected != got => Err("x-amz-security-token does not match".to_owned()),
            (Some(_), Some(_)) if !signed.contains(&"x-amz-security-token") => {
                Err("x-amz-security-token is not signed".to_owned())
            }
            (None, Some(_)) => {
                Err("unexpected x-amz-security-token for credentials without a session token".to_owned())
            }
            _ => {
                let key = signing_key(&creds.secret_key, &auth.date, &auth.region, &auth.service);
                let expected = hex::encode(hmac(&key, sts.as_bytes()));
                if expected == auth.signature {
                    Ok(())
                } else {
                    Err(format!(
                        "signature mismatch: got {}, expected {expected}; canonical request:\n{canonical}\nstring to sign:\n{sts}",
                        auth.signature
                    ))
                }
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    Err(first_error.expect("at least one candidate"))
}
