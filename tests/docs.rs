//! The documentation names only what exists. Every `src/` path and every module path of this
//! crate (`nsps::values`, `crate::memory::shared`, `wtl::WtlClient`) named in the README,
//! `docs/*.md` and the other READMEs must resolve in `src/`; a failure lists each reference that
//! does not, as `file:line`.
//!
//! A module path counts when its first segment (after an optional `crate::`) is a top-level
//! module of the crate: the name of a file or folder in `src/`. Each next segment must be a
//! submodule (`a/b.rs`, `a/b/mod.rs`, or `mod b` in a's file) or an item declared in the
//! module's file(s): `fn`, `struct`, `enum`, `const`, `static`, `type`, `trait`, `union`, `mod`,
//! `macro_rules!`, or a name in a `pub use`. Once an item is reached, the remaining segments (a
//! method, a variant, an associated item) must appear in those files. Paths whose first segment
//! is not one of the crate's modules (`serde_json::Value`, `tokio::time`) are not this crate's
//! and are not checked.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The documents checked besides `docs/*.md`; those that do not exist are skipped.
const DOCUMENTS: &[&str] = &[
    "README.md",
    "bench/README.md",
    "_gcp-deploy/README.md",
    "_aws-deploy/README.md",
    "monitoring/README.md",
];

/// Fewer references than this in the real documents means the extraction broke, not that the
/// documents are right.
const AT_LEAST: usize = 40;

const ITEM_KEYWORDS: &[&str] = &[
    "fn", "struct", "enum", "const", "static", "type", "trait", "union", "mod",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Reference {
    /// A repository path starting `src/` (a leading `../` removed).
    Path(String),
    /// A Rust path, as written (`crate::` included).
    Module(String),
}

impl Reference {
    fn text(&self) -> &str {
        match self {
            Self::Path(text) | Self::Module(text) => text,
        }
    }
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_ident(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_') && s.chars().all(is_ident_char)
}

/// The `src/` paths in one line of a document: `src/` at the start of a path (also behind `../`
/// from `docs/`), never inside another path (`bench/forwarder/src/main.rs` is not ours).
fn src_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in line.match_indices("src/") {
        let mut start = at;
        while start >= 3 && line.get(start - 3..start) == Some("../") {
            start -= 3;
        }
        if line[..start].chars().next_back().is_some_and(is_path_char) {
            continue;
        }
        let end = line[at..]
            .find(|c: char| !is_path_char(c))
            .map_or(line.len(), |n| at + n);
        let path = line[at..end].trim_end_matches('.');
        found.push(path.to_string());
    }
    found
}

/// The Rust paths (`a::b`, `crate::a`) in one line of a document.
fn rust_paths(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(|c: char| is_ident_char(c) || c == ':') {
        let run_len = rest[at..]
            .find(|c: char| !(is_ident_char(c) || c == ':'))
            .unwrap_or(rest.len() - at);
        let run = &rest[at..at + run_len];
        rest = &rest[at + run_len..];
        let segments: Vec<&str> = run.trim_end_matches(':').split("::").collect();
        if segments.len() >= 2 && segments.iter().all(|s| is_ident(s)) {
            found.push(segments.join("::"));
        }
    }
    found
}

/// Every reference in a document, with its line number (from 1).
fn references(text: &str) -> Vec<(usize, Reference)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        found.extend(src_paths(line).into_iter().map(|p| (n + 1, Reference::Path(p))));
        found.extend(rust_paths(line).into_iter().map(|p| (n + 1, Reference::Module(p))));
    }
    found
}

/// The crate's sources, as the documents may name them.
struct Sources {
    root: PathBuf,
    top_level: BTreeSet<String>,
}

/// A module as the checker walks it: its files and the folder its submodules live in.
struct Module {
    files: Vec<PathBuf>,
    dir: PathBuf,
}

impl Sources {
    fn at(root: &Path) -> Self {
        let src = root.join("src");
        let mut top_level = BTreeSet::new();
        for entry in fs::read_dir(&src).expect("src/ is readable") {
            let path = entry.expect("an entry of src/").path();
            let name = if path.is_dir() {
                path.file_name()
            } else if path.extension().is_some_and(|e| e == "rs") {
                path.file_stem()
            } else {
                None
            };
            if let Some(name) = name.and_then(|n| n.to_str()) {
                top_level.insert(name.to_string());
            }
        }
        Self {
            root: root.to_path_buf(),
            top_level,
        }
    }

