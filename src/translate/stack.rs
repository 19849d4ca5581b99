//! The five stack-trace parsers of `exception` events (mapping §8): Java (also PHP), Python,
//! JavaScript, .NET and Go text, turned into frames and, for Java and Python, chained
//! exceptions.
//!
//! They work on bytes and cut where the exporter's Go slicing cuts, even inside a UTF-8
//! character (the writer then emits `\ufffd`, as Go's encoder does). Where the exporter's
//! slicing panics (a Java `Caused by: X:` whose colon ends the line, a Python chained message
//! whose colon ends it, a Python `  File "` line with nothing after the quote, a .NET location
//! ending exactly in `:line`; and, found while porting, a Python `During handling…` line less
//! than three lines below a `File` line, or a .NET `at in …` frame) these give an empty
//! string instead, or stop as the parser does on other malformed input.

use std::borrow::Cow;

/// One stack frame; every field is always written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame<'a> {
    pub(crate) path: &'a [u8],
    pub(crate) line: i64,
    pub(crate) label: &'a [u8],
}

/// One entry of `cause.exceptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Exception<'a> {
    pub(crate) id: u64,
    pub(crate) kind: Cow<'a, [u8]>,
    pub(crate) message: Cow<'a, [u8]>,
    pub(crate) remote: bool,
    pub(crate) cause: Option<u64>,
    pub(crate) stack: Vec<Frame<'a>>,
}

/// Which parser a resource's `telemetry.sdk.language` picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Java,
    Python,
    JavaScript,
    Dotnet,
    Go,
    Other,
}

impl Lang {
    pub(crate) fn of(language: &str) -> Lang {
        match language {
            "java" | "php" => Lang::Java,
            "python" => Lang::Python,
            "javascript" => Lang::JavaScript,
            "dotnet" => Lang::Dotnet,
            "go" => Lang::Go,
            _ => Lang::Other,
        }
    }
}

/// Adds the frames (and chained exceptions) of `trace` to `excs`, whose last entry is the
/// event's own exception.
pub(crate) fn parse<'a>(lang: Lang, trace: &'a str, excs: &mut Vec<Exception<'a>>, next_id: &mut dyn FnMut() -> u64) {
    match lang {
        Lang::Java => java(trace, excs, next_id),
        Lang::Python => python(trace, excs, next_id),
        Lang::JavaScript => javascript(trace, excs),
        Lang::Dotnet => dotnet(trace, excs),
        Lang::Go => go(trace, excs),
        Lang::Other => {}
    }
}

/// Go's `strconv.Atoi`, ignoring its error: 0 for bad syntax, the nearest limit on overflow.
pub(crate) fn atoi(s: &[u8]) -> i64 {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() {
        return 0;
    }
    let mut n: u64 = 0;
    let mut overflow = false;
    for &b in digits {
        if !b.is_ascii_digit() {
            return 0;
        }
        match n.checked_mul(10).and_then(|m| m.checked_add(u64::from(b - b'0'))) {
            Some(m) => n = m,
            None => {
                overflow = true;
                break;
            }
        }
    }
    match (neg, overflow) {
        (false, true) => i64::MAX,
        (true, true) => i64::MIN,
        (false, false) => i64::try_from(n).unwrap_or(i64::MAX),
        (true, false) => 0i64.checked_sub_unsigned(n).unwrap_or(i64::MIN),
    }
}

/// Lines as Go's `textproto.Reader.ReadLine` gives them: split at `\n`, a `\r` before it
/// dropped, no empty last line.
struct Lines<'a>(&'a str);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.0.is_empty() {
            return None;
        }
        match self.0.split_once('\n') {
            Some((line, rest)) => {
                self.0 = rest;
                Some(line.strip_suffix('\r').unwrap_or(line))
            }
            None => Some(std::mem::take(&mut self.0)),
        }
    }
}

fn lines(trace: &str) -> Lines<'_> {
    Lines(trace)
}

/// Starts a chained exception after the current (last) one.
fn chain<'a>(
    excs: &mut Vec<Exception<'a>>,
    kind: Cow<'a, [u8]>,
    message: Cow<'a, [u8]>,
    next_id: &mut dyn FnMut() -> u64,
) {
    let id = next_id();
    let remote = excs.last().is_some_and(|e| e.remote);
    if let Some(last) = excs.last_mut() {
        last.cause = Some(id);
    }
    excs.push(Exception { id, kind, message, remote, cause: None, stack: Vec::new() });
}

