//! Async lookups (Flink's `AsyncWaitOperator`): a Wasm function enriches
//! records with lookups that the host runs without blocking the subtask.
//!
//! # Design
//!
//! - **Wasm stays on the subtask thread.** The function is called in two
//!   steps, each with a whole batch: `prepare` says which lookups every
//!   record needs (a lookup granted to the operator, by name, and a key),
//!   `complete` gets records whose lookups all answered, with the answers,
//!   and writes their output. No Wasm call ever waits for I/O, and the
//!   function gets no sockets.
//! - **I/O runs on tokio, elsewhere.** Each subtask's [`client::LookupClient`]
//!   owns a current-thread tokio runtime on a thread of its own; every
//!   request runs there with its `timeout_ms` per try and its `retry`
//!   (`attempts` tries in all, `delay_ms` before the first retry, times
//!   `backoff` before each next). Answers come back over a channel, and a
//!   one-slot wake channel that the subtask's loop selects on beside its
//!   inputs ([`Operator::wakeup`]): answers are handled between input
//!   batches.
//! - **Capacity and backpressure.** At most `capacity` records are in the
//!   [`queue::CompletionQueue`] (in flight, or answered and waiting for
//!   their turn). A batch is prepared whole, then its records enter the
//!   queue as room frees; while some wait, [`Operator::accepts_input`] is
//!   false and the loop stops reading input (and barriers), so the channel
//!   fills and presses back on the producer.
//! - **Order and watermarks.** The operator holds watermarks
//!   ([`Operator::holds_watermarks`]): a watermark enters the queue behind
//!   the records before it and leaves after them. Ordered mode emits in
//!   input order; unordered mode emits as answers arrive, but no record
//!   crosses a watermark.
//! - **Failure.** After a request's last try, `on_failure = "fail"` fails
//!   the task with the operator, the lookup and the cause
//!   ([`TaskError::Lookup`]); `"dead-letter"` sends the record to the
//!   dead-letter output with the cause (in its turn, as if it were output).
//!   A function asking for a lookup it was not granted sends the record to
//!   the dead letters, saying so.
//! - **Checkpoints.** At a barrier, every record not yet emitted (in the
//!   queue or waiting for room) is written, in input order, to the split
//!   operator list state `operator-split/weir.async.in-flight` of the
//!   operator's own heap backend; on restore those records are prepared
//!   and issued again before any new input, so none is lost or doubled.
//!   Answers are not kept: a restored record is looked up again. A stop
//!   with a savepoint drops what the operator holds ([`Operator::on_stop`]):
//!   it is in the savepoint, and the resumed job emits it. The
//!   checkpoint's event-time progress is the last watermark the operator
//!   emitted ([`Operator::emitted_watermark`]), not its input's: a restore
//!   tells consumers no more than they had heard, and the input's watermark,
//!   announced again by the producer, queues behind the restored records.