    /// `Ok` when the reference names something that exists; otherwise why not. References that
    /// are not this crate's are `Ok` too (see [`Sources::is_ours`]).
    fn resolve(&self, reference: &Reference) -> Result<(), String> {
        match reference {
            Reference::Path(path) if self.root.join(path).exists() => Ok(()),
            Reference::Path(_) => Err("no such file or folder".to_string()),
            Reference::Module(path) => self.resolve_module(path),
        }
    }

    /// Whether the reference is one this check is about.
    fn is_ours(&self, reference: &Reference) -> bool {
        match reference {
            Reference::Path(_) => true,
            Reference::Module(path) => {
                let mut segments = path.split("::");
                match segments.next() {
                    Some("crate") => true,
                    Some(first) => self.top_level.contains(first),
                    None => false,
                }
            }
        }
    }

    fn resolve_module(&self, path: &str) -> Result<(), String> {
        let segments: Vec<&str> = path.split("::").collect();
        let segments = match segments.split_first() {
            Some((&"crate", rest)) => rest,
            _ => &segments[..],
        };
        let Some((first, rest)) = segments.split_first() else {
            return Err("`crate` alone names nothing".to_string());
        };
        if !self.top_level.contains(*first) {
            return if self.is_ours(&Reference::Module(path.to_string())) {
                Err(format!("`{first}` is not a module of src/"))
            } else {
                Ok(())
            };
        }
        let src = self.root.join("src");
        let mut module = Module {
            files: existing([src.join(format!("{first}.rs")), src.join(first).join("mod.rs")]),
            dir: src.join(first),
        };
        let mut walked = vec![*first];
        for (i, segment) in rest.iter().enumerate() {
            if let Some(sub) = submodule(&module, segment) {
                module = sub;
                walked.push(segment);
                continue;
            }
            let sources = read_all(&module.files);
            if !declares(&sources, segment) {
                return Err(format!(
                    "`{segment}` is neither a submodule of `{}` nor an item declared there",
                    walked.join("::")
                ));
            }
            let tokens = identifiers(&sources);
            return match rest[i + 1..].iter().find(|s| !tokens.contains(**s)) {
                Some(missing) => Err(format!(
                    "`{missing}` does not appear in `{}` beside `{segment}`",
                    walked.join("::")
                )),
                None => Ok(()),
            };
        }
        Ok(())
    }
}

fn existing(paths: impl IntoIterator<Item = PathBuf>) -> Vec<PathBuf> {
    paths.into_iter().filter(|p| p.is_file()).collect()
}

/// `name` as a submodule of `module`: a file or folder of its own, or `mod name` in its files
/// (an inline module, whose items are then looked for in the same files).
fn submodule(module: &Module, name: &str) -> Option<Module> {
    let dir = module.dir.join(name);
    let files = existing([module.dir.join(format!("{name}.rs")), dir.join("mod.rs")]);
    if !files.is_empty() {
        return Some(Module { files, dir });
    }
    let sources = read_all(&module.files);
    has_pair(&tokens(&sources), "mod", name).then(|| Module {
        files: module.files.clone(),
        dir,
    })
}

/// The text of the files, line comments removed (doc comments name things they do not declare).
fn read_all(files: &[PathBuf]) -> String {
    let mut text = String::new();
    for file in files {
        let content = fs::read_to_string(file).unwrap_or_default();
        for line in content.lines() {
            text.push_str(line.split("//").next().unwrap_or_default());
            text.push('\n');
        }
    }
    text
}

/// Identifiers and single punctuation characters, in order.
fn tokens(source: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in source.char_indices() {
        if is_ident_char(c) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            out.push(&source[s..i]);
        }
        if !c.is_whitespace() {
            out.push(&source[i..i + c.len_utf8()]);
        }
    }
    if let Some(s) = start {
        out.push(&source[s..]);
    }
    out
}

