//! The source tree keeps the shape a newcomer can read: no module imports one that imports it
//! back (directly or round a longer loop), the folders (the top-level modules of `src/`) form a
//! stack in which each imports only the ones below it, and no file runs past 500 lines without
//! saying why at its top.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 500;
/// What a long file's module docs must say.
const LONG_REASON: &str = "over 500 lines";

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src/") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` and `src/a/b/mod.rs` are `a::b`; `lib.rs` and `main.rs` are the root.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` module.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]").next().unwrap_or("");
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Every `crate::a::b…` and `super::…` path in `code`, resolved against the module `here`
/// (`super` of `a::b` is `a`, whether its file is `a/b.rs` or `a/b/mod.rs`).
fn references(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let parent = here[..here.len().saturating_sub(1)].to_vec();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let before = rest[..i].chars().last();
            rest = &rest[i + prefix.len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let path: Vec<String> = rest
                .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            out.push(base.iter().cloned().chain(path).collect());
        }
    }
    out
}

/// Whether `code` uses a path that starts with `prefix` (`buffer::` but not `ring_buffer::`).
fn mentions(code: &str, prefix: &str) -> bool {
    code.match_indices(prefix)
        .any(|(i, _)| !code[..i].chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':'))
}

/// Every module of `src/` and the modules each one imports.
type Graph = BTreeMap<Vec<String>, BTreeSet<Vec<String>>>;

fn module_graph() -> (BTreeMap<Vec<String>, PathBuf>, Graph) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files.iter().map(|f| (module_of(&src, f), f.clone())).collect();
    let mut edges: Graph = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).expect("read");
        let children = modules.keys().filter(|m| m.len() == module.len() + 1 && m.starts_with(module));
        let child_paths = children.flat_map(|child| {
            let name = child.last().cloned().unwrap_or_default();
            mentions(&code(&text), &format!("{name}::")).then(|| child.clone())
        });
        for mut path in references(&code(&text), module).into_iter().chain(child_paths.collect::<Vec<_>>()) {
            while !path.is_empty() && !modules.contains_key(&path) {
                path.pop();
            }
            if !path.is_empty() && &path != module {
                edges.entry(module.clone()).or_default().insert(path);
            }
        }
    }
    (modules, edges)
}

/// The modules of `graph` that can reach themselves.
fn on_loops(graph: &Graph) -> Vec<String> {
    let mut loops = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Vec<String>> = graph.get(start).into_iter().flatten().cloned().collect();
        while let Some(m) = stack.pop() {
            if &m == start {
                loops.push(start.join("::"));
                break;
            }
            if seen.insert(m.clone()) {
                stack.extend(graph.get(&m).into_iter().flatten().cloned());
            }
        }
    }
    loops
}

/// The graph between folders (the top-level modules of `src/`: `pipeline`, `proxy`, …): an
/// edge wherever a module of one imports a module of another.
fn folder_graph(edges: &Graph) -> Graph {
    let mut folders: Graph = BTreeMap::new();
    for (from, tos) in edges {
        for to in tos {
            if let (Some(a), Some(b)) = (from.first(), to.first()) {
                if a != b {
                    folders.entry(vec![a.clone()]).or_default().insert(vec![b.clone()]);
                }
            }
        }
    }
    folders
}

/// The folders from the top of the crate to its bottom: a folder imports only folders on
/// lower lines (`docs/architecture.md` draws this stack).
const STACK: &[&[&str]] = &[
    &["runner"],
    &["proxy"],
    &["ingest", "report"],
    &["pipeline"],
    &["aws"],
    &["backend"],
    &["signal", "translate"],
    &["serve", "config"],
    &["sizing"],
    &["stats"],
];

fn level(folder: &str) -> Option<usize> {
    STACK.iter().position(|line| line.contains(&folder))
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let (modules, edges) = module_graph();
    let loops = on_loops(&edges);
    assert!(modules.len() > 20, "found only {} modules: is src/ where it was?", modules.len());
    assert!(loops.is_empty(), "modules on an import loop: {loops:?}\nedges: {edges:#?}");
}

#[test]
fn no_folder_imports_one_that_imports_it_back() {
    let (_, edges) = module_graph();
    let folders = folder_graph(&edges);
    assert!(folders.len() > 8, "found only {} folders that import others", folders.len());
    let loops = on_loops(&folders);
    assert!(loops.is_empty(), "folders on an import loop: {loops:?}\nfolder edges: {folders:#?}");
}

#[test]
fn folders_import_only_the_folders_below_them() {
    let (modules, edges) = module_graph();
    let tops: BTreeSet<&str> = modules.keys().filter_map(|m| m.first()).map(String::as_str).collect();
    let unplaced: Vec<&&str> = tops.iter().filter(|t| level(t).is_none()).collect();
    assert!(unplaced.is_empty(), "folders missing from STACK (place them in the stack): {unplaced:?}");
    let mut upward = Vec::new();
    // The crate root (lib.rs, main.rs) sits above every folder.
    for (from, tos) in edges.iter().filter(|(from, _)| !from.is_empty()) {
        for to in tos {
            let (a, b) = (&from[0], &to[0]);
            if a != b && level(a) >= level(b) {
                upward.push(format!("{} imports {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(upward.is_empty(), "imports up or across the stack: {upward:#?}");
}

#[test]
fn long_files_say_why_at_their_top() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests/it", "benches"] {
        sources(&root.join(dir), &mut files);
    }
    let unexplained: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            let lines = text.lines().count();
            let docs: String = text.lines().take_while(|l| l.starts_with("//!") || l.is_empty()).collect();
            (lines > MAX_LINES && !docs.contains(LONG_REASON)).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    assert!(unexplained.is_empty(), "files over {MAX_LINES} lines whose module docs do not say why: {unexplained:?}");
}

#[test]
fn the_checks_see_a_loop_and_a_long_file() {
    // A loop through `super`: b imports a, and a imports b.
    let a = references(&code("use crate::x::b::Thing;\n// crate::y is a comment"), &["x".into(), "a".into()]);
    assert_eq!(a, vec![vec!["x".to_owned(), "b".into(), "Thing".into()]]);
    let b = references("use super::a;", &["x".into(), "b".into()]);
    assert_eq!(b, vec![vec!["x".to_owned(), "a".into()]]);
    assert_eq!(code("fn f() {}\n#[cfg(test)]\nmod tests { use crate::z; }"), "fn f() {}");
    assert!(mentions("use buffer::{Budget};", "buffer::") && !mentions("use ring_buffer::X;", "buffer::"));
    // Two folders whose files import each other are a loop between folders, though no file
    // imports one that imports it back.
    let v = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    let files: Graph = [(v("a::x"), [v("b::y")].into()), (v("b::z"), [v("a::w")].into())].into_iter().collect();
    assert!(on_loops(&files).is_empty());
    assert_eq!(on_loops(&folder_graph(&files)), ["a", "b"]);
}