fn push_frame<'a>(excs: &mut [Exception<'a>], frame: Frame<'a>) {
    if let Some(last) = excs.last_mut() {
        last.stack.push(frame);
    }
}

fn is_java_frame(line: &str) -> bool {
    line.starts_with("\tat ") && line.contains('(') && line.ends_with(')')
}

fn java<'a>(trace: &'a str, excs: &mut Vec<Exception<'a>>, next_id: &mut dyn FnMut() -> u64) {
    let mut it = lines(trace);
    let (Some(_), Some(mut line)) = (it.next(), it.next()) else { return };
    loop {
        if is_java_frame(line) {
            let b = line.as_bytes();
            let paren = line.find('(').unwrap_or(b.len());
            let mut label = b.get(4..paren).unwrap_or_default();
            if let Some(slash) = label.iter().position(|&c| c == b'/') {
                label = &label[slash + 1..];
            }
            let mut path = b.get(paren + 1..b.len() - 1).unwrap_or_default();
            let mut number = 0;
            if let Some(colon) = path.iter().position(|&c| c == b':') {
                number = atoi(&path[colon + 1..]);
                path = &path[..colon];
            }
            push_frame(excs, Frame { path, line: number, label });
        } else if let Some(rest) = line.strip_prefix("Caused by: ") {
            let rb = rest.as_bytes();
            let (kind, mut message): (&[u8], Vec<u8>) = match rest.find(':') {
                Some(colon) => (&rb[..colon], rb.get(colon + 2..).unwrap_or_default().to_vec()),
                None => (rb, Vec::new()),
            };
            // The message runs on, concatenated, up to the next frame line.
            let mut next = "";
            for l in it.by_ref() {
                if is_java_frame(l) {
                    next = l;
                    break;
                }
                message.extend_from_slice(l.as_bytes());
            }
            chain(excs, Cow::Borrowed(kind), Cow::Owned(message), next_id);
            if next.is_empty() {
                return;
            }
            line = next;
            continue;
        }
        match it.next() {
            Some(l) => line = l,
            None => return,
        }
    }
}

fn python<'a>(trace: &'a str, excs: &mut Vec<Exception<'a>>, next_id: &mut dyn FnMut() -> u64) {
    const DURING: &str = "During handling of the above exception, another exception occurred:";
    let lines: Vec<&'a str> = trace.split('\n').collect();
    let Some(mut idx) = lines.len().checked_sub(2) else { return };
    loop {
        let line = lines[idx];
        if line.starts_with("  File ") {
            let mut parts = line.split(',');
            if let (Some(file), Some(number), Some(label), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            {
                let fb = file.as_bytes();
                let path = if fb.len() > 8 { &fb[8..fb.len() - 1] } else { &b""[..] };
                let number = number.strip_prefix(" line ").map_or(0, |n| atoi(n.as_bytes()));
                let label = label.strip_prefix(" in ").unwrap_or("").as_bytes();
                push_frame(excs, Frame { path, line: number, label });
            }
        } else if line.starts_with(DURING) {
            let Some(file_idx) = lines[..idx].iter().rposition(|l| l.starts_with("  File ")) else { return };
            // The message: from two lines below that File line to two above this one.
            let message = match lines.get(file_idx + 2..idx.saturating_sub(1)) {
                Some(ls) => ls.join("\n"),
                None => String::new(),
            };
            let Some(colon) = message.find(':') else { return };
            let mb = message.as_bytes();
            let kind = mb[..colon].to_vec();
            let msg = mb.get(colon + 2..).unwrap_or_default().to_vec();
            chain(excs, Cow::Owned(kind), Cow::Owned(msg), next_id);
            idx = file_idx;
            continue;
        }
        match idx.checked_sub(1) {
            Some(i) => idx = i,
            None => return,
        }
    }
}