fn identifiers(source: &str) -> BTreeSet<&str> {
    tokens(source).into_iter().filter(|t| is_ident(t)).collect()
}

fn has_pair(tokens: &[&str], first: &str, second: &str) -> bool {
    tokens.windows(2).any(|w| w[0] == first && w[1] == second)
}

/// Whether `source` declares an item `name`, or re-exports it with `pub use`.
fn declares(source: &str, name: &str) -> bool {
    let tokens = tokens(source);
    if ITEM_KEYWORDS.iter().any(|kw| has_pair(&tokens, kw, name)) {
        return true;
    }
    if tokens.windows(3).any(|w| w == ["macro_rules", "!", name]) {
        return true;
    }
    // `pub use a::b::{C, D as E};` and `pub(crate) use ...;`: any name in the statement.
    let mut in_pub_use = false;
    for (i, token) in tokens.iter().enumerate() {
        if *token == "use" && i > 0 && (tokens[i - 1] == "pub" || tokens[i - 1] == ")") {
            in_pub_use = true;
        } else if *token == ";" {
            in_pub_use = false;
        } else if in_pub_use && *token == name {
            return true;
        }
    }
    false
}

/// The documents to check, relative to the repository root.
fn documents(root: &Path) -> Vec<String> {
    let mut docs: Vec<String> = DOCUMENTS
        .iter()
        .filter(|d| root.join(d).is_file())
        .map(|d| d.to_string())
        .collect();
    if let Ok(entries) = fs::read_dir(root.join("docs")) {
        let mut more: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(|n| format!("docs/{n}")))
            .collect();
        more.sort();
        docs.extend(more);
    }
    docs
}

