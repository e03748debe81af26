//! The crate's modules import one another without cycles: read from the sources, every `crate::` and
//! `super::` path counts as an import of the module it names, at the top level (`backend`, `gpu`, ...) and
//! one level down (`gpu::context`, `gpu::ops`, ...).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The module path of a source file: `src/gpu/ops/mod.rs` is `gpu::ops`.
fn module_of(file: &Path, src: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Edges between modules at the first two levels of the path.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let path_re = |text: &str, prefix: &str| -> Vec<Vec<String>> {
        text.match_indices(prefix)
            .map(|(i, _)| {
                let rest = &text[i + prefix.len()..];
                let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(rest.len());
                rest[..end].split("::").filter(|s| !s.is_empty()).map(str::to_string).collect()
            })
            .collect()
    };
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let me = module_of(&file, &src);
        if me == ["lib"] || me == ["main"] {
            continue;
        }
        let text: String = std::fs::read_to_string(&file)
            .unwrap()
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let parent: Vec<String> = me[..me.len() - 1].to_vec();
        let targets = path_re(&text, "crate::")
            .into_iter()
            .chain(path_re(&text, "super::").into_iter().map(|p| [parent.clone(), p].concat()));
        for to in targets {
            for level in 1..=2 {
                if me.len() >= level
                    && to.len() >= level
                    && me[..level - 1] == to[..level - 1]
                    && me[..level] != to[..level]
                {
                    edges.entry(me[..level].join("::")).or_default().insert(to[..level].join("::"));
                }
            }
        }
    }
    edges
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let edges = imports();
    assert!(edges.contains_key("gpu") && edges.contains_key("gpu::ops"), "read no imports: {edges:?}");
    // Depth-first from every module; a path that comes back to a module on it is a cycle.
    fn walk(edges: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, cycles: &mut BTreeSet<Vec<String>>) {
        for next in edges.get(path.last().expect("a start")).into_iter().flatten() {
            if let Some(i) = path.iter().position(|m| m == next) {
                cycles.insert(path[i..].to_vec());
            } else {
                path.push(next.clone());
                walk(edges, path, cycles);
                path.pop();
            }
        }
    }
    let mut cycles = BTreeSet::new();
    for start in edges.keys() {
        walk(&edges, &mut vec![start.clone()], &mut cycles);
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}");
}
