//! Bad input gets a clear error and loses nothing: malformed job files,
//! wrong modules, malformed records, and failing user functions. Also the
//! other side of job-file parameters: they work in every field, and each
//! setting that sizes memory has a limit that validation enforces.

use crate::harness::{Workdir, module, sorted_lines};
use crate::oracle;

/// A word-count job over `input.txt` with `operator` as its middle part.
fn job_with(operator: &str) -> String {
    format!(
        r#"
[job]
dead_letter = "dead.jsonl"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"
{operator}
[[sink]]
uid = "out"
input = "op"
type = "file"
path = "out.txt"
"#
    )
}

/// Runs `weir validate` on `job` and returns its stderr.
fn refused(job: &str) -> String {
    refused_with(job, &[])
}

/// Runs `weir validate` on `job` with `args` and returns its stderr.
fn refused_with(job: &str, args: &[&str]) -> String {
    let work = Workdir::new();
    let finished = work.weir("validate", job, args);
    assert!(!finished.success, "the job was accepted:\n{}", finished.stdout);
    finished
        .stderr
        .replace(&work.path("job.toml").display().to_string(), "job.toml")
}

#[test]
fn a_missing_field_is_named_with_its_line() {
    let job = job_with("\n[[operator]]\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"identity\"\n");
    assert_eq!(refused(&job), "error: job.toml:10: missing field `uid`\n");
}

#[test]
fn an_unknown_field_is_named_with_its_line() {
    let job = job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodul = \"testkit.wasm\"\nfunction = \"identity\"\n",
    );
    let stderr = refused(&job);
    assert!(
        stderr.starts_with("error: job.toml:13: unknown field `modul`, expected one of"),
        "{stderr}"
    );
}

#[test]
fn unknown_inputs_duplicate_uids_and_missing_params_are_all_reported() {
    let job = r#"
[[source]]
uid = "lines"
type = "file"
path = "${input}"

[[operator]]
uid = "lines"
input = "nowhere"
module = "testkit.wasm"
function = "identity"

[[sink]]
uid = "out"
input = "lines"
type = "stdout"
"#;
    assert_eq!(
        refused(job),
        "error: job.toml:5: source `lines` → path: parameter `input` is not set: pass --param input=VALUE or give it a default in [params]\n\
         error: job.toml:7: uid: duplicate uid `lines` (first used on line 2)\n\
         error: job.toml:9: `lines` → input: no source or operator has uid `nowhere` (known: lines, lines)\n"
    );
}

#[test]
fn a_missing_module_is_refused_before_the_job_starts() {
    let stderr = refused(&job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"nope.wasm\"\nfunction = \"identity\"\n",
    ));
    assert!(
        stderr.starts_with("error: job.toml:13: operator `op` → module: module `nope.wasm` not found (looked in: "),
        "{stderr}"
    );
}

#[test]
fn a_function_the_module_lacks_is_refused_with_what_it_has() {
    let stderr = refused(&job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"wordcount.wasm\"\nfunction = \"nope\"\n",
    ));
    let expected = format!(
        "error: job.toml:14: operator `op` → function: module wordcount@0.1.0 ({}) exports no function `nope`; it exports: tokenize (flat-map), word (key-selector), count (keyed-process)\n",
        module("wordcount").display()
    );
    assert_eq!(stderr, expected);
}

#[test]
fn a_keyed_function_without_key_by_is_refused() {
    let stderr = refused(&job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"wordcount.wasm\"\nfunction = \"count\"\n",
    ));
    assert_eq!(
        stderr,
        "error: job.toml:14: operator `op` → key_by: `count` is a keyed process function: the operator needs `key_by`\n"
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let stderr = refused(&job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"not-a-udf.wasm\"\nfunction = \"main\"\n",
    ));
    let prefix = format!(
        "error: job.toml:13: operator `op` → module: module {} is not a Weir module: expected an export `weir:udf/library@0.1.0`, found exports: wasi:cli/run@0.2.",
        module("not-a-udf").display()
    );
    assert!(stderr.starts_with(&prefix), "{stderr}");
}

