//! The house's layering, checked on every test run: no import cycles between the files of
//! `src/`, and the rules of `layers.rules` (`never A -> B`: no file under module A imports
//! module B; `only A -> B C`: files under A import nothing of the crate but A, B and C).
//!
//! It reads `crate::` / `super::` / `self::` paths in each file's text before its
//! `#[cfg(test)]` module, so a path in a comment counts too: keep comments to names, not paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside the crate (`["exec", "warehouse"]`); the crate root is empty.
type Module = Vec<String>;

/// Every `.rs` file under `dir`, by module path.
fn modules(src: &Path, dir: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(src, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.insert(module_of(src, &path), path);
        }
    }
}

/// `src/exec/mod.rs` → `exec`, `src/plan/split.rs` → `plan::split`, `src/lib.rs` → root.
fn module_of(src: &Path, file: &Path) -> Module {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Module = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib" | "main")) {
        parts.pop();
    }
    parts
}

/// The crate-relative paths a file's code names, with the line each is on: plain paths
/// (`crate::a::b`) and each item of a `use` group (`use super::{x, y::z}`).
fn paths(body: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut found = vec![];
    for (n, line) in body.lines().enumerate() {
        for head in ["crate", "super", "self"] {
            let mut rest = line;
            while let Some(i) = find_word(rest, &format!("{head}::")) {
                let after = &rest[i + head.len() + 2..];
                let chain = path_chain(after);
                match after[chain.len()..].strip_prefix('{') {
                    Some(group) => {
                        for item in group.split([',', '}']).map(str::trim) {
                            let mut parts = split_chain(&chain);
                            parts.extend(split_chain(item.split(" as ").next().unwrap()));
                            found.push((n + 1, head.to_string(), parts));
                        }
                    }
                    None => found.push((n + 1, head.to_string(), split_chain(&chain))),
                }
                rest = &after[chain.len()..];
            }
        }
    }
    found
}

/// Where `word` starts in `text` not preceded by an identifier character.
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The leading `a::b::` chain of identifiers.
fn path_chain(text: &str) -> String {
    let end =
        text.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(text.len());
    text[..end].to_string()
}

fn split_chain(chain: &str) -> Vec<String> {
    chain.split("::").filter(|p| !p.is_empty() && *p != "self").map(String::from).collect()
}

/// The file a path names: the longest prefix of its absolute form that is a module file.
fn resolve(
    files: &BTreeMap<Module, PathBuf>,
    from: &Module,
    head: &str,
    parts: &[String],
) -> Option<Module> {
    let mut base: Module = match head {
        "crate" => vec![],
        "super" => from[..from.len().saturating_sub(1)].to_vec(),
        _ => from.clone(),
    };
    let mut parts = parts;
    while parts.first().is_some_and(|p| p == "super") {
        base.pop();
        parts = &parts[1..];
    }
    base.extend(parts.iter().cloned());
    (1..=base.len()).rev().map(|k| base[..k].to_vec()).find(|m| files.contains_key(m))
}

/// Module → modules it imports, with the line of the first import.
type Graph = BTreeMap<Module, BTreeMap<Module, usize>>;

fn graph(src: &Path) -> (BTreeMap<Module, PathBuf>, Graph) {
    let mut files = BTreeMap::new();
    modules(src, src, &mut files);
    let mut edges = Graph::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).unwrap();
        let body = text.split("#[cfg(test)]").next().unwrap();
        let outs = edges.entry(module.clone()).or_default();
        for (line, head, parts) in paths(body) {
            if let Some(to) = resolve(&files, module, &head, &parts) {
                if &to != module && !to.is_empty() {
                    outs.entry(to).or_insert(line);
                }
            }
        }
    }
    (files, edges)
}

fn name(m: &Module) -> String {
    if m.is_empty() {
        "crate".into()
    } else {
        m.join("::")
    }
}

/// One cycle through `start`, if any: a path of modules back to it.
fn cycle_from(edges: &Graph, start: &Module) -> Option<Vec<Module>> {
    let mut stack = vec![(start.clone(), vec![start.clone()])];
    let mut seen = BTreeSet::new();
    while let Some((at, path)) = stack.pop() {
        for to in edges.get(&at).into_iter().flat_map(|o| o.keys()) {
            if to == start {
                return Some(path.clone());
            }
            if seen.insert(to.clone()) {
                let mut next = path.clone();
                next.push(to.clone());
                stack.push((to.clone(), next));
            }
        }
    }
    None
}

fn under(m: &Module, prefix: &str) -> bool {
    let p: Vec<&str> = prefix.split("::").collect();
    m.len() >= p.len() && m.iter().zip(&p).all(|(a, b)| a == b)
}

/// The broken rules of `rules` (one line each: file, line, rule).
fn broken(rules: &str, files: &BTreeMap<Module, PathBuf>, edges: &Graph) -> Vec<String> {
    let mut out = vec![];
    for rule in rules.lines().map(|l| l.split('#').next().unwrap().trim()).filter(|l| !l.is_empty())
    {
        let (kind, rest) =
            rule.split_once(' ').expect("a rule is `never A -> B` or `only A -> B C`");
        let (from, to) = rest.split_once("->").expect("a rule has `->`");
        let (from, to): (&str, Vec<&str>) = (from.trim(), to.split_whitespace().collect());
        for (m, outs) in edges.iter().filter(|(m, _)| under(m, from)) {
            for (t, line) in outs {
                let named = to.iter().any(|b| under(t, b));
                let bad = match kind {
                    "never" => named && !under(t, from),
                    "only" => !named && !under(t, from),
                    other => panic!("unknown rule kind {other}"),
                };
                if bad {
                    out.push(format!("{}:{line} imports {} ({rule})", files[m].display(), name(t)));
                }
            }
        }
    }
    out
}

#[test]
fn no_import_cycles_between_files() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let (files, edges) = graph(&src);
    let cycles: Vec<String> = files
        .keys()
        .filter_map(|m| cycle_from(&edges, m))
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" -> "))
        .collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn layers_keep_their_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (files, edges) = graph(&root.join("src"));
    let rules = std::fs::read_to_string(root.join("layers.rules")).unwrap();
    let bad = broken(&rules, &files, &edges);
    assert!(bad.is_empty(), "layer rules broken:\n{}", bad.join("\n"));
}

/// The check sees what it must: a cycle and a broken rule in a small made-up crate.
#[test]
fn the_check_finds_a_cycle_and_a_broken_rule() {
    let dir = std::env::temp_dir().join(format!("layers-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("front")).unwrap();
    let write = |p: &str, t: &str| std::fs::write(dir.join(p), t).unwrap();
    write("lib.rs", "pub mod a;\npub mod b;\npub mod front;\n");
    write("a.rs", "use crate::b::{X, Y as Z};\n");
    write("b.rs", "pub fn f() { super::a::g() }\n");
    write("front/mod.rs", "use crate::a::g;\n#[cfg(test)]\nuse crate::b::f;\n");
    let (files, edges) = graph(&dir);
    assert!(cycle_from(&edges, &vec!["a".to_string()]).is_some());
    let bad = broken("never front -> a\nonly b -> b\n", &files, &edges);
    assert_eq!(bad.len(), 2, "{bad:?}");
    assert!(bad[0].contains("front/mod.rs:1 imports a"), "{bad:?}");
    assert!(broken("never front -> b\n", &files, &edges).is_empty(), "test code is not counted");
    std::fs::remove_dir_all(&dir).unwrap();
}
