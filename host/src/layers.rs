//! The layering of the crate, checked: a module may use modules of its own
//! layer or below, never above (see the list in the crate docs), and two
//! modules of one layer do not use each other. Also checked here: no source
//! file is longer than [`MAX_LINES`] (tests beside the code excluded), so
//! every file can be read in one sitting.
//!
//! The test reads every `crate::<module>` path in the sources (code and doc
//! links alike). Loops inside a layer would be listed in [`KNOWN_LOOPS`]
//! (there are none): the test fails when one appears.

use std::collections::BTreeSet;
use std::path::Path;

/// Each top-level module and its layer, bottom first.
const LAYERS: &[(&str, u8)] = &[
    ("record", 0),
    ("storage", 0),
    ("state", 1),
    ("time", 1),
    ("wasm", 1),
    ("metrics", 1),
    ("exchange", 2),
    ("operators", 2),
    ("connectors", 2),
    ("plan", 3),
    ("runtime", 4),
    ("checkpoint", 4),
    ("job", 5),
    ("control", 5),
    ("cli", 5),
];

/// Modules of one layer that use each other today (none: the list only
/// shrinks, and an entry needs a reason).
const KNOWN_LOOPS: &[(&str, &str)] = &[];

/// Most lines of a source file, not counting its tests.
const MAX_LINES: usize = 700;

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

/// Every `.rs` file under `src`, with its path relative to `src`.
fn sources(src: &Path) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let mut found = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs")
                && let Ok(relative) = path.strip_prefix(src)
            {
                found.push((relative.to_path_buf(), path));
            }
        }
    }
    found
}

/// Every `(module, other module it uses)` pair of the sources under `src`.
fn imports(src: &Path) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    for (relative, path) in sources(src) {
        let Some(first) = relative.components().next() else {
            continue;
        };
        let module = first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
        if layer(&module).is_none() {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (at, _) in text.match_indices("crate::") {
            let used: String = text[at + "crate::".len()..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if used != module && layer(&used).is_some() {
                found.insert((module.clone(), used));
            }
        }
    }
    found
}

/// The imports that point to a higher layer.
fn upward(imports: &BTreeSet<(String, String)>) -> Vec<(String, String)> {
    imports
        .iter()
        .filter(|(module, used)| layer(used) > layer(module))
        .cloned()
        .collect()
}

/// The pairs of modules that use each other, each once (in name order).
fn loops(imports: &BTreeSet<(String, String)>) -> Vec<(String, String)> {
    imports
        .iter()
        .filter(|(a, b)| a < b && imports.contains(&(b.clone(), a.clone())))
        .cloned()
        .collect()
}

#[test]
fn no_module_uses_a_higher_layer_and_no_new_loop_appears() {
    let found = imports(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(
        upward(&found),
        Vec::<(String, String)>::new(),
        "modules use higher layers"
    );
    let known: Vec<(String, String)> = KNOWN_LOOPS
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(loops(&found), known, "modules that use each other");
}

/// Every source file under `src` (not test files) longer than
/// [`MAX_LINES`] before its `#[cfg(test)]` module, with its length.
fn long_files(src: &Path) -> Vec<(String, usize)> {
    let mut found = Vec::new();
    for (relative, path) in sources(src) {
        let is_test = relative.file_name().is_some_and(|n| n == "tests.rs")
            || relative.components().any(|c| c.as_os_str() == "tests");
        if is_test {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines = text.lines().take_while(|line| *line != "#[cfg(test)]").count();
        if lines > MAX_LINES {
            found.push((relative.display().to_string(), lines));
        }
    }
    found.sort();
    found
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert_eq!(
        long_files(&src),
        Vec::<(String, usize)>::new(),
        "files over {MAX_LINES} lines"
    );
}

#[test]
fn upward_imports_and_loops_are_found() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("a module folder");
        std::fs::write(path, text).expect("a source");
    };
    write(
        "state/x.rs",
        "use crate::exchange::Output;\nuse crate::record::batch;\n",
    );
    write("wasm/y.rs", "/// See [`crate::metrics`].\n");
    write("metrics.rs", "use crate::wasm::UdfInstance;\n");
    write("long.rs", &"// line\n".repeat(MAX_LINES + 1));
    write(
        "short.rs",
        &format!(
            "{}#[cfg(test)]\n{}",
            "// line\n".repeat(MAX_LINES),
            "// test\n".repeat(50)
        ),
    );
    assert_eq!(long_files(dir.path()), vec![("long.rs".to_string(), MAX_LINES + 1)]);
    let found = imports(dir.path());
    assert_eq!(upward(&found), vec![("state".to_string(), "exchange".to_string())]);
    assert_eq!(loops(&found), vec![("metrics".to_string(), "wasm".to_string())]);
}
