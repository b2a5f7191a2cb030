//! The layers of host/src point one way (docs/architecture.md, host/src/lib.rs):
//! api → services → domain and store; store → domain only; domain → nothing of the crate; the
//! leaves (files, crypto, config, metrics, schema, telemetry) only → other leaves. This reads
//! every `crate::…` and `super::…` path of every file, so the rule holds without the external
//! import-cycle tool that scripts/test.sh also runs when it is there.

use std::path::{Path, PathBuf};

const LEAVES: &[&str] = &[
    "files",
    "crypto",
    "config",
    "metrics",
    "schema",
    "telemetry",
];

/// The top-level modules a module of the crate may name, besides itself.
fn allowed(module: &str) -> Option<Vec<&'static str>> {
    let mut below: Vec<&str> = match module {
        // Wiring: everything.
        "lib" | "main" | "cli" | "app" => return None,
        "api" => vec!["services", "domain", "store"],
        "services" => vec!["domain", "store"],
        "store" => vec!["domain"],
        "domain" => vec![],
        leaf if LEAVES.contains(&leaf) => vec![],
        other => panic!(
            "host/src/{other} is not placed in a layer: add it to tests/integration/layers.rs"
        ),
    };
    if module != "domain" && module != "store" {
        below.extend_from_slice(LEAVES);
    }
    Some(below)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text without comments (a `//` inside a string literal is rare enough in this crate's
/// paths not to matter: it only hides text, never adds any).
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |i| &after[i..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |i| &after[i + 2..]);
        } else {
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The crate-level modules that the `crate::`/`super::` paths of a file name, from the file's
/// module path (from the crate root, e.g. ["api", "delivery"]; api/mod.rs is ["api"], so its
/// `super::` is the crate root).
fn targets(code: &str, module_path: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut previous = ['\0', '\0'];
    for (start, c) in code.char_indices() {
        let preceded = previous;
        previous = [preceded[1], c];
        // Only where a path starts: not inside an identifier or after `::`.
        if is_ident(preceded[1]) || preceded == [':', ':'] {
            continue;
        }
        let tail = &code[start..];
        let (mut depth, mut rest) = if let Some(r) = tail.strip_prefix("crate::") {
            (None, r)
        } else if tail.starts_with("super::") {
            (Some(0usize), tail)
        } else {
            continue;
        };
        while let Some(r) = rest.strip_prefix("super::") {
            depth = depth.map(|d| d + 1);
            rest = r;
        }
        let name: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        let top = match depth {
            None => name,
            Some(d) if d < module_path.len() => module_path[0].clone(),
            Some(_) => name,
        };
        if !top.is_empty() {
            found.push(top);
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 30, "read only {} files", files.len());
    let mut violations = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).expect("under src");
        let mut module_path: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if matches!(module_path.last().map(String::as_str), Some("mod")) {
            module_path.pop();
        }
        let top = module_path[0].clone();
        let Some(allowed) = allowed(&top) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("readable");
        for target in targets(&code(&text), &module_path) {
            let known = target == top
                || allowed.contains(&target.as_str())
                || !src.join(&target).exists() && !src.join(format!("{target}.rs")).exists();
            if !known {
                violations.push(format!("{}: {top} → {target}", rel.display()));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "imports against the layers (api → services → domain/store; store → domain; domain → \
         nothing):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layer_check_sees_a_violation() {
    let parent = vec!["domain".to_owned(), "money".to_owned()];
    let found = targets(&code("use crate::store::Store; // crate::api\n"), &parent);
    assert_eq!(found, ["store"]);
    assert_eq!(targets("use super::super::store::X;", &parent), ["store"]);
    assert_eq!(targets("use super::money::Money;", &parent), ["domain"]);
}