#[test]
fn a_module_built_against_another_wit_version_is_refused() {
    let work = Workdir::new();
    let mut bytes = std::fs::read(module("wordcount")).expect("wordcount.wasm");
    // Rewrite every `weir:udf/<interface>@0.1.0` name to `@0.9.0` (same length).
    let needle = b"weir:udf/";
    let mut i = 0;
    while let Some(pos) = bytes[i..].windows(needle.len()).position(|w| w == needle) {
        let start = i + pos;
        if let Some(at) = bytes[start..].iter().take(64).position(|&b| b == b'@') {
            let version = start + at + 1;
            if bytes[version..].starts_with(b"0.1.0") {
                bytes[version + 2] = b'9';
            }
        }
        i = start + needle.len();
    }
    let path = work.write("old.wasm", &bytes);
    let job = job_with(&format!(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"{}\"\nfunction = \"tokenize\"\n",
        path.display()
    ));
    let finished = work.weir("validate", &job, &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(&format!(
            "module {} was built against weir:udf@0.9.0, but this weir implements weir:udf@0.1.0: rebuild it with a matching weir-sdk",
            path.display()
        )),
        "{}",
        finished.stderr
    );
}

#[test]
fn a_core_module_is_refused() {
    let work = Workdir::new();
    let path = work.write("core.wasm", b"\0asm\x01\0\0\0");
    let job = job_with(&format!(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"{}\"\nfunction = \"f\"\n",
        path.display()
    ));
    let finished = work.weir("validate", &job, &[]);
    assert!(!finished.success);
    assert!(
        finished.stderr.contains(&format!(
            "{} is not a WebAssembly component: it is a core WebAssembly module; build the UDF for the wasm32-wasip2 target so that cargo emits a component",
            path.display()
        )),
        "{}",
        finished.stderr
    );
}

