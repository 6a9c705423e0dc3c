//! The crate's top-level modules form no cycle: a module that another one uses never uses it
//! back, directly or through others. `config` in particular reads the environment into the
//! settings types of `http`, `wtl`, `memory` and `telemetry`, and none of them may use it.
//!
//! The graph is read from the source: every `crate::module` path (also inside `use crate::{…}`
//! groups) and every `super::` path that climbs to the crate root, in code and in tests alike.
//! Comments are skipped, so a doc link does not count as a use.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn source_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            source_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a file below `src/`: `src/wtl/mod.rs` → `[wtl]`, `src/wtl/tls.rs` →
/// `[wtl, tls]`, `src/lib.rs` → `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The code alone: comments (`//` to the end of the line, `/* … */` blocks, nested too) and the
/// text inside string literals (plain, `r"…"`, `r#"…"#`) are dropped, so neither a doc link nor a
/// message that names a module counts as a use.
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let find = |from: usize, what: &[u8]| bytes[from..].windows(what.len()).position(|w| w == what);
    let mut i = 0;
    while i < bytes.len() {
        let rest = &bytes[i..];
        let after_ident = i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        if rest.starts_with(b"//") {
            i = find(i, b"\n").map_or(bytes.len(), |n| i + n);
        } else if rest.starts_with(b"/*") {
            i = block_comment_end(bytes, i);
        } else if !after_ident && (rest.starts_with(b"r#\"") || rest.starts_with(b"r\"")) {
            let hashes = rest[1..].iter().take_while(|&&b| b == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"').chain(std::iter::repeat_n(b'#', hashes)).collect();
            let start = i + 2 + hashes;
            i = find(start, &close).map_or(bytes.len(), |n| start + n + close.len());
            out.extend_from_slice(b"\"\"");
        } else if rest[0] == b'"' && !is_char_literal(bytes, i) {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.extend_from_slice(b"\"\"");
        } else {
            out.push(rest[0]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Is the `"` at `i` a character literal (`'"'` or `'\"'`)?
fn is_char_literal(bytes: &[u8], i: usize) -> bool {
    let closes = bytes.get(i + 1) == Some(&b'\'');
    closes && (bytes[..i].ends_with(b"'") || bytes[..i].ends_with(b"'\\"))
}

/// Where the block comment opening at `start` ends (block comments nest in Rust).
fn block_comment_end(bytes: &[u8], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i < bytes.len() {
        if bytes[i..].starts_with(b"/*") {
            depth += 1;
            i += 2;
        } else if bytes[i..].starts_with(b"*/") {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

fn ident_at(text: &str) -> &str {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The first segments named by a path that starts right after `crate::` (or after a `super::`
/// chain that reached the root): an identifier, or each item of a `{…}` group.
fn first_segments(rest: &str) -> Vec<String> {
    if let Some(group) = rest.strip_prefix('{') {
        let mut depth = 1;
        let end = group
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map_or(group.len(), |(i, _)| i);
        let mut items = Vec::new();
        let mut depth = 0;
        let mut start = 0;
        let inner = &group[..end];
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(inner[start..i].trim().to_string());
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(inner[start..].trim().to_string());
        return items
            .iter()
            .map(|item| ident_at(item).to_string())
            .filter(|s| !s.is_empty())
            .collect();
    }
    vec![ident_at(rest).to_string()]
}

/// The top-level modules `code`, written in the module at `path`, uses.
fn uses(code: &str, path: &[String]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        found.extend(first_segments(&code[at + "crate::".len()..]));
    }
    for (at, _) in code.match_indices("super::") {
        if code[..at].ends_with("super::") {
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            climbs += 1;
        }
        // Climbing to the root, or past it from a module declared inline in the file.
        if climbs >= path.len() {
            found.extend(first_segments(rest));
        }
    }
    found
}

fn graph() -> Graph {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    source_files(&src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_path(f.strip_prefix(&src).ok()?).first().cloned())
        .collect();
    let mut graph = Graph::new();
    for file in &files {
        let path = module_path(file.strip_prefix(&src).expect("below src"));
        let Some(top) = path.first() else { continue };
        let code = without_comments(&std::fs::read_to_string(file).expect("readable"));
        let used = uses(&code, &path)
            .into_iter()
            .filter(|m| m != top && modules.contains(m));
        graph.entry(top.clone()).or_default().extend(used);
    }
    graph
}

/// A cycle of the graph, as the modules along it (the first repeated at the end), if any.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, stack: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let graph = graph();
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(edges >= 20, "the graph was not read: {graph:?}");
    for settings_owner in ["http", "wtl", "memory", "telemetry"] {
        assert!(
            graph["config"].contains(settings_owner),
            "config assembles {settings_owner}'s settings: {graph:?}"
        );
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("a module cycle: {}\nthe graph: {graph:#?}", cycle.join(" -> "));
    }
}

#[test]
fn the_reader_finds_uses_in_all_their_forms() {
    let code = without_comments(
        "use crate::{wtl::Settings, memory::{self, Store}};\n\
         // crate::config is only mentioned here\n\
         let u = \"http://x\"; fn f() -> crate::plan::Plan { super::super::nsps::parse() }\n\
         /* crate::metrics /* nested */ crate::config */ use super::tls;\n\
         let s = \"crate::config\"; let r = r\"\\\"; /// crate::config\n\
         mod tests { use super::super::super::rotation::POLL; }",
    );
    let found = uses(&code, &["http".to_string(), "events".to_string()]);
    let expected: BTreeSet<String> = ["wtl", "memory", "plan", "nsps", "rotation"].map(String::from).into();
    assert_eq!(found, expected);
}

#[test]
fn the_cycle_finder_finds_a_cycle_through_three_modules() {
    let mut graph = Graph::new();
    graph.entry("a".into()).or_default().insert("b".into());
    graph.entry("b".into()).or_default().insert("c".into());
    graph.entry("c".into()).or_default().insert("a".into());
    graph.entry("d".into()).or_default().insert("a".into());
    assert_eq!(
        find_cycle(&graph).map(|c| c.join(" -> ")).as_deref(),
        Some("a -> b -> c -> a")
    );
    graph.get_mut("c").expect("c").clear();
    assert_eq!(find_cycle(&graph), None);
}
