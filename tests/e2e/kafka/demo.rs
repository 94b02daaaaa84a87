//! The Kafka demo's example jobs (`scripts/kafka-demo.sh`), end to end:
//! `examples/kafka-passings.toml` writes the generator's passings into a
//! topic, `examples/kafka-q2.toml` reads them and writes the cloned-plate
//! alerts into another, both exactly once; the alerts a read-committed
//! consumer reads must be the Q2 oracle's alerts over the same passings.

use super::broker::Broker;
use super::topic;
use crate::harness::{Workdir, workspace};
use crate::oracle;

/// Passings the test generates: enough for a few hundred alerts (the
/// generator's plates are skewed, so the most frequent ones repeat within
/// seconds of event time).
const EVENTS: &str = "events=40000";

/// The example job `name` (in `examples/`).
fn example(name: &str) -> String {
    std::fs::read_to_string(workspace().join("examples").join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
}

/// Proves: the demo's two example jobs, run as `scripts/kafka-demo.sh` runs
/// them (small sizes through their parameters), put into topic `passings`
/// exactly the passings the same generator writes into a file, in order,
/// and commit into topic `alerts` exactly the alerts the independent Q2
/// oracle (`oracle::cloned_plates`) finds in that file, as a multiset:
/// nothing lost, doubled or invented on the way through Kafka. Cannot
/// prove: that an aborted transaction would stay invisible (none is
/// aborted here; see the parent module).
#[test]
fn kafka_demo_jobs_commit_exactly_the_oracles_cloned_plate_alerts() {
    let Some(broker) = Broker::get() else { return };
    let passings = topic("demo-passings");
    let alerts = topic("demo-alerts");
    broker.create_topic(&passings, 1);
    broker.create_topic(&alerts, 1);
    let servers = format!("servers={}", broker.servers);
    let work = Workdir::new();

    // The passings, straight from the generator into a file: the producer
    // example's own generator (same table, same parameters) with a file
    // sink in place of its Kafka sink.
    let producer = example("kafka-passings.toml");
    let (generator, _) = producer
        .split_once("[[sink]]")
        .expect("kafka-passings.toml has a [[sink]] table");
    let direct =
        format!("{generator}[[sink]]\nuid = \"file\"\ninput = \"cameras\"\ntype = \"file\"\npath = \"passings.csv\"\n");
    work.run_ok(&direct, &["-p", EVENTS, "-p", "out=direct"]);
    let csv = work.read("passings.csv");
    assert_eq!(csv.lines().count(), 40_000);
    let expected = oracle::cloned_plates(&csv);
    assert!(
        expected.len() > 100,
        "the passings must produce alerts: {}",
        expected.len()
    );

    let topic_param = format!("topic={passings}");
    work.run_ok(
        &producer,
        &["-p", &servers, "-p", &topic_param, "-p", EVENTS, "-p", "out=passings"],
    );
    assert!(
        broker.read_committed(&passings) == csv.lines().collect::<Vec<_>>(),
        "topic {passings} does not hold exactly the generator's passings in order"
    );

    let input = format!("input={passings}");
    let output = format!("output={alerts}");
    work.run_ok(
        &example("kafka-q2.toml"),
        &["-p", &servers, "-p", &input, "-p", &output, "-p", "out=q2"],
    );
    let mut committed = broker.read_committed(&alerts);
    committed.sort();
    assert_eq!(committed.len(), expected.len(), "alerts committed vs the oracle's");
    assert_eq!(committed, expected);
    assert!(
        !work.path("q2/dead-letters.jsonl").exists() || work.read("q2/dead-letters.jsonl").is_empty(),
        "no passing may be a dead letter"
    );
}