fn javascript<'a>(trace: &'a str, excs: &mut [Exception<'a>]) {
    let mut it = lines(trace);
    let (Some(_), Some(first)) = (it.next(), it.next()) else { return };
    for line in std::iter::once(first).chain(it) {
        if !line.starts_with("    at ") {
            continue;
        }
        let b = line.as_bytes();
        let (label, mut path): (&[u8], &[u8]) = match line.find('(') {
            Some(paren) if line.ends_with(')') => (&b[7..paren], &b[paren + 1..b.len() - 1]),
            Some(_) => (b"", b""),
            None => (b"", &b[7..]),
        };
        let mut number = 0;
        let first_colon = path.iter().position(|&c| c == b':');
        let second_colon = first_colon.and_then(|f| path[f + 1..].iter().position(|&c| c == b':').map(|s| f + 1 + s));
        match (first_colon, second_colon) {
            (Some(f), Some(s)) => {
                number = atoi(&path[f + 1..s]);
                path = &path[..f];
            }
            (None, _) if path.windows(6).any(|w| w == b"native") => path = b"native",
            _ => {}
        }
        if !path.is_empty() || !label.is_empty() || number != 0 {
            push_frame(excs, Frame { path, line: number, label });
        }
    }
}

fn dotnet<'a>(trace: &'a str, excs: &mut [Exception<'a>]) {
    let mut it = lines(trace);
    let (Some(_), Some(first)) = (it.next(), it.next()) else { return };
    for line in std::iter::once(first).chain(it) {
        let line = line.trim();
        if !line.starts_with("at ") {
            continue;
        }
        if line.contains(" in ") {
            let mut parts = line.split(" in ");
            let label = parts.next().unwrap_or("").as_bytes().get(3..).unwrap_or_default();
            let location = parts.next().unwrap_or("").as_bytes();
            let (mut path, mut number) = (location, 0);
            if let Some(colon) = location.iter().rposition(|&c| c == b':') {
                let mut text = &location[colon + 1..];
                if text.starts_with(b"line") {
                    text = text.get(5..).unwrap_or_default();
                }
                path = &location[..colon];
                number = atoi(text);
            }
            push_frame(excs, Frame { path, line: number, label });
        } else if let Some(close) = line.rfind(')') {
            push_frame(excs, Frame { path: b"", line: 0, label: &line.as_bytes()[3..=close] });
        }
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `^goroutine.*\brunning\b.*:$`
fn is_goroutine_header(line: &str) -> bool {
    let b = line.as_bytes();
    if !line.starts_with("goroutine") || !line.ends_with(':') {
        return false;
    }
    (9..b.len()).any(|p| b[p..].starts_with(b"running") && !is_word(b[p - 1]) && p + 7 < b.len() && !is_word(b[p + 7]))
}

/// The first `([^:\s]+):(\d+)`: a run of characters other than `:` and `[\t\n\f\r ]`, then a
/// colon and digits.
fn path_and_line(line: &str) -> Option<(&[u8], i64)> {
    let b = line.as_bytes();
    let sep = |c: u8| matches!(c, b':' | b'\t' | b'\n' | b'\x0c' | b'\r' | b' ');
    let mut start = 0;
    while start < b.len() {
        if sep(b[start]) {
            start += 1;
            continue;
        }
        let end = b[start..].iter().position(|&c| sep(c)).map_or(b.len(), |n| start + n);
        if b.get(end) == Some(&b':') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
            let digits = b[end + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
            return Some((&b[start..end], atoi(&b[end + 1..end + 1 + digits])));
        }
        start = end;
    }
    None
}

fn go<'a>(trace: &'a str, excs: &mut [Exception<'a>]) {
    let mut it = lines(trace);
    let (Some(_), Some(mut line)) = (it.next(), it.next()) else { return };
    // Path and line carry over from the previous frame when a line has none.
    let (mut path, mut number): (&[u8], i64) = (b"", 0);
    loop {
        if is_goroutine_header(line) {
            line = it.next().unwrap_or("");
        }
        let label = line.as_bytes();
        if let Some((p, n)) = path_and_line(it.next().unwrap_or("")) {
            (path, number) = (p, n);
        }
        push_frame(excs, Frame { path, line: number, label });
        match it.next() {
            Some(l) => line = l,
            None => return,
        }
    }
}

#[cfg(test)]
#[path = "stack_tests.rs"]
mod tests;