pub(crate) mod client;
pub(crate) mod config;
pub(crate) mod queue;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use self::client::{Answer, LookupClient};
use self::config::{AsyncConfig, OnFailure};
use self::queue::{CompletionQueue, Ready};
use super::{Operator, OperatorContext, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::{EventTime, RecordBatch, RecordRef};
use crate::state::operator::{KEY, SPLIT, element_key};
use crate::state::{StateDescriptor, StateId, StateKind};
use crate::storage::CheckpointId;
use crate::wasm::host_state::KeyedScope;
use crate::wasm::instance::AsyncMapUdf;

/// The operator list state that holds the records in flight at a barrier.
const IN_FLIGHT: &str = "weir.async.in-flight";

/// A record prepared but not yet in the queue, or a watermark behind such.
enum Waiting {
    Record(Prepared),
    Watermark(EventTime),
}

/// A record and the lookups it needs.
struct Prepared {
    payload: Vec<u8>,
    timestamp: EventTime,
    /// (lookup, key), in request order.
    requests: Vec<(String, String)>,
}

/// A record in the queue.
struct InFlight {
    payload: Vec<u8>,
    timestamp: EventTime,
    /// The lookup of each request.
    lookups: Vec<String>,
    /// One slot per request: `Some(answer)` once answered.
    answers: Vec<Option<Option<Vec<u8>>>>,
    /// Whether a request failed its last try (the record is dead-lettered).
    failed: bool,
}

/// How a queued record completed.
enum Completion {
    /// Every request answered.
    Answered,
    /// A request failed its last try: its lookup and the cause.
    Failed { lookup: String, cause: String },
}

/// Runs an async lookup function; see the module docs.
pub(crate) struct AsyncOperator {
    context: OperatorContext,
    instance: AsyncMapUdf,
    config: AsyncConfig,
    client: LookupClient,
    queue: CompletionQueue<Completion>,
    waiting: VecDeque<Waiting>,
    in_flight: HashMap<u64, InFlight>,
    next_id: u64,
    /// The operator's own heap backend (restored), for its checkpoints.
    scope: KeyedScope,
    /// Records restored from the checkpoint, not prepared yet.
    restored: Option<RecordBatch>,
    /// The last watermark emitted (or restored).
    emitted: EventTime,
}

impl AsyncOperator {
    /// An operator running `instance` under `config`; `scope` holds the
    /// records in flight at the checkpoint it starts from, if any.
    pub(crate) fn new(
        context: OperatorContext,
        instance: AsyncMapUdf,
        config: AsyncConfig,
        scope: KeyedScope,
        subtask: u32,
    ) -> Result<Self, TaskError> {
        let client = LookupClient::start(format!("{}-{subtask}-io", context.uid), config.timeout, config.retry)
            .map_err(|source| TaskError::Lookup {
                operator: context.uid.clone(),
                lookup: String::new(),
                cause: format!("cannot start the lookup runtime: {source}"),
            })?;
        Ok(Self {
            queue: CompletionQueue::new(config.mode),
            context,
            instance,
            config,
            client,
            waiting: VecDeque::new(),
            in_flight: HashMap::new(),
            next_id: 0,
            scope,
            restored: None,
            emitted: EventTime::MIN,
        })
    }

    /// Prepares the records restored from a checkpoint, once, ahead of
    /// any new input.
    fn resume(&mut self, out: &mut Output) -> Result<(), TaskError> {
        match self.restored.take() {
            Some(restored) => {
                self.prepare(restored, out)?;
                self.pump(out)
            }
            None => Ok(()),
        }
    }

    fn in_flight_state(&mut self) -> Result<StateId, TaskError> {
        let descriptor = StateDescriptor {
            name: format!("{SPLIT}{IN_FLIGHT}"),
            kind: StateKind::Map,
            ttl: None,
        };
        self.scope
            .backend
            .register(&descriptor)
            .map_err(|e| self.context.state_error(e))
    }

    /// Prepares `batch` and queues its records behind those waiting.
    fn prepare(&mut self, mut batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        if batch.is_empty() {
            return Ok(());
        }
        let prepared = self.instance.prepare(&mut batch)?;
        let mut requests: Vec<Vec<(String, String)>> = vec![Vec::new(); batch.len()];
        for request in prepared.requests {
            requests[request.index as usize].push((request.lookup, request.key));
        }
        let mut rejected: HashMap<usize, String> = prepared.errors.into_iter().map(|(i, r)| (i as usize, r)).collect();
        for (index, requests) in requests.iter().enumerate() {
            if let Some((lookup, _)) = requests
                .iter()
                .find(|(lookup, _)| !self.config.lookups.contains_key(lookup))
            {
                let granted: Vec<&str> = self.config.lookups.keys().map(String::as_str).collect();
                rejected.entry(index).or_insert_with(|| {
                    format!(
                        "lookup `{lookup}` is not granted to operator `{}` (lookups = {granted:?})",
                        self.context.uid
                    )
                });
            }
        }
        for (index, requests) in requests.into_iter().enumerate() {
            let record = batch.get(index);
            if let Some(reason) = rejected.get(&index) {
                self.context.dead_letter(out, record, reason)?;
                continue;
            }
            self.waiting.push_back(Waiting::Record(Prepared {
                payload: record.payload.to_vec(),
                timestamp: record.timestamp,
                requests,
            }));
        }
        Ok(())
    }

    /// Moves waiting records into the queue while there is room, issuing
    /// their requests, and watermarks behind them; how many moved.
    fn admit(&mut self) -> usize {
        let mut admitted = 0;
        while let Some(front) = self.waiting.front() {
            if matches!(front, Waiting::Record(_)) && self.queue.records() >= self.config.capacity {
                break;
            }
            admitted += 1;
            match self.waiting.pop_front() {
                Some(Waiting::Watermark(watermark)) => self.queue.push_watermark(watermark),
                Some(Waiting::Record(record)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    self.queue.push_record(id);
                    for (request, (lookup, key)) in record.requests.iter().enumerate() {
                        if let Some(config) = self.config.lookups.get(lookup) {
                            self.client.issue(id, request, config, key);
                        }
                    }
                    if record.requests.is_empty() {
                        self.queue.complete(id, Completion::Answered);
                    }
                    self.in_flight.insert(
                        id,
                        InFlight {
                            payload: record.payload,
                            timestamp: record.timestamp,
                            answers: vec![None; record.requests.len()],
                            lookups: record.requests.into_iter().map(|(lookup, _)| lookup).collect(),
                            failed: false,
                        },
                    );
                }
                None => break,
            }
        }
        admitted
    }

    /// Emits what may leave and admits what then fits, until neither moves
    /// anything (a record needing no lookup completes at once).
    fn pump(&mut self, out: &mut Output) -> Result<(), TaskError> {
        loop {
            self.emit_ready(out)?;
            if self.admit() == 0 {
                return Ok(());
            }
        }
    }

    /// Records an answer; a failure either fails the task or marks the
    /// record for the dead letters.
    fn on_answer(&mut self, answer: Answer) -> Result<(), TaskError> {
        let Some(record) = self.in_flight.get_mut(&answer.id) else {
            return Ok(());
        };
        if record.failed {
            return Ok(());
        }
        match answer.outcome {
            Ok(value) => {
                if let Some(slot) = record.answers.get_mut(answer.request) {
                    *slot = Some(value);
                }
                if record.answers.iter().all(Option::is_some) {
                    self.queue.complete(answer.id, Completion::Answered);
                }
            }
            Err(cause) => {
                let lookup = record.lookups.get(answer.request).cloned().unwrap_or_default();
                match self.config.on_failure {
                    OnFailure::Fail => {
                        return Err(TaskError::Lookup {
                            operator: self.context.uid.clone(),
                            lookup,
                            cause,
                        });
                    }
                    OnFailure::DeadLetter => {
                        record.failed = true;
                        self.queue.complete(answer.id, Completion::Failed { lookup, cause });
                    }
                }
            }
        }
        Ok(())
    }

    /// Handles every answer that has arrived, admits waiting records and
    /// emits what may leave.
    fn poll(&mut self, out: &mut Output) -> Result<(), TaskError> {
        while let Some(answer) = self.client.try_answer() {
            self.on_answer(answer)?;
        }
        self.pump(out)
    }

    /// Emits what may leave the queue: records through one `complete`
    /// call per run between watermarks, dead letters, watermarks.
    fn emit_ready(&mut self, out: &mut Output) -> Result<(), TaskError> {
        let mut ready = Vec::new();
        self.queue.pop_ready(&mut ready);
        let mut batch = RecordBatch::default();
        let mut results = Vec::new();
        for item in ready {
            match item {
                Ready::Record(id, completion) => {
                    let Some(record) = self.in_flight.remove(&id) else {
                        continue;
                    };
                    match completion {
                        Completion::Answered => {
                            batch.push(&record.payload, record.timestamp);
                            results.push(record.answers.into_iter().map(Option::flatten).collect());
                        }
                        Completion::Failed { lookup, cause } => {
                            let reason = format!("lookup `{lookup}` failed: {cause}");
                            let record = RecordRef {
                                payload: &record.payload,
                                timestamp: record.timestamp,
                                key: None,
                            };
                            self.context.dead_letter(out, record, &reason)?;
                        }
                    }
                }
                Ready::Watermark(watermark) => {
                    self.complete(&mut batch, &mut results, out)?;
                    out.watermark(watermark)?;
                    self.emitted = watermark;
                }
            }
        }
        self.complete(&mut batch, &mut results, out)
    }

    /// Runs `complete` over `batch` and routes its output; empties both.
    fn complete(
        &mut self,
        batch: &mut RecordBatch,
        results: &mut Vec<Vec<Option<Vec<u8>>>>,
        out: &mut Output,
    ) -> Result<(), TaskError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut input = std::mem::take(batch);
        let output = self.instance.complete(&mut input, results)?;
        results.clear();
        self.context.route(output, &input, out)
    }

    /// The longest a request may take, tries and waits included, plus a
    /// margin: the bound of a drain that hears nothing.
    fn request_bound(&self) -> Duration {
        let retry = self.config.retry;
        let waits: Duration = (2..=retry.attempts.max(1)).map(|a| retry.delay_before(a)).sum();
        self.config.timeout * retry.attempts.max(1) + waits + Duration::from_secs(10)
    }
}

