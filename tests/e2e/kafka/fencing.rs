//! A second run with the same transactional ids fences the first.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::broker::Broker;
use super::{kafka_sink, log_reader, messages, topic, wordcount_job};
use crate::harness::{Workdir, weir};
use crate::oracle;

/// Proves: when a second run of a job (same name, same sink uid, so the
/// same transactional ids) starts, its fencing aborts the first run's
/// pre-committed transaction; the first run notices (on nisshi 0.6.0 its
/// commit times out after a minute, where Kafka answers PRODUCER_FENCED at
/// once), restarts, finds the restored checkpoint's transaction aborted and
/// stops for good with a message naming the sink, the transaction and the
/// cause, instead of restarting into the same loss; and nothing it had
/// committed is lost or doubled: every committed word count from before the
/// second run is still there, and none appears twice.
#[test]
fn kafka_a_fenced_sink_stops_its_run_and_keeps_what_it_committed() {
    let Some(broker) = Broker::get() else { return };
    let text = oracle::text(4_000, 61);
    let input = topic("fence-in");
    let empty = topic("fence-empty");
    let output = topic("fence-out");
    broker.create_topic(&input, 2);
    broker.create_topic(&empty, 1);
    broker.create_topic(&output, 1);
    broker.produce(&input, &messages(&text, 2, 62));
    let checkpoints = "[checkpoint]\ndir = \"checkpoints\"\ninterval_ms = 50\n";
    let first_job = wordcount_job(
        "fence",
        &broker.servers,
        &input,
        checkpoints,
        &kafka_sink(&broker.servers, &output),
    )
    .replace("bounded = true", "bounded = false");
    let first = Workdir::new();
    first.write("job.toml", first_job);
    let mut running = weir()
        .current_dir(first.dir.path())
        .env("WEIR_LOG", "warn")
        .args(["run", "--quiet", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("weir starts");
    // Wait until the first run has committed output.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before = loop {
        let committed: Vec<String> = log_reader::read_committed_by_markers(&broker.servers, &output)
            .into_iter()
            .flat_map(|log| log.committed)
            .collect();
        if !committed.is_empty() {
            break committed;
        }
        assert!(Instant::now() < deadline, "the first run committed nothing in a minute");
        std::thread::sleep(Duration::from_millis(50));
    };
    // The second run: same job name and sink uid, an empty input.
    let second_job = wordcount_job(
        "fence",
        &broker.servers,
        &empty,
        checkpoints,
        &kafka_sink(&broker.servers, &output),
    )
    .replace("bounded = true", "bounded = false");
    let second = Workdir::new();
    second.write("job.toml", second_job);
    let mut fencing = weir()
        .current_dir(second.dir.path())
        .args(["run", "--quiet", "job.toml"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the second weir starts");
    // Keep input coming, so that the first run writes (and meets the
    // fence), until it stops.
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut round = 0;
    let status = loop {
        if let Some(status) = running.try_wait().expect("poll the first run") {
            break status;
        }
        if Instant::now() > deadline {
            running.kill().expect("SIGKILL the first run");
            fencing.kill().expect("SIGKILL the second run");
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut running.stderr.take().expect("stderr"), &mut stderr).ok();
            panic!("the fenced run did not stop within a minute:\n{stderr}");
        }
        round += 1;
        broker.produce(&input, &messages("more words arrive\n", 2, 100 + round));
        std::thread::sleep(Duration::from_millis(100));
    };
    fencing.kill().expect("SIGKILL the second run");
    fencing.wait().expect("reap the second run");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut running.stderr.take().expect("stderr"), &mut stderr).expect("read stderr");
    assert!(!status.success(), "the fenced run ended successfully:\n{stderr}");
    let aborted = "was aborted before the restore: another run fenced the same transactional ids";
    let fenced = "was fenced: another run writes with the same transactional ids";
    let last = stderr
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.starts_with("error: job `fence` failed: sink `counts`: ")
            && (last.contains(aborted) || last.contains(fenced)),
        "{stderr}"
    );
    assert!(
        stderr.matches(aborted).count() + stderr.matches(fenced).count() == 1,
        "the run restarted after the permanent failure:\n{stderr}"
    );
    let after: Vec<String> = log_reader::read_committed_by_markers(&broker.servers, &output)
        .into_iter()
        .flat_map(|log| log.committed)
        .collect();
    let mut seen = std::collections::HashSet::new();
    let doubled: Vec<&String> = after.iter().filter(|line| !seen.insert(*line)).collect();
    assert!(doubled.is_empty(), "committed twice: {doubled:?}");
    let lost: Vec<&String> = before.iter().filter(|line| !seen.contains(*line)).collect();
    assert!(lost.is_empty(), "committed before the fence and lost: {lost:?}");
}