/// Every reference of this crate in the documents, and the ones that do not resolve, as
/// `file:line: reference: why`.
fn check(root: &Path) -> (usize, Vec<String>) {
    let sources = Sources::at(root);
    let mut checked = 0;
    let mut bad = Vec::new();
    for doc in documents(root) {
        let text = fs::read_to_string(root.join(&doc)).expect("a readable document");
        for (line, reference) in references(&text) {
            if !sources.is_ours(&reference) {
                continue;
            }
            checked += 1;
            if let Err(why) = sources.resolve(&reference) {
                bad.push(format!("{doc}:{line}: `{}`: {why}", reference.text()));
            }
        }
    }
    (checked, bad)
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_documentation_names_only_paths_and_modules_that_exist() {
    let root = repository();
    let (checked, bad) = check(&root);
    assert!(
        bad.is_empty(),
        "the documentation names {} thing(s) that do not exist in src/:\n{}",
        bad.len(),
        bad.join("\n")
    );
    assert!(
        checked >= AT_LEAST,
        "only {checked} references to the crate's sources found in {:?}; the extraction is broken",
        documents(&root)
    );
    assert!(
        documents(&root).iter().any(|d| d.starts_with("docs/")),
        "docs/*.md is checked"
    );
}

#[test]
fn references_are_found_where_the_documents_write_them() {
    let line = "see [`src/plan.rs`](../src/plan.rs), src/http/. and `nsps::values`, not \
                bench/forwarder/src/main.rs, http://x/src/a.rs or `serde_json::Value`s; `crate::wtl::`";
    assert_eq!(
        src_paths(line),
        vec!["src/plan.rs", "src/plan.rs", "src/http/"],
        "paths inside other paths are not ours"
    );
    assert_eq!(
        rust_paths(line),
        vec!["nsps::values", "serde_json::Value", "crate::wtl"]
    );
    let found = references("one\n`a::b` and src/x.rs\n");
    assert_eq!(
        found,
        vec![
            (2, Reference::Path("src/x.rs".into())),
            (2, Reference::Module("a::b".into()))
        ]
    );
}

#[test]
fn the_real_tree_resolves_its_own_modules_and_flags_made_up_ones() {
    let sources = Sources::at(&repository());
    let ok = |r: Reference| sources.resolve(&r);
    assert_eq!(ok(Reference::Path("src/lib.rs".into())), Ok(()));
    assert_eq!(ok(Reference::Path("src/main.rs".into())), Ok(()));
    assert_eq!(ok(Reference::Module("main::main".into())), Ok(()));
    assert!(ok(Reference::Path("src/nope.rs".into())).is_err());
    assert!(ok(Reference::Module("nsps::scan".into())).is_err());
    assert!(ok(Reference::Module("crate::nope".into())).is_err());
    // Every file of every folder of src/ is a module the checker finds by its path.
    let mut seen = 0;
    for dir in fs::read_dir(repository().join("src"))
        .expect("src/")
        .filter_map(Result::ok)
    {
        let dir = dir.path();
        let Some(top) = dir.file_name().and_then(|n| n.to_str()).filter(|_| dir.is_dir()) else {
            continue;
        };
        for file in fs::read_dir(&dir).expect("a folder of src/").filter_map(Result::ok) {
            let path = file.path();
            let Some(stem) = path.file_stem().and_then(|n| n.to_str()) else {
                continue;
            };
            if path.extension().is_some_and(|e| e == "rs") && stem != "mod" {
                let module = format!("crate::{top}::{stem}");
                assert_eq!(ok(Reference::Module(module.clone())), Ok(()), "{module}");
                assert!(ok(Reference::Module(format!("{module}::made_up_name_xyz"))).is_err());
                seen += 1;
            }
        }
    }
    assert!(seen >= 5, "only {seen} modules in folders of src/");
}

/// A small crate written for the test, so each rule is checked against known sources.
struct Scratch(PathBuf);

impl Scratch {
    fn new(files: &[(&str, &str)]) -> Self {
        let root = std::env::temp_dir().join(format!("docs-check-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, content) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().expect("a parent")).expect("create the folder");
            fs::write(path, content).expect("write the file");
        }
        Self(root)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn resolution_follows_the_rules_on_a_known_tree() {
    let scratch = Scratch::new(&[
        (
            "src/a.rs",
            "pub mod b;\nmod inline { pub fn deep() {} }\n/// fn ghost\npub struct Thing;\n\
             impl Thing { pub fn go(&self) {} }\npub(crate) use crate::c::{Kind, Other as Renamed};\n\
             macro_rules! shout { () => {} }\n",
        ),
        ("src/a/b.rs", "pub(crate) async fn helper() {}\nconst LIMIT: u8 = 1;\n"),
        ("src/c/mod.rs", "pub enum Kind { One, Two }\npub struct Other;\n"),
        ("src/c/d.rs", "pub trait Speak {}\n"),
        ("src/lib.rs", "pub mod a;\npub mod c;\n"),
        (
            "docs/notes.md",
            "`a::b::helper` and `a::nope`\nsrc/a/b.rs and src/nope.rs\n",
        ),
    ]);
    let sources = Sources::at(&scratch.0);
    let resolve = |text: &str| {
        let reference = if text.starts_with("src/") {
            Reference::Path(text.into())
        } else {
            Reference::Module(text.into())
        };
        sources.resolve(&reference)
    };
    for good in [
        "a::b",
        "a::b::helper",
        "a::b::LIMIT",
        "a::inline",
        "a::inline::deep",
        "a::Thing",
        "a::Thing::go",
        "a::Kind",
        "a::Renamed",
        "a::shout",
        "c::d",
        "c::d::Speak",
        "c::Kind::Two",
        "crate::c",
        "crate::a::b",
        "src/a/b.rs",
        "src/c/",
        "other_crate::anything",
    ] {
        assert_eq!(resolve(good), Ok(()), "{good}");
    }
    for bad in [
        "a::nope",
        "a::ghost",
        "a::b::nope",
        "a::Thing::stop",
        "c::Kind::Three",
        "c::d::Listen",
        "crate::zzz",
        "src/nope.rs",
        "src/a/nope/",
    ] {
        assert!(resolve(bad).is_err(), "{bad} should not resolve");
    }
    let (checked, bad) = check(&scratch.0);
    assert_eq!(checked, 4);
    assert_eq!(
        bad,
        vec![
            "docs/notes.md:1: `a::nope`: `nope` is neither a submodule of `a` nor an item declared there",
            "docs/notes.md:2: `src/nope.rs`: no such file or folder",
        ]
    );
}