impl Operator for AsyncOperator {
    fn open(&mut self) -> Result<(), TaskError> {
        let state = self.in_flight_state()?;
        self.scope.backend.set_current_key(KEY);
        let entries = self
            .scope
            .backend
            .entries(state)
            .map_err(|e| self.context.state_error(e))?;
        let mut restored = RecordBatch::default();
        for (_, value) in entries {
            if value.len() < 8 {
                return Err(TaskError::Internal {
                    operator: self.context.uid.clone(),
                    what: "a checkpointed in-flight record is shorter than its timestamp",
                });
            }
            let (timestamp, payload) = value.split_at(8);
            let timestamp = i64::from_be_bytes(timestamp.try_into().unwrap_or_default());
            restored.push(payload, timestamp);
        }
        // Prepared at the first hook with an output (a rejected record
        // needs the dead letters), before anything else.
        if !restored.is_empty() {
            self.restored = Some(restored);
        }
        Ok(())
    }

    fn process_batch(&mut self, batch: RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        self.resume(out)?;
        self.context.metrics.add_in(batch.len(), batch.payload_bytes());
        self.prepare(batch, out)?;
        self.pump(out)
    }

    fn holds_watermarks(&self) -> bool {
        true
    }

    fn emitted_watermark(&self) -> Option<EventTime> {
        Some(self.emitted)
    }

