//! The layering of the crate, checked: a module may use modules of its own
//! layer or below, never above (see the list in the crate docs).
//!
//! The test reads every `crate::<module>` path in the sources. The imports
//! that still point up are listed in [`KNOWN`]: the redesign removes them
//! one by one, and the test fails both when a new one appears and when a
//! listed one is gone (so the list only shrinks).

/// Each top-level module and its layer, bottom first.
const LAYERS: &[(&str, u8)] = &[
    ("record", 0),
    ("storage", 0),
    ("state", 1),
    ("time", 1),
    ("wasm", 1),
    ("metrics", 1),
    ("operators", 2),
    ("connectors", 2),
    ("plan", 3),
    ("runtime", 4),
    ("checkpoint", 4),
    ("job", 5),
    ("control", 5),
    ("cli", 5),
];

/// Imports that point up today: (module, the higher module it uses).
const KNOWN: &[(&str, &str)] = &[
    // The operator API takes the runtime's `Output` and `TaskError`.
    ("operators", "runtime"),
];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

/// Every `(module, used module)` pair where the used one is higher.
fn upward_imports(src: &std::path::Path) -> std::collections::BTreeSet<(String, String)> {
    let mut found = std::collections::BTreeSet::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let Ok(relative) = path.strip_prefix(src) else { continue };
            let Some(first) = relative.components().next() else {
                continue;
            };
            let module = first.as_os_str().to_string_lossy().trim_end_matches(".rs").to_string();
            let Some(own) = layer(&module) else { continue };
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for (at, _) in text.match_indices("crate::") {
                let used: String = text[at + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if layer(&used).is_some_and(|theirs| theirs > own) {
                    found.insert((module.clone(), used));
                }
            }
        }
    }
    found
}

#[test]
fn no_module_uses_a_higher_layer_beyond_the_known_ones() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let found = upward_imports(&src);
    let known: std::collections::BTreeSet<(String, String)> =
        KNOWN.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let new: Vec<_> = found.difference(&known).collect();
    assert!(new.is_empty(), "modules use higher layers: {new:?}");
    let gone: Vec<_> = known.difference(&found).collect();
    assert!(gone.is_empty(), "no longer used, remove from KNOWN: {gone:?}");
}

#[test]
fn an_upward_import_is_found() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir_all(dir.path().join("state")).expect("a module folder");
    std::fs::write(
        dir.path().join("state/x.rs"),
        "use crate::runtime::Output;\nuse crate::record::batch;\n",
    )
    .expect("a source");
    let found = upward_imports(dir.path());
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        vec![("state".to_string(), "runtime".to_string())]
    );
}
