//! The stack parsers, with the exporter's own test traces and the inputs that crash it.

use super::*;

/// Parses `trace` as `lang` into exceptions with ids 1, 2, 3…
fn run(lang: Lang, trace: &str) -> Vec<Exception<'_>> {
    let mut n = 0;
    let mut next = || {
        n += 1;
        n
    };
    let mut excs = vec![Exception {
        id: next(),
        kind: Cow::Borrowed(b"T"),
        message: Cow::Borrowed(b"m"),
        remote: true,
        cause: None,
        stack: Vec::new(),
    }];
    parse(lang, trace, &mut excs, &mut next);
    excs
}

/// `label|path|line` of each frame of exception `i`.
fn frames(excs: &[Exception<'_>], i: usize) -> Vec<String> {
    excs[i]
        .stack
        .iter()
        .map(|f| format!("{}|{}|{}", String::from_utf8_lossy(f.label), String::from_utf8_lossy(f.path), f.line))
        .collect()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn atoi_like_go() {
    assert_eq!(atoi(b"626"), 626);
    assert_eq!(atoi(b"+7"), 7);
    assert_eq!(atoi(b"-7"), -7);
    assert_eq!(atoi(b""), 0);
    assert_eq!(atoi(b"-"), 0);
    assert_eq!(atoi(b"12a"), 0);
    assert_eq!(atoi(b" 1"), 0);
    assert_eq!(atoi(b"99999999999999999999"), i64::MAX);
    assert_eq!(atoi(b"-99999999999999999999"), i64::MIN);
    assert_eq!(atoi(b"99999999999999999999x"), i64::MAX, "overflow is seen before the bad byte");
    assert_eq!(atoi(b"9223372036854775808"), i64::MAX);
    assert_eq!(atoi(b"-9223372036854775808"), i64::MIN);
}

#[test]
fn languages() {
    assert_eq!(Lang::of("java"), Lang::Java);
    assert_eq!(Lang::of("php"), Lang::Java);
    assert_eq!(Lang::of("nodejs"), Lang::Other);
    assert_eq!(Lang::of("Java"), Lang::Other);
    assert!(run(Lang::Other, "x\n\tat a(b:1)").iter().all(|e| e.stack.is_empty()));
}

const JAVA: &str = "java.lang.IllegalStateException: state is not legal
\tat io.opentelemetry.sdk.trace.RecordEventsReadableSpanTest.recordException(RecordEventsReadableSpanTest.java:626)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat app//com.foo.C.d(C.java:x)
Caused by: java.lang.IllegalArgumentException: bad argument
with more
\t... 2 more
\tat org.junit.ThrowableCollector.execute(ThrowableCollector.java:73)
\t\tat double.tab(X.java:1)
\tat org.junit.NodeTestTask.executeRecursively(NodeTestTask.java)
Caused by: Bare";

#[test]
fn java_frames_and_causes() {
    let excs = run(Lang::Java, JAVA);
    assert_eq!(excs.len(), 3);
    assert_eq!(
        frames(&excs, 0),
        [
            "io.opentelemetry.sdk.trace.RecordEventsReadableSpanTest.recordException|RecordEventsReadableSpanTest.java|626",
            "jdk.internal.reflect.NativeMethodAccessorImpl.invoke0|Native Method|0",
            "/com.foo.C.d|C.java|0",
        ]
    );
    assert_eq!(excs[0].cause, Some(2));
    assert_eq!((excs[1].id, text(&excs[1].kind)), (2, "java.lang.IllegalArgumentException".into()));
    assert_eq!(text(&excs[1].message), "bad argumentwith more\t... 2 more");
    assert!(excs[1].remote, "remote is copied");
    assert_eq!(
        frames(&excs, 1),
        [
            "org.junit.ThrowableCollector.execute|ThrowableCollector.java|73",
            "org.junit.NodeTestTask.executeRecursively|NodeTestTask.java|0"
        ]
    );
    assert_eq!((excs[1].cause, text(&excs[2].kind), text(&excs[2].message)), (Some(3), "Bare".into(), "".into()));
    assert!(excs[2].stack.is_empty());
}

#[test]
fn java_edge_cases() {
    assert!(run(Lang::Java, "only one line").iter().all(|e| e.stack.is_empty()));
    assert_eq!(frames(&run(Lang::Java, "x\r\n\tat a.b(F.java:3)\r\n"), 0), ["a.b|F.java|3"]);
    // exporter crash: the colon is the last character
    let excs = run(Lang::Java, "x\nCaused by: X:");
    assert_eq!((text(&excs[1].kind), text(&excs[1].message)), ("X".into(), "".into()));
    // a colon followed by a multi-byte character: cut inside it, as Go slices
    let excs = run(Lang::Java, "x\nCaused by: X:é");
    assert_eq!(&*excs[1].message, &[0xA9]);
}

const PYTHON: &str = "Traceback (most recent call last):
  File \"bar.py\", line 10, in greet_many
    greet(person)
  File \"foo.py\", line 5, in greet
    print(greeting + ', ' + who_to_greet(someone))
ValueError: bad value
with more on
new lines

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"main.py\", line 14, in <module>
    greet_many(['Chad', 'Dan', 1])
  File \"greetings.py\", line 12, in greet_many
    print('hi, ' + person)
TypeError: must be str, not int";

#[test]
fn python_frames_and_causes() {
    let excs = run(Lang::Python, PYTHON);
    assert_eq!(excs.len(), 2);
    assert_eq!(frames(&excs, 0), ["greet_many|greetings.py|12", "<module>|main.py|14"]);
    assert_eq!(
        (text(&excs[1].kind), text(&excs[1].message)),
        ("ValueError".into(), "bad value\nwith more on\nnew lines".into())
    );
    assert_eq!(frames(&excs, 1), ["greet|foo.py|5", "greet_many|bar.py|10"]);
    assert_eq!(excs[0].cause, Some(2));
}

#[test]
fn python_malformed() {
    let malformed = "Traceback (most recent call last):
  File \"main.py\", line 14 in <module>
    x
  File \"main.py\", lin 14, in <module>
    x
  File \"main.py\", line 14, fin <module>
    x
  File \"greetings.py\", line 12, in greet_many
    x
TypeError: must be str, not int";
    assert_eq!(
        frames(&run(Lang::Python, malformed), 0),
        ["greet_many|greetings.py|12", "|main.py|14", "<module>|main.py|0"]
    );
    let no_colon =
        PYTHON.replace("ValueError: bad value", "ValueError bad value").replace("with more on\nnew lines\n", "");
    assert_eq!(run(Lang::Python, &no_colon).len(), 1);
    let no_file = "Traceback:\nValueError: v\n\nDuring handling of the above exception, another exception occurred:\n\n  File \"a\", line 1, in b\nT: m";
    let excs = run(Lang::Python, no_file);
    assert_eq!((excs.len(), frames(&excs, 0)), (1, vec!["b|a|1".to_string()]));
    assert!(run(Lang::Python, "single line").iter().all(|e| e.stack.is_empty()));
}

#[test]
fn python_crash_inputs() {
    // `  File "` with nothing after the quote
    assert_eq!(frames(&run(Lang::Python, "  File \", line 3, in f\nlast"), 0), ["f||3"]);
    assert_eq!(frames(&run(Lang::Python, "  File ,a,b\nlast"), 0), ["||0"]);
    // a chained message whose colon ends it
    let excs = run(Lang::Python, "  File \"a\", line 1, in b\nx\nT:\n\nDuring handling of the above exception, another exception occurred:\nlast");
    assert_eq!((text(&excs[1].kind), text(&excs[1].message)), ("T".into(), "".into()));
    // the During line right below a File line
    let excs = run(
        Lang::Python,
        "  File \"a\", line 1, in b\nDuring handling of the above exception, another exception occurred:\nlast",
    );
    assert_eq!(excs.len(), 1);
}

#[test]
fn javascript_frames() {
    let trace = "TypeError: Cannot read property 'value' of null
    at speedy (/home/gbusey/file.js:6:11)
    at makeFaster (/home/gbusey/file.js:5:3)
    at Object.<anonymous> (/home/gbusey/file.js:10:1)
    at node.js:906:3
    at Array.forEach (native)
    at native
    at file:///a/b.js:10:5
    at makeFaster (/home/gbusey/file.js:5:3)malformed123
    at speedy (/home/gbusey/file.js)
    at x (";
    assert_eq!(
        frames(&run(Lang::JavaScript, trace), 0),
        [
            "speedy |/home/gbusey/file.js|6",
            "makeFaster |/home/gbusey/file.js|5",
            "Object.<anonymous> |/home/gbusey/file.js|10",
            "|node.js|906",
            "Array.forEach |native|0",
            "|native|0",
            "|file|0",
            "speedy |/home/gbusey/file.js|0",
        ]
    );
}

#[test]
fn dotnet_frames() {
    let trace = "System.FormatException: Input string was not in a correct format.
\tat System.Number.ThrowOverflowOrFormatException(ParsingStatus status, TypeCode type)
\tat MyNamespace.IntParser.Parse(String s) in C:\\apps\\MyNamespace\\IntParser.cs:line 11
\t--- End of stack trace from previous location where exception was thrown ---
\tat Microsoft.X.Invoke(HttpContext context malformed
\tat A.B() in /x.cs:line 7 in more
\tat C.D() in nocolon
\tat E.F() in x.cs:12";
    assert_eq!(
        frames(&run(Lang::Dotnet, trace), 0),
        [
            "System.Number.ThrowOverflowOrFormatException(ParsingStatus status, TypeCode type)||0",
            "MyNamespace.IntParser.Parse(String s)|C:\\apps\\MyNamespace\\IntParser.cs|11",
            "A.B()|/x.cs|7",
            "C.D()|nocolon|0",
            "E.F()|x.cs|12",
        ]
    );
}

#[test]
fn dotnet_crash_inputs() {
    assert_eq!(frames(&run(Lang::Dotnet, "x\n  at A() in f.cs:line"), 0), ["A()|f.cs|0"]);
    assert_eq!(frames(&run(Lang::Dotnet, "x\nat in y"), 0), ["|y|0"]);
}

#[test]
fn go_frames() {
    let trace = "goroutine 19 [running]:
go.opentelemetry.io/otel/sdk/trace.recordStackTrace(0x0, 0x0)
\totel-go-core/opentelemetry-go/sdk/trace/span.go:323 +0x9b
go.opentelemetry.io/otel/sdk/trace.(*span).RecordError(0xc0003a6000)
\totel-go-core/opentelemetry-go/sdk/trace/span.go:302 +0x3fc
goroutine 26 [running]:
testing.tRunner(0xc000102900, 0x1484410)
\t/usr/local/go/src/testing/testing.go:1193 +0x1a3
created by testing.(*T).Run
\tno location here
last";
    assert_eq!(
        frames(&run(Lang::Go, trace), 0),
        [
            "go.opentelemetry.io/otel/sdk/trace.recordStackTrace(0x0, 0x0)|otel-go-core/opentelemetry-go/sdk/trace/span.go|323",
            "go.opentelemetry.io/otel/sdk/trace.(*span).RecordError(0xc0003a6000)|otel-go-core/opentelemetry-go/sdk/trace/span.go|302",
            "testing.tRunner(0xc000102900, 0x1484410)|/usr/local/go/src/testing/testing.go|1193",
            "created by testing.(*T).Run|/usr/local/go/src/testing/testing.go|1193",
            "last|/usr/local/go/src/testing/testing.go|1193",
        ]
    );
    assert!(is_goroutine_header("goroutine 1 [running]:"));
    assert!(!is_goroutine_header("goroutine 1 [notrunning]:"));
    assert!(!is_goroutine_header("goroutinerunning :"));
    assert!(!is_goroutine_header("goroutine 1 [running]"));
    assert_eq!(path_and_line("a:b:12 x:3"), Some((&b"b"[..], 12)));
    assert_eq!(path_and_line("no digits: here"), None);
}