    fn restore_watermark(&mut self, watermark: EventTime) {
        self.emitted = watermark;
    }

    fn on_watermark(&mut self, watermark: EventTime, out: &mut Output) -> Result<(), TaskError> {
        self.resume(out)?;
        self.waiting.push_back(Waiting::Watermark(watermark));
        self.pump(out)
    }

    fn wakeup(&self) -> Option<&Receiver<()>> {
        Some(self.client.wakeup())
    }

    fn on_wakeup(&mut self, out: &mut Output) -> Result<(), TaskError> {
        self.resume(out)?;
        self.poll(out)
    }

    fn accepts_input(&self) -> bool {
        self.waiting.is_empty() && self.queue.records() < self.config.capacity
    }

    fn snapshot_state(&mut self, _id: CheckpointId) -> Result<OperatorSnapshot, TaskError> {
        let state = self.in_flight_state()?;
        let backend = self.scope.backend.as_mut();
        backend.set_current_key(KEY);
        backend.clear(state).map_err(|e| self.context.state_error(e))?;
        let queued = self.queue.ids().filter_map(|id| self.in_flight.get(&id));
        let queued = queued.map(|r| (r.timestamp, r.payload.as_slice()));
        let waiting = self.waiting.iter().filter_map(|w| match w {
            Waiting::Record(r) => Some((r.timestamp, r.payload.as_slice())),
            Waiting::Watermark(_) => None,
        });
        let restored = self
            .restored
            .iter()
            .flat_map(|b| b.iter().map(|r| (r.timestamp, r.payload)));
        let mut value = Vec::new();
        for (index, (timestamp, payload)) in restored.chain(queued).chain(waiting).enumerate() {
            value.clear();
            value.extend_from_slice(&timestamp.to_be_bytes());
            value.extend_from_slice(payload);
            backend
                .put(state, &element_key(index), &value)
                .map_err(|e| self.context.state_error(e))?;
        }
        self.context.snapshot_keyed(backend, &self.scope.timers)
    }

    fn on_stop(&mut self) {
        self.restored = None;
        self.waiting.clear();
        self.queue = CompletionQueue::new(self.config.mode);
        self.in_flight.clear();
    }

    fn close(&mut self, out: &mut Output) -> Result<(), TaskError> {
        self.resume(out)?;
        let bound = self.request_bound();
        let mut heard = Instant::now();
        self.poll(out)?;
        while !(self.waiting.is_empty() && self.queue.is_empty()) {
            if let Some(answer) = self.client.wait_answer(Duration::from_millis(50)) {
                heard = Instant::now();
                self.on_answer(answer)?;
            } else if heard.elapsed() > bound {
                return Err(TaskError::Internal {
                    operator: self.context.uid.clone(),
                    what: "lookups in flight never answered",
                });
            }
            self.poll(out)?;
        }
        Ok(())
    }
}
