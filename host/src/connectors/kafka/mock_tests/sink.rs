//! The Kafka sink against the mock cluster: the two-phase-commit call
//! sequence through the pool of transactional producers, and its errors
//! under injected faults (refused requests, a broker down).

use std::time::Duration;

use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

use super::{cluster, scope, sink_config, topic_contents};
use crate::connectors::TransactionalSink;
use crate::connectors::kafka::resume::Position;
use crate::connectors::kafka::sink::TransactionHandle;
use crate::connectors::kafka::{Delivery, KafkaSink};
use crate::record::batch::RecordBatch;

/// A batch of `names`, all at event time 1.
fn batch(names: &[String]) -> RecordBatch {
    let mut batch = RecordBatch::default();
    for name in names {
        batch.push(name.as_bytes(), 1);
    }
    batch
}

/// Records `c{checkpoint}-{i}`.
fn checkpoint_records(checkpoint: usize, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("c{checkpoint}-{i}")).collect()
}

/// A transaction handle as the checkpoint stores it: the version byte,
/// then the handle.
fn decode(handle: &[u8]) -> TransactionHandle {
    let (version, body) = handle.split_first().expect("a handle");
    assert_eq!(*version, 2, "the handle's version");
    postcard::from_bytes(body).expect("a handle")
}

#[test]
fn an_exactly_once_sink_goes_through_its_pool_and_writes_in_order() {
    let cluster = cluster(&[("out", 2)]);
    let servers = cluster.bootstrap_servers();
    let config = sink_config(&servers, "out", Delivery::ExactlyOnce, &[]);
    // Subtask 1 of 2: the fixed partitioner writes partition 1.
    let mut sink = KafkaSink::open(&config, &scope("out", 1, 2), None).expect("opens");
    sink.recover(&[]).expect("recovers");
    let written: Vec<Vec<String>> = (0..3).map(|c| checkpoint_records(c, 3)).collect();
    // Checkpoint 1's commit comes after checkpoint 2's records (two
    // transactions open at once), as when a completion arrives late.
    sink.write(&batch(&written[0])).expect("writes");
    let first = sink.pre_commit().expect("pre-commits");
    sink.write(&batch(&written[1])).expect("writes");
    sink.commit(&first).expect("commits");
    let second = sink.pre_commit().expect("pre-commits");
    sink.commit(&second).expect("commits");
    sink.write(&batch(&written[2])).expect("writes");
    let third = sink.pre_commit().expect("pre-commits");
    sink.commit(&third).expect("commits");
    sink.commit(&third).expect("committing again is a no-op");

    let contents = topic_contents(&servers, "out", 2);
    let payloads: Vec<&str> = contents.iter().map(|(_, _, p)| p.as_str()).collect();
    assert_eq!(payloads, written.concat(), "in order, once each");
    assert!(contents.iter().all(|(partition, _, _)| *partition == 1));
    let at = |name: &str| contents.iter().find(|(_, _, p)| p == name).map(|(_, o, _)| *o);
    for (index, handle) in [first, second, third].iter().enumerate() {
        assert_eq!(
            decode(handle),
            TransactionHandle {
                transactional_id: format!("weir-mock-out-1-{index}"),
                position: Some(Position {
                    topic: "out".into(),
                    partition: 1,
                    offset: at(&written[index][0]).expect("written"),
                }),
            }
        );
    }
    // A transaction without records records no position.
    let empty = sink.pre_commit().expect("pre-commits");
    assert_eq!(decode(&empty).position, None);
}

#[test]
fn an_at_least_once_sink_has_every_record_acknowledged_at_pre_commit() {
    let cluster = cluster(&[("plain", 1)]);
    let servers = cluster.bootstrap_servers();
    // Records linger in the producer for a second before they are sent:
    // a pre-commit that returned without waiting for them would leave the
    // topic short when it is read at once. (A longer linger is no better:
    // librdkafka's flush does not always cut it short, and then the
    // pre-commit waits it out.)
    let config = sink_config(&servers, "plain", Delivery::AtLeastOnce, &[("linger.ms", "1000")]);
    let mut sink = KafkaSink::open(&config, &scope("out", 0, 1), None).expect("opens");
    sink.recover(&[]).expect("recovers");
    let mut written = Vec::new();
    for checkpoint in 0..3 {
        for part in 0..4 {
            let names = checkpoint_records(checkpoint * 10 + part, 10);
            sink.write(&batch(&names)).expect("writes");
            written.extend(names);
        }
        assert_eq!(sink.pre_commit().expect("pre-commits"), Vec::<u8>::new());
        // Right after the pre-commit, the topic holds every record.
        let contents = topic_contents(&servers, "plain", 1);
        let payloads: Vec<&String> = contents.iter().map(|(_, _, p)| p).collect();
        assert_eq!(
            payloads,
            written.iter().collect::<Vec<_>>(),
            "after checkpoint {checkpoint}"
        );
    }
}

#[test]
fn a_record_the_broker_refuses_fails_the_sink_naming_the_topic() {
    for delivery in [Delivery::AtLeastOnce, Delivery::ExactlyOnce] {
        let cluster = cluster(&[("out", 1)]);
        let servers = cluster.bootstrap_servers();
        let config = sink_config(&servers, "out", delivery, &[]);
        let mut sink = KafkaSink::open(&config, &scope("out", 0, 1), None).expect("opens");
        sink.recover(&[]).expect("recovers");
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE],
        );
        let result = sink
            .write(&batch(&checkpoint_records(0, 3)))
            .and_then(|()| sink.pre_commit());
        let error = result.expect_err("a refused record fails the sink").to_string();
        assert_eq!(
            error,
            "a record could not be delivered to topic `out`: Message production error: MessageSizeTooLarge (Broker: Message size too large)",
            "{delivery:?}"
        );
        assert_eq!(topic_contents(&servers, "out", 1), [], "{delivery:?}");
    }
}

