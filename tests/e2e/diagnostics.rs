//! What the host tells a UDF author:
//!
//! - `weir inspect` lists each function's states (name, kind, schema,
//!   whether the module's codec decodes it) and the migrations the module
//!   offers, learned from the module itself (compared here with what the
//!   UDFs' sources declare);
//! - a UDF whose stack runs out (deep recursion) fails the job with a
//!   message that says so, for either of its two stacks;
//! - what a UDF prints on stdout and stderr reaches the job's log, one line
//!   per line, tagged with the operator and subtask, long lines cut.

use sha2::Digest;

use crate::harness::{Finished, Workdir, module, weir};

/// Every world of the contract: the SDK exports every interface.
const ALL_WORLDS: &str = "transform-module, key-selector-module, keyed-process-module, window-aggregate-module, \
     join-module, keyed-co-process-module, watermark-generator-module, process-window-module, window-evictor-module, \
     window-trigger-module, state-migration-module, state-codec-module, any-module";

/// `weir inspect` of UDF `name` with `args`: its lines up to `exports:`.
fn inspect(name: &str, args: &[&str]) -> Vec<String> {
    let file = module(name);
    let finished: Finished = weir()
        .arg("inspect")
        .arg(&file)
        .args(args)
        .output()
        .expect("weir runs")
        .into();
    assert!(finished.success, "{}", finished.stderr);
    finished
        .stdout
        .lines()
        .take_while(|line| *line != "exports:")
        .map(str::to_string)
        .collect()
}

/// The lines `weir inspect` starts with for UDF `file` named `name`.
fn head(file: &str, name: &str, version: &str) -> Vec<String> {
    let path = module(file);
    let bytes = std::fs::read(&path).expect("the UDF was built");
    let sha: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    vec![
        format!("module:    {name}"),
        format!("version:   {version}"),
        format!("file:      {}", path.display()),
        format!("sha256:    {sha}"),
        "contract:  weir:udf@0.1.0".to_string(),
        format!("worlds:    {ALL_WORLDS}"),
    ]
}

fn lines(text: &[&str]) -> Vec<String> {
    text.iter().map(|line| line.to_string()).collect()
}

