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

/// The text without comments: `//` to the end of the line and `/* … */` blocks, outside string
/// literals (plain and `r#"…"#`).
fn without_comments(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let find = |from: usize, what: &[u8]| bytes[from..].windows(what.len()).position(|w| w == what);
    let (mut i, mut in_string) = (0, false);
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            if c == b'\\' {
                out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
                i += 2;
                continue;
            }
            in_string = c != b'"';
        } else if c == b'"' && (i == 0 || bytes[i - 1] != b'\'') {
            in_string = true;
        } else if bytes[i..].starts_with(b"r#\"") {
            // A raw string ends at `"#` whatever quotes it holds.
            let end = find(i + 3, b"\"#").map_or(bytes.len(), |n| i + 3 + n + 2);
            out.extend_from_slice(&bytes[i..end]);
            i = end;
            continue;
        } else if bytes[i..].starts_with(b"//") {
            i = find(i, b"\n").map_or(bytes.len(), |n| i + n);
            continue;
        } else if bytes[i..].starts_with(b"/*") {
            i = find(i, b"*/").map_or(bytes.len(), |n| i + n + 2);
            continue;
        }
        out.push(c);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        if climbs == path.len() {
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
         /* crate::metrics */ use super::tls;",
    );
    let found = uses(&code, &["http".to_string(), "events".to_string()]);
    let expected: BTreeSet<String> = ["wtl", "memory", "plan", "nsps"].map(String::from).into();
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
