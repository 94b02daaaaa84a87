//! Traffic Q2 (cloned plates) through `weir`, against the oracle.

use crate::harness::{Workdir, sorted_lines, workspace};
use crate::oracle;

#[test]
fn cloned_plates_match_the_oracle_at_parallelism_1_and_2() {
    let input = oracle::passings(20_000, 3);
    let expected = oracle::cloned_plates(&input);
    assert!(
        expected.len() > 100,
        "the input must produce alerts: {}",
        expected.len()
    );
    let example = std::fs::read_to_string(workspace().join("examples/traffic-q2.toml")).expect("example job");
    let mut outputs = Vec::new();
    for parallelism in ["1", "2"] {
        let work = Workdir::new();
        work.write("passings.csv", &input);
        work.run_ok(
            &example,
            &[
                "-p",
                "input=passings.csv",
                "-p",
                "output=alerts.csv",
                "--parallelism",
                parallelism,
            ],
        );
        let output = sorted_lines(&work.read("alerts.csv"));
        assert_eq!(output, expected, "parallelism {parallelism}");
        outputs.push(output);
    }
    assert_eq!(outputs[0], outputs[1]);
}