/// An at-least-once sink of `out` (one partition) that has written and
/// pre-committed `c0-0` and `c0-1`, with librdkafka's `message.timeout.ms`
/// at `timeout_ms`.
fn sink_past_one_checkpoint(servers: &str, timeout_ms: &str) -> KafkaSink {
    let properties = [("message.timeout.ms", timeout_ms), ("reconnect.backoff.max.ms", "100")];
    let config = sink_config(servers, "out", Delivery::AtLeastOnce, &properties);
    let mut sink = KafkaSink::open(&config, &scope("out", 0, 1), None).expect("opens");
    sink.recover(&[]).expect("recovers");
    sink.write(&batch(&checkpoint_records(0, 2))).expect("writes");
    sink.pre_commit().expect("pre-commits");
    sink
}

fn payloads(contents: &[(i32, i64, String)]) -> Vec<&str> {
    contents.iter().map(|(_, _, p)| p.as_str()).collect()
}

#[test]
fn a_broker_down_past_the_message_timeout_fails_the_pre_commit() {
    let cluster = cluster(&[("out", 1)]);
    let servers = cluster.bootstrap_servers();
    let mut sink = sink_past_one_checkpoint(&servers, "1000");
    cluster.broker_down(-1).expect("down");
    let result = sink
        .write(&batch(&checkpoint_records(1, 3)))
        .and_then(|()| sink.pre_commit());
    let error = result.expect_err("undelivered records fail the sink").to_string();
    assert_eq!(
        error,
        "a record could not be delivered to topic `out`: Message production error: MessageTimedOut (Local: Message timed out)"
    );
    cluster.broker_up(-1).expect("up");
    assert_eq!(payloads(&topic_contents(&servers, "out", 1)), ["c0-0", "c0-1"]);
}

#[test]
fn a_broker_back_before_the_message_timeout_loses_and_repeats_nothing() {
    let cluster = cluster(&[("out", 1)]);
    let servers = cluster.bootstrap_servers();
    let mut sink = sink_past_one_checkpoint(&servers, "30000");
    cluster.broker_down(-1).expect("down");
    sink.write(&batch(&checkpoint_records(1, 3))).expect("writes");
    // The pre-commit waits for the records while the broker is down; the
    // sleep only orders the steps (whichever order they run in, the
    // outcome must be the same).
    let result = std::thread::scope(|scope| {
        let pre_commit = scope.spawn(|| sink.pre_commit());
        std::thread::sleep(Duration::from_millis(300));
        cluster.broker_up(-1).expect("up");
        pre_commit.join().expect("no panic")
    });
    result.expect("delivered once the broker is back");
    assert_eq!(
        payloads(&topic_contents(&servers, "out", 1)),
        ["c0-0", "c0-1", "c1-0", "c1-1", "c1-2"]
    );
}

#[test]
fn refused_transaction_requests_fail_recover_and_commit_naming_the_transactional_id() {
    let cluster = cluster(&[("out", 1)]);
    let servers = cluster.bootstrap_servers();
    let config = sink_config(&servers, "out", Delivery::ExactlyOnce, &[]);

    // InitProducerId, in `recover` (pushed after `open`, whose metadata
    // producer is gone by then: the first such request is the pool's).
    let mut sink = KafkaSink::open(&config, &scope("out", 0, 1), None).expect("opens");
    cluster.request_errors(
        RDKafkaApiKey::InitProducerId,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );
    let error = sink.recover(&[]).expect_err("refused").to_string();
    assert_eq!(
        error,
        format!(
            "cannot initialise transactions of `weir-mock-out-0-0` on {servers}: Transaction error: Failed to acquire transactional PID from broker TxnCoordinator/1: Broker: Transactional Id authorization failed"
        )
    );
    drop(sink);

    // EndTxn, in `commit`: refused, then fenced (reported as fencing, which
    // stops the job, naming the id).
    let mut sink = KafkaSink::open(&config, &scope("out", 0, 1), None).expect("opens");
    sink.recover(&[]).expect("recovers");
    let mut end_txn_refused = |error, records| {
        sink.write(&batch(&checkpoint_records(records, 2))).expect("writes");
        let handle = sink.pre_commit().expect("pre-commits");
        cluster.request_errors(RDKafkaApiKey::EndTxn, &[error]);
        sink.commit(&handle).expect_err("refused").to_string()
    };
    assert_eq!(
        end_txn_refused(
            RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            0
        ),
        "cannot commit the transaction of `weir-mock-out-0-0`: Transaction error: Failed to end transaction: Broker: Transactional Id authorization failed"
    );
    assert_eq!(
        end_txn_refused(RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED, 1),
        "transactional producer `weir-mock-out-0-1` was fenced: another run writes with the same transactional ids (a second run of this job, or a job with the same name and sink uid); stop it or rename one of the jobs (nothing is restarted: the runs would fence each other in turn)"
    );

    // AddPartitionsToTxn, when the next transaction's first record goes out.
    cluster.request_errors(
        RDKafkaApiKey::AddPartitionsToTxn,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED],
    );
    let result = sink
        .write(&batch(&checkpoint_records(1, 2)))
        .and_then(|()| sink.pre_commit());
    // A fatal error: librdkafka purges the queued records (their delivery
    // reports say only "purged"); the sink reports the fatal error's cause.
    let error = result.expect_err("refused").to_string();
    assert_eq!(
        error,
        "the Kafka producer for topic `out` failed for good: Failed to add partitions to transaction: Broker: Transactional Id authorization failed: Message production error: TransactionalIdAuthorizationFailed (Broker: Transactional Id authorization failed)"
    );
}