#[test]
fn inspect_lists_states_schemas_codecs_and_migrations() {
    // counter-v2 opens `count` as `(u64, u64)`, `values` as a list of `i64`,
    // `seen` as a map to `i64` and `last` as a `Last` with a new field, and
    // migrates each from v1's (schemas: type name and shape fingerprint).
    let mut expected = head("counter_v2", "counter-v2", "0.2.0");
    expected.extend(lines(&[
        "functions:",
        "  key                      key-selector",
        "  count                    keyed-process",
        "    state `count`: value, schema `(u64, u64)@e94cb4f0`, codec: no",
        "    state `values`: list, schema `i64@7744eda3`, codec: no",
        "    state `seen`: map, schema `i64@7744eda3`, codec: no",
        "    state `last`: value, schema `Last@bf5e5a62`, codec: no",
        "migrations:",
        "  function `count`, state `count`, from schema `u32@9af21e7b`",
        "  function `count`, state `values`, from schema `u32@9af21e7b`",
        "  function `count`, state `seen`, from schema `u32@9af21e7b`",
        "  function `count`, state `last`, from schema `Last@c0f71d96`",
    ]));
    assert_eq!(inspect("counter_v2", &[]), expected);

    // Parameters reach the probe: with `drop_seen`, `seen` is not opened;
    // `count_schema` replaces the schema `count` declares.
    let probed = inspect("counter_v2", &["--param", "drop_seen=true", "-p", "count_schema=pair"]);
    assert_eq!(
        probed[9..12],
        lines(&[
            "    state `count`: value, schema `pair`, codec: no",
            "    state `values`: list, schema `i64@7744eda3`, codec: no",
            "    state `last`: value, schema `Last@bf5e5a62`, codec: no",
        ])
    );

    // counter-v1: `u32` and v1's `Last`, no migrations.
    let mut expected = head("counter_v1", "counter-v1", "0.1.0");
    expected.extend(lines(&[
        "functions:",
        "  key                      key-selector",
        "  second                   key-selector",
        "  count                    keyed-process",
        "    state `count`: value, schema `u32@9af21e7b`, codec: no",
        "    state `values`: list, schema `u32@9af21e7b`, codec: no",
        "    state `seen`: map, schema `u32@9af21e7b`, codec: no",
        "    state `last`: value, schema `Last@c0f71d96`, codec: no",
        "migrations:",
        "  none",
    ]));
    assert_eq!(inspect("counter_v1", &[]), expected);

    // wordcount names `count`'s type for its state codec.
    let mut expected = head("wordcount", "wordcount", "0.1.0");
    expected.extend(lines(&[
        "functions:",
        "  tokenize                 flat-map",
        "  word                     key-selector",
        "  count                    keyed-process",
        "    state `count`: value, schema `u64@f599db6e`, codec: yes",
        "migrations:",
        "  none",
    ]));
    assert_eq!(inspect("wordcount", &[]), expected);

    // Broadcast and operator states, TTLs, and a function that needs a
    // parameter to start.
    let testkit = inspect("testkit", &[]);
    let after = |function: &str, n: usize| -> Vec<String> {
        let at = testkit
            .iter()
            .position(|line| line.split_whitespace().next() == Some(function))
            .unwrap_or_else(|| panic!("no function {function} in {testkit:#?}"));
        testkit[at..at + n].to_vec()
    };
    assert_eq!(
        after("side", 2),
        lines(&[
            "  side                     filter",
            "    states: unknown: function `side` could not start: side needs the parameter `prefix` (start it \
             with --param NAME=VALUE)",
        ])
    );
    assert_eq!(
        after("speed_limits", 3),
        lines(&[
            "  speed_limits             keyed-co-process",
            "    state `broadcast/limits`: broadcast map, no schema, codec: yes",
            "    state `violations`: value, schema `u64@f599db6e`, codec: yes",
        ])
    );
    assert_eq!(
        after("operator_state_probe", 3),
        lines(&[
            "  operator_state_probe     flat-map",
            "    state `operator-split/items`: operator list (split), no schema, codec: no",
            "    state `operator-union/all`: operator list (union), no schema, codec: no",
        ])
    );
    assert_eq!(
        after("state_probe", 7)[6],
        "    state `ttlvalue`: value with a TTL of 1000 ms, schema `String@b292f7e8`, codec: no"
    );
}

/// A job that runs testkit's `fail_on` over `input` and must fail; its
/// standard error, with the module's path shortened to `testkit.wasm`.
fn failed_run(input: &str) -> String {
    let work = Workdir::new();
    work.write("input.txt", input);
    let job = r#"
[job]
name = "job"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "op"
input = "lines"
module = "testkit.wasm"
function = "fail_on"

[[sink]]
uid = "out"
input = "op"
type = "file"
path = "out.txt"
"#;
    let finished = work.weir("run", job, &[]);
    assert!(!finished.success, "the job succeeded:\n{}", finished.stderr);
    finished
        .stderr
        .replace(&module("testkit").display().to_string(), "testkit.wasm")
}