#[test]
fn malformed_records_go_to_the_dead_letter_file_and_the_job_goes_on() {
    let work = Workdir::new();
    work.write(
        "input.txt",
        "1767225600000,CAM0001,P0000001,80\n\
         not a passing\n\
         1767225601000,CAM0101,P0000001,90\n\
         1767225602000,CAMERA,P0000002,70\n\
         x,CAM0001,P0000003,70\n\
         1767225603000,CAM0002,Q12,70\n\
         1767225604000,CAM0002,P0000004,fast\n",
    );
    let job = job_with(
        "\n[[operator]]\nuid = \"parse\"\ninput = \"lines\"\nmodule = \"traffic.wasm\"\nfunction = \"parse\"\n\
         \n[[operator]]\nuid = \"op\"\ninput = \"parse\"\nmodule = \"traffic.wasm\"\nfunction = \"cloned_plates\"\n\
         key_by = { module = \"traffic.wasm\", function = \"plate\" }\n",
    );
    let finished = work.run_ok(&job, &[]);
    assert!(
        finished.stderr.contains("dead letters: 5 (in dead.jsonl)"),
        "{}",
        finished.stderr
    );
    assert_eq!(
        work.read("out.txt"),
        "P0000001,1767225600000,CAM0001,1767225601000,CAM0101\n"
    );
    let dead: Vec<serde_json::Value> = work
        .read("dead.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let reasons: Vec<(&str, &str, &str)> = dead
        .iter()
        .map(|d| {
            (
                d["operator"].as_str().unwrap_or(""),
                d["record"].as_str().unwrap_or(""),
                d["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "parse",
                "not a passing",
                "expected 4 fields (ts_ms,camera_id,plate,speed_kmh), found 1"
            ),
            (
                "parse",
                "1767225602000,CAMERA,P0000002,70",
                "camera_id: expected CAM followed by digits, found \"CAMERA\""
            ),
            ("parse", "x,CAM0001,P0000003,70", "ts_ms: not an integer: \"x\""),
            (
                "parse",
                "1767225603000,CAM0002,Q12,70",
                "plate: expected P followed by digits, found \"Q12\""
            ),
            (
                "parse",
                "1767225604000,CAM0002,P0000004,fast",
                "speed_kmh: not an integer: \"fast\""
            ),
        ]
    );
    assert!(
        dead.iter()
            .all(|d| { d["module"].as_str().is_some_and(|m| m.starts_with("traffic@0.1.0")) })
    );
}

const FAILING: &str =
    "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"fail_on\"\n";

fn failed_run(input: &str, limits: &str) -> String {
    let work = Workdir::new();
    work.write("input.txt", input);
    let job = job_with(FAILING).replacen("[job]\n", &format!("[job]\n{limits}\n"), 1);
    let finished = work.weir("run", &job, &[]);
    assert!(!finished.success, "the job succeeded:\n{}", finished.stderr);
    finished
        .stderr
        .replace(&module("testkit").display().to_string(), "testkit.wasm")
}

#[test]
fn a_panicking_function_fails_the_job_naming_operator_module_record_and_cause() {
    let stderr = failed_run("a\nb\nboom\nc\n", "");
    let expected_start = "error: job `job` failed: operator `op` (module testkit@0.1.0 (testkit.wasm), function `fail_on`) failed at input record 3 (record 2 of a batch of 4): ";
    assert!(stderr.contains(expected_start), "{stderr}");
    assert!(stderr.contains("boom requested by the test"), "{stderr}");
}

#[test]
fn a_looping_function_is_interrupted_at_its_time_limit() {
    let stderr = failed_run("a\nloop\n", "limits = { call_timeout_ms = 300 }");
    assert!(
        stderr.contains(
            "error: job `job` failed: operator `op` (module testkit@0.1.0 (testkit.wasm), function `fail_on`) failed in input records 1..=2: the call exceeded its time limit of 300 ms and was interrupted"
        ),
        "{stderr}"
    );
}

#[test]
fn a_memory_hungry_function_hits_its_memory_limit() {
    let stderr = failed_run("oom\n", "limits = { memory_mb = 64 }");
    assert!(
        stderr.contains("the instance exceeded its memory limit of 64 MiB"),
        "{stderr}"
    );
    assert!(
        stderr.contains("operator `op` (module testkit@0.1.0 (testkit.wasm), function `fail_on`) failed"),
        "{stderr}"
    );
}

/// Word count with parameters in fields of every type: a boolean
/// (`follow`), an enum (`state_backend`) and numbers (`batch_size`,
/// `parallelism`).
const TYPED_PARAMS: &str = r#"
[job]
batch_size = "${batch}"
state_backend = "${backend}"

[params]
batch = 2
follow = false

[[source]]
uid = "lines"
type = "file"
path = "input.txt"
follow = "${follow}"

[[operator]]
uid = "tokenize"
input = "lines"
module = "wordcount.wasm"
function = "tokenize"
parallelism = "${parallelism}"

[[operator]]
uid = "count"
input = "tokenize"
module = "wordcount.wasm"
function = "count"
key_by = { module = "wordcount.wasm", function = "word" }
parallelism = "${parallelism}"

[[sink]]
uid = "out"
input = "count"
type = "file"
path = "out.txt"
"#;

#[test]
fn parameters_work_in_boolean_enum_and_number_fields() {
    let input = oracle::text(200, 11);
    let expected = oracle::word_count_lines(&oracle::word_counts(&input));
    for (backend, parallelism) in [("heap", "1"), ("rocksdb", "2")] {
        let work = Workdir::new();
        work.write("input.txt", &input);
        work.run_ok(
            TYPED_PARAMS,
            &[
                "-p",
                &format!("backend={backend}"),
                "-p",
                &format!("parallelism={parallelism}"),
            ],
        );
        assert_eq!(sorted_lines(&work.read("out.txt")), expected, "{backend}");
    }
}

#[test]
fn a_parameter_of_the_wrong_type_is_refused_naming_field_line_and_value() {
    let args = |extra: &'static str| ["-p", "backend=heap", "-p", "parallelism=1", "-p", extra];
    assert_eq!(
        refused_with(TYPED_PARAMS, &args("follow=maybe")),
        "error: job.toml:14: source `lines` → follow: \"${follow}\" expands to \"maybe\": not a boolean (true or false)\n"
    );
    assert_eq!(
        refused_with(TYPED_PARAMS, &args("batch=lots")),
        "error: job.toml:3: job → batch_size: \"${batch}\" expands to \"lots\": not an integer\n"
    );
    assert_eq!(
        refused_with(TYPED_PARAMS, &["-p", "backend=disk", "-p", "parallelism=1"]),
        "error: job.toml:4: job → state_backend: \"${backend}\" expands to \"disk\": unknown variant `disk`, expected `heap` or `rocksdb`\n"
    );
    assert_eq!(
        refused_with(TYPED_PARAMS, &args("parallelism=-2")),
        "error: job.toml:21: operator `tokenize` → parallelism: \"${parallelism}\" expands to \"-2\": invalid value: integer `-2`, expected u32\n"
    );
}

#[test]
fn an_operators_params_are_expanded() {
    let work = Workdir::new();
    work.write("input.txt", "k 1 apple\nk 2 banana\nk 3 avocado\nk 4 cherry\n");
    let job = job_with(
        "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"side\"\nparams = { prefix = \"${keep}\" }\n",
    );
    work.run_ok(&job, &["-p", "keep=a"]);
    assert_eq!(sorted_lines(&work.read("out.txt")), ["k 1 apple", "k 3 avocado"]);
    work.run_ok(&job, &["-p", "keep=ch"]);
    assert_eq!(work.read("out.txt"), "k 4 cherry\n");
}

/// `job_with(IDENTITY)` with `setting` added to `[job]` (line 3).
fn with_setting(setting: &str) -> String {
    job_with(IDENTITY).replacen("[job]\n", &format!("[job]\n{setting}\n"), 1)
}

const IDENTITY: &str =
    "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"identity\"\n";

#[test]
fn a_huge_batch_size_is_refused_by_validate_and_run() {
    let job = with_setting("batch_size = 4294967295");
    let expected = "error: job.toml:3: job → batch_size: must be at most 1048576 records, found 4294967295\n";
    assert_eq!(refused(&job), expected);
    // `weir run` refuses it the same way instead of aborting on the allocation.
    let work = Workdir::new();
    work.write("input.txt", "a\n");
    let finished = work.weir("run", &job, &[]);
    assert!(!finished.success);
    assert_eq!(
        finished
            .stderr
            .replace(&work.path("job.toml").display().to_string(), "job.toml"),
        expected
    );
}

#[test]
fn a_huge_channel_capacity_is_refused() {
    assert_eq!(
        refused(&with_setting("channel_capacity = 4294967295")),
        "error: job.toml:3: job → channel_capacity: must be at most 1024 batches, found 4294967295\n"
    );
    assert_eq!(
        refused(&with_setting("batch_size = 65536\nchannel_capacity = 1024")),
        "error: job.toml:4: job → channel_capacity: batch_size × channel_capacity = 65536 × 1024 = 67108864 records may wait in one channel; at most 16777216: lower one of them\n"
    );
}

#[test]
fn max_parallelism_is_bounded_as_in_flink() {
    assert_eq!(
        refused(&with_setting("max_parallelism = 4294967295")),
        "error: job.toml:3: job → max_parallelism: must be at most 32768 key groups (as in Flink), found 4294967295\n"
    );
}

#[test]
fn a_parallelism_above_max_parallelism_is_refused() {
    let job = with_setting("max_parallelism = 4").replace(
        "function = \"identity\"\n",
        "function = \"identity\"\nparallelism = 5\n",
    );
    assert_eq!(
        refused(&job),
        "error: job.toml:11: `op` → parallelism: 5 exceeds max_parallelism 4\n"
    );
}

#[test]
fn a_huge_memory_limit_is_refused() {
    assert_eq!(
        refused(&with_setting("limits = { memory_mb = 1000000 }")),
        "error: job.toml:3: job → limits → memory_mb: must be at most 4096 MiB (all that a 32-bit Wasm memory can address), found 1000000\n"
    );
}

#[test]
fn a_sliding_window_that_copies_each_record_too_often_is_refused() {
    let window = |size: u64, slide: u64| {
        job_with(&format!(
            "\n[[operator]]\nuid = \"op\"\ninput = \"lines\"\nmodule = \"testkit.wasm\"\nfunction = \"concat\"\n\
             parallelism = 1\nwindow = {{ type = \"sliding\", size_ms = {size}, slide_ms = {slide}, time = \"processing\" }}\n"
        ))
    };
    assert_eq!(
        refused(&window(60_000_000, 1)),
        "error: job.toml:16: operator `op` → window → slide_ms: each record belongs to size_ms / slide_ms = 60000000 / 1 = 60000000 windows; at most 10000: use a larger slide_ms\n"
    );
    // The limit itself passes.
    let work = Workdir::new();
    let finished = work.weir("validate", &window(10_000_000, 1_000), &[]);
    assert!(finished.success, "{}", finished.stderr);
}
