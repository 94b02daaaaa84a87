use std::path::Path;

use super::*;
use crate::job::spec::{BackendKind, JobSpec};

/// Reads `text` as `job.toml` with `--param` `overrides`.
fn read_with(text: &str, overrides: &[(&str, &str)]) -> Result<Document, String> {
    let locator = Locator::new(Path::new("job.toml"), text);
    let overrides: Vec<(String, String)> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    read(text, &locator, &overrides).map_err(|errors| errors.to_string())
}

fn spec(text: &str, overrides: &[(&str, &str)]) -> JobSpec {
    let document = read_with(text, overrides).unwrap_or_else(|e| panic!("refused: {e}"));
    assert_eq!(document.errors, Vec::new());
    document.spec
}

const TYPED: &str = r#"
[job]
batch_size = "${batch}"
state_backend = "${backend}"
limits = { memory_mb = "${memory}" }

[params]
batch = 64
memory = "128"

[[source]]
uid = "lines"
type = "file"
path = "${dir}/in.txt"
follow = "${follow}"
dirty = "${dirty}"

[[operator]]
uid = "pick"
input = "lines"
module = "testkit.wasm"
function = "side"
params = { prefix = "${prefix}", cost = "$$${batch}" }
"#;

#[test]
fn every_field_takes_parameters_of_its_type() {
    let overrides = [
        ("backend", "rocksdb"),
        ("dir", "data"),
        ("follow", "true"),
        ("dirty", "0.25"),
        ("prefix", "a ${b}"),
    ];
    let spec = spec(TYPED, &overrides);
    assert_eq!(spec.job.batch_size.as_ref().map(|b| *b.get_ref()), Some(64));
    assert_eq!(
        spec.job.state_backend.as_ref().map(|b| *b.get_ref()),
        Some(BackendKind::Rocksdb)
    );
    assert_eq!(spec.job.limits.memory_mb.as_ref().map(|m| *m.get_ref()), Some(128));
    let source = spec.sources[0].get_ref();
    assert_eq!(source.path.as_ref().map(|p| p.get_ref().as_str()), Some("data/in.txt"));
    assert_eq!(source.follow, Some(true));
    assert_eq!(source.dirty, Some(0.25));
    // A parameter's value is not expanded again; `$$` is a literal `$`.
    let operator = spec.operators[0].get_ref();
    assert_eq!(
        operator.params,
        BTreeMap::from([("cost".into(), "$64".into()), ("prefix".into(), "a ${b}".into())])
    );
    // The `[params]` defaults are text, as written.
    assert_eq!(
        spec.params,
        BTreeMap::from([("batch".into(), "64".into()), ("memory".into(), "128".into())])
    );
}

#[test]
fn spans_still_locate_expanded_values() {
    let spec = spec(
        TYPED,
        &[
            ("backend", "heap"),
            ("dir", "d"),
            ("follow", "false"),
            ("dirty", "0"),
            ("prefix", ""),
        ],
    );
    let locator = Locator::new(Path::new("job.toml"), TYPED);
    let batch = spec.job.batch_size.as_ref().map(|b| locator.line_of(b.span().start));
    assert_eq!(batch, Some(3));
}

#[test]
fn a_wrongly_typed_parameter_names_the_field_its_line_and_its_value() {
    let base = [
        ("backend", "heap"),
        ("dir", "d"),
        ("follow", "false"),
        ("dirty", "0"),
        ("prefix", ""),
    ];
    let refused = |name: &str, value: &str| {
        let mut overrides = base.to_vec();
        overrides.retain(|(k, _)| *k != name);
        overrides.push((name, value));
        read_with(TYPED, &overrides).expect_err("refused")
    };
    assert_eq!(
        refused("follow", "maybe"),
        "job.toml:15: source `lines` → follow: \"${follow}\" expands to \"maybe\": not a boolean (true or false)"
    );
    assert_eq!(
        refused("batch", "lots"),
        "job.toml:3: job → batch_size: \"${batch}\" expands to \"lots\": not an integer"
    );
    assert_eq!(
        refused("batch", "-1"),
        "job.toml:3: job → batch_size: \"${batch}\" expands to \"-1\": invalid value: integer `-1`, expected u32"
    );
    assert_eq!(
        refused("dirty", "some"),
        "job.toml:16: source `lines` → dirty: \"${dirty}\" expands to \"some\": not a number"
    );
    assert_eq!(
        refused("backend", "disk"),
        "job.toml:4: job → state_backend: \"${backend}\" expands to \"disk\": unknown variant `disk`, expected `heap` or `rocksdb`"
    );
}

#[test]
fn a_string_written_as_such_is_not_coerced() {
    let text = "[[source]]\nuid = \"s\"\ntype = \"file\"\nfollow = \"true\"\n";
    assert_eq!(
        read_with(text, &[]).expect_err("refused"),
        "job.toml:4: invalid type: string \"true\", expected a boolean"
    );
}

#[test]
fn unset_parameters_are_all_reported_in_file_order_and_once() {
    let text = "[[source]]\nuid = \"s\"\ntype = \"file\"\npath = \"${path}\"\n\n[job]\nbatch_size = \"${batch}\"\n";
    assert_eq!(
        read_with(text, &[]).expect_err("refused"),
        "job.toml:4: source `s` → path: parameter `path` is not set: pass --param path=VALUE or give it a default in [params]\n\
         job.toml:7: job → batch_size: parameter `batch` is not set: pass --param batch=VALUE or give it a default in [params]"
    );
    // Where the typed spec still reads, the loader goes on (and reports more).
    let document = read_with(&text.replace("\"${batch}\"", "8"), &[]).expect("typed");
    assert_eq!(document.errors.len(), 1);
    assert_eq!(document.unresolved.len(), 1);
}