/// `text` with every hexadecimal number after `0x` replaced by `N`.
fn mask_hex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("0x") {
        out.push_str(&rest[..at + 2]);
        rest = &rest[at + 2..];
        let digits = rest.find(|c: char| !c.is_ascii_hexdigit()).unwrap_or(rest.len());
        if digits > 0 {
            out.push('N');
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

#[test]
fn an_exhausted_shadow_stack_is_reported_as_such() {
    let failed = |function: &str, detail: &str| {
        format!(
            "error: job `job` failed: operator `op` (module testkit@0.1.0 (testkit.wasm), function `fail_on`) failed \
             in input records 1..=3: the UDF's stack was exhausted (too deep a recursion?): its shadow stack in \
             linear memory overflowed in recursive calls of `testkit::diagnostics::{function}`; rustc gives it 1 \
             MiB, link with `-C link-arg=-zstack-size=BYTES` for more (wasm trap: out of bounds memory access{detail})\n"
        )
    };
    // 4 KiB frames filled by `memory.fill`, which wasmtime bounds-checks
    // itself: no faulting address, the recursion in the backtrace tells.
    assert_eq!(failed_run("a\ndeep\nc\n"), failed("exhaust_shadow_stack", ""));
    // Frames written by stores: the guard pages catch the wrapped-around
    // stack pointer, just under 4 GiB.
    let stderr = failed_run("a\ndeep-stores\nc\n");
    assert_eq!(
        mask_hex(&stderr),
        failed(
            "exhaust_shadow_stack_by_stores",
            "; memory fault at wasm address 0xN in linear memory of size 0xN"
        )
    );
    let address = stderr
        .split("wasm address 0x")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("a faulting address");
    assert!(address >= 0xffff_0000, "{address:#x}");
}

#[test]
fn an_exhausted_call_stack_is_reported_as_such() {
    let stderr = failed_run("a\ndeep-calls\nc\n");
    assert_eq!(
        stderr,
        "error: job `job` failed: operator `op` (module testkit@0.1.0 (testkit.wasm), function `fail_on`) failed in \
         input records 1..=3: the UDF's stack was exhausted (too deep a recursion?): its call stack reached the \
         host's limit in recursive calls of `testkit::diagnostics::exhaust_call_stack` (wasm trap: call stack \
         exhausted)\n"
    );
}

#[test]
fn what_a_udf_prints_goes_to_the_log_by_line_with_operator_and_subtask() {
    let work = Workdir::new();
    work.write("input.txt", "hello\nworld\nlong\npartial\n");
    work.write(
        "job.toml",
        r#"
[job]
name = "chatty"

[[source]]
uid = "lines"
type = "file"
path = "input.txt"

[[operator]]
uid = "shout"
input = "lines"
module = "testkit.wasm"
function = "print"
parallelism = 2
partition = "broadcast"

[[sink]]
uid = "out"
input = "shout"
type = "file"
path = "out.txt"
"#,
    );
    let finished: Finished = weir()
        .current_dir(work.path(""))
        .env("WEIR_LOG", "info")
        .args(["run", "--quiet", "job.toml"])
        .output()
        .expect("weir runs")
        .into();
    assert!(finished.success, "{}", finished.stderr);
    // Each line: `<timestamp>  <LEVEL> <text> operator="shout" subtask=<n>`.
    let mut logged: Vec<String> = finished
        .stderr
        .lines()
        .filter(|line| line.contains(r#"operator="shout""#))
        .map(|line| {
            line.split_once(' ')
                .map_or(line, |(_, rest)| rest)
                .trim_start()
                .to_string()
        })
        .collect();
    logged.sort();
    // Every subtask gets every record (broadcast) and prints it; the guest
    // names its subtask in the text, the host in the field.
    let cut = format!("{} [line cut at 4096 bytes]", "y".repeat(4096));
    let mut expected = Vec::new();
    for subtask in 0..2 {
        // The subtask's span names job, uid and index on every line too.
        let span = format!("subtask{{job=chatty uid=shout subtask={subtask}}}:");
        let tag = format!(r#"operator="shout" subtask={subtask}"#);
        for word in ["hello", "world"] {
            expected.push(format!("INFO {span} {word} (subtask {subtask}) {tag}"));
            expected.push(format!("WARN {span} {word} on stderr (subtask {subtask}) {tag}"));
        }
        expected.push(format!("WARN {span} {cut} {tag}"));
        expected.push(format!("WARN {span} no newline from subtask {subtask} {tag}"));
    }
    expected.sort();
    assert_eq!(logged, expected);
}
