//! The loops that subtasks run.
//!
//! An operator subtask selects over its input channels (and its link
//! channel from the checkpoint coordinator), hands batches to its operator,
//! and tracks one watermark per channel: the operator's watermark is the
//! minimum over channels that have not ended, and it only moves forward.
//!
//! Barrier alignment lives here, not in operators: in exactly-once mode, a
//! channel that has delivered the barrier of the checkpoint in progress is
//! left out of the `select` until every other open channel has delivered it,
//! so its later records wait in the (bounded) channel and press back on their
//! producer. A channel that ends counts as aligned. Once aligned, the
//! operator snapshots, the barrier goes downstream, and every channel is read
//! again.
//!
//! When every channel has ended, the watermark becomes the maximum (so every
//! event-time timer fires); a two-phase-commit sink then waits until its last
//! pre-committed transaction is committed; the operator closes and the
//! subtask tells its consumers it has ended.
//!
//! Stop with a savepoint (`weir stop`): a source told to stop emits the
//! savepoint's barrier and then [`Message::Stop`] instead of a maximum
//! watermark and `End`; downstream subtasks end the same way without
//! advancing their watermark, so the timers and windows after the savepoint
//! stay in it for the resumed job.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Select};

use super::coordinator_link::CoordinatorLink;
use crate::checkpoint::coordinator::ToTask;
use crate::connectors::{Source, SourceStatus};
use crate::exchange::TaskError;
use crate::exchange::message::Message;
use crate::exchange::output::Output;
use crate::metrics::SubtaskMetrics;
use crate::operators::{Operator, Side};
use crate::plan::CheckpointMode;
use crate::record::batch::{EventTime, RecordBatch};
use crate::storage::manifest::WatermarkSnapshot;
use crate::storage::{Barrier, CheckpointId};
use crate::time::watermarks::WatermarkEvent;

/// Runs a source subtask until its input ends or the job is cancelled.
/// (Its output is counted by `out`.) `restored` is the event-time progress
/// of the checkpoint it starts from.
pub(crate) fn run_source(
    uid: &str,
    source: &mut dyn Source,
    out: &mut Output,
    batch_size: usize,
    cancel: &AtomicBool,
    link: Option<&CoordinatorLink>,
    restored: WatermarkSnapshot,
) -> Result<(), TaskError> {
    out.resume_watermarks(restored.output, None)?;
    let progress = |out: &Output| WatermarkSnapshot {
        input: None,
        output: out.generator_state(),
    };
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        if let Some(link) = link {
            while let Ok(message) = link.from_coordinator.try_recv() {
                match message {
                    ToTask::Trigger(barrier) => {
                        let delay = crate::time::now_ms().saturating_sub(barrier.timestamp_ms).max(0);
                        out.metrics()
                            .observe_checkpoint(Duration::from_millis(delay as u64), Duration::ZERO);
                        link.ack_source(barrier.id, source.snapshot(barrier.id), progress(out), false);
                        out.barrier(barrier)?;
                    }
                    ToTask::Stop(barrier) => {
                        // Stop with a savepoint: no final watermark, and the
                        // position is one to resume from, not an end.
                        link.ack_source(barrier.id, source.snapshot(barrier.id), progress(out), false);
                        out.barrier(barrier)?;
                        out.stop()?;
                        link.finished();
                        return Ok(());
                    }
                    ToTask::Complete(id) => source.checkpoint_complete(id),
                    ToTask::Abort(_) => {}
                }
            }
        }
        let mut batch = RecordBatch::with_capacity(batch_size, batch_size * 48);
        // A call that brings nothing was a wait for input: idle, not busy.
        let asked = Instant::now();
        let status = source
            .next_batch(&mut batch, batch_size)
            .map_err(|source| TaskError::Connector {
                vertex: format!("source `{uid}`"),
                source,
            })?;
        for rejected in source.rejected() {
            let record = crate::record::batch::RecordRef {
                payload: &rejected.payload,
                timestamp: rejected.timestamp,
                key: None,
            };
            out.dead_letters().write(uid, "", record, &rejected.reason)?;
        }
        if batch.is_empty() {
            out.metrics().add_idle(asked.elapsed());
            out.tick()?;
        } else {
            out.emit(batch)?;
        }
        match source.poll_watermark() {
            Some(WatermarkEvent::Watermark(watermark)) => out.watermark(watermark)?,
            Some(WatermarkEvent::Idle) => out.idle()?,
            None => {}
        }
        if status == SourceStatus::End {
            break;
        }
    }
    out.watermark(EventTime::MAX)?;
    if let Some(link) = link {
        // Wait for one last checkpoint, so that it covers the whole input.
        let _ = link
            .to_coordinator
            .send(crate::checkpoint::coordinator::ToCoordinator::SourceAtEnd(
                link.task.clone(),
            ));
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(TaskError::Cancelled);
            }
            match link.from_coordinator.recv_timeout(Duration::from_millis(50)) {
                Ok(ToTask::Trigger(barrier) | ToTask::Stop(barrier)) => {
                    link.ack_source(barrier.id, source.snapshot(barrier.id), progress(out), true);
                    out.barrier(barrier)?;
                    break;
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => {}
                // The coordinator failed the attempt: no final checkpoint.
                Err(RecvTimeoutError::Disconnected) => return Err(TaskError::Cancelled),
            }
        }
    }
    out.end()?;
    if let Some(link) = link {
        link.finished();
    }
    Ok(())
}

/// Per-channel progress of an operator subtask's input.
struct InputState {
    watermarks: Vec<EventTime>,
    ended: Vec<bool>,
    idle: Vec<bool>,
    current: EventTime,
    /// The checkpoint being aligned, and which channels delivered its barrier.
    aligning: Option<(Barrier, Vec<bool>)>,
    /// When the first barrier of the checkpoint being aligned came (clock,
    /// and wall clock in ms), for the alignment and start-delay metrics.
    first_barrier: Option<(Instant, i64)>,
}

impl InputState {
    fn new(channels: usize) -> Self {
        Self {
            watermarks: vec![EventTime::MIN; channels],
            ended: vec![false; channels],
            idle: vec![false; channels],
            current: EventTime::MIN,
            aligning: None,
            first_barrier: None,
        }
    }

    fn open_channels(&self) -> usize {
        self.ended.iter().filter(|ended| !**ended).count()
    }

    /// Whether `channel` is held back by alignment.
    fn blocked(&self, channel: usize, mode: CheckpointMode) -> bool {
        mode == CheckpointMode::ExactlyOnce && self.aligning.as_ref().is_some_and(|(_, seen)| seen[channel])
    }

    /// Records that `channel` delivered `barrier`; returns the barrier once
    /// every open channel has.
    fn on_barrier(&mut self, channel: usize, barrier: Barrier) -> Option<Barrier> {
        match &mut self.aligning {
            Some((current, seen)) if current.id == barrier.id => seen[channel] = true,
            Some((current, _)) if current.id > barrier.id => return None, // a stale, abandoned checkpoint
            _ => {
                let mut seen = vec![false; self.ended.len()];
                seen[channel] = true;
                self.aligning = Some((barrier, seen));
                self.first_barrier = Some((Instant::now(), crate::time::now_ms()));
            }
        }
        self.aligned()
    }

    /// The barrier being aligned, if every open channel has delivered it.
    fn aligned(&mut self) -> Option<Barrier> {
        let (barrier, seen) = self.aligning.as_ref()?;
        let done = seen.iter().zip(&self.ended).all(|(seen, ended)| *seen || *ended);
        let barrier = *barrier;
        done.then(|| {
            self.aligning = None;
            barrier
        })
    }

    /// Records how long the checkpoint of `barrier`, just aligned, waited
    /// to start (trigger to first barrier) and to align (first barrier to
    /// last).
    fn observe_alignment(&mut self, barrier: &Barrier, metrics: &SubtaskMetrics) {
        let (first, first_ms) = self
            .first_barrier
            .take()
            .unwrap_or_else(|| (Instant::now(), crate::time::now_ms()));
        let start_delay = Duration::from_millis(first_ms.saturating_sub(barrier.timestamp_ms).max(0) as u64);
        metrics.observe_checkpoint(start_delay, first.elapsed());
    }

    /// Gives up aligning checkpoint `id`.
    fn abort(&mut self, id: CheckpointId) {
        if self.aligning.as_ref().is_some_and(|(barrier, _)| barrier.id <= id) {
            self.aligning = None;
        }
    }

    /// Whether every open channel is idle.
    fn all_idle(&self) -> bool {
        self.open_channels() > 0 && self.ended.iter().zip(&self.idle).all(|(ended, idle)| *ended || *idle)
    }

    /// The new operator watermark, if it advanced: the minimum over channels
    /// that have neither ended nor gone idle (the maximum once all ended).
    /// When every open channel is idle, it is the largest of their
    /// watermarks, as in Flink's `StatusWatermarkValve`: whatever any input
    /// has promised still holds, and nothing else will come soon.
    fn advance(&mut self) -> Option<EventTime> {
        let open = (0..self.watermarks.len()).filter(|&c| !self.ended[c]);
        let candidate = if self.all_idle() {
            open.map(|c| self.watermarks[c]).max()?
        } else {
            open.filter(|&c| !self.idle[c])
                .map(|c| self.watermarks[c])
                .min()
                .unwrap_or(EventTime::MAX)
        };
        (candidate > self.current).then(|| {
            self.current = candidate;
            candidate
        })
    }
}

/// What a `select` returned.
enum Event {
    Input(usize, Message),
    Control(ToTask),
    Timer,
    /// The operator's wakeup channel was ready.
    Wakeup,
}

/// Runs an operator subtask until all its inputs end.
pub(crate) fn run_operator(
    operator: &mut dyn Operator,
    inputs: &[Receiver<Message>],
    out: &mut Output,
    link: Option<&CoordinatorLink>,
) -> Result<(), TaskError> {
    run_operator_inputs(operator, inputs, &[], out, link, WatermarkSnapshot::default())
}

/// Runs an operator subtask whose channel `c` belongs to its input
/// `sides[c]` (the first when not given; the second only for two-input
/// operators) until all its inputs end.
///
/// `restored` is the event-time progress of the checkpoint the subtask
/// starts from: the operator's watermark starts there (never below it), and
/// the output tells its consumers again what it had told them.
pub(crate) fn run_operator_inputs(
    operator: &mut dyn Operator,
    inputs: &[Receiver<Message>],
    sides: &[Side],
    out: &mut Output,
    link: Option<&CoordinatorLink>,
    restored: WatermarkSnapshot,
) -> Result<(), TaskError> {
    operator.open()?;
    let mode = link.map_or(CheckpointMode::ExactlyOnce, |c| c.mode);
    let mut state = InputState::new(inputs.len());
    if let Some(watermark) = restored.input.filter(|w| *w > EventTime::MIN) {
        // Only what is late: timers wait for the next advance, as they would have.
        state.current = watermark;
        out.metrics().set_input_watermark(watermark);
        operator.restore_watermark(watermark);
    }
    out.resume_watermarks(restored.output, restored.input)?;
    // An input stopped with a savepoint: the watermark stays where it is.
    let mut stopped = false;
    while state.open_channels() > 0 {
        match next_event(operator, out, inputs, &state, mode, link)? {
            Event::Timer => {
                if operator
                    .next_processing_time()
                    .is_some_and(|due| due <= crate::time::now_ms())
                {
                    operator.on_processing_time(crate::time::now_ms(), out)?;
                }
                out.tick()?;
            }
            Event::Control(message) => on_control(operator, &mut state, message)?,
            Event::Wakeup => operator.on_wakeup(out)?,
            Event::Input(channel, Message::Data(batch)) => {
                state.idle[channel] = false;
                let side = sides.get(channel).copied().unwrap_or(Side::First);
                operator.process_input(side, batch, out)?;
                // Due processing-time timers fire between batches too, so
                // that a busy input does not hold them back.
                if operator
                    .next_processing_time()
                    .is_some_and(|due| due <= crate::time::now_ms())
                {
                    operator.on_processing_time(crate::time::now_ms(), out)?;
                }
            }
            Event::Input(channel, Message::Watermark(watermark)) => {
                state.idle[channel] = false;
                let slot = &mut state.watermarks[channel];
                *slot = (*slot).max(watermark);
                if let Some(watermark) = state.advance() {
                    advance_watermark(operator, out, watermark)?;
                }
            }
            Event::Input(channel, Message::Idle) => {
                state.idle[channel] = true;
                if let Some(watermark) = state.advance() {
                    advance_watermark(operator, out, watermark)?;
                }
                if state.all_idle() {
                    out.idle()?;
                }
            }
            Event::Input(channel, Message::Barrier(barrier)) => {
                if let Some(barrier) = state.on_barrier(channel, barrier) {
                    state.observe_alignment(&barrier, out.metrics());
                    checkpoint(operator, barrier, state.current, out, link)?;
                }
            }
            Event::Input(channel, Message::Stop) => {
                state.ended[channel] = true;
                stopped = true;
                if let Some(barrier) = state.aligned() {
                    state.observe_alignment(&barrier, out.metrics());
                    checkpoint(operator, barrier, state.current, out, link)?;
                }
            }
            Event::Input(channel, Message::End) => {
                state.ended[channel] = true;
                if let Some(watermark) = state.advance().filter(|_| !stopped) {
                    advance_watermark(operator, out, watermark)?;
                }
                if let Some(barrier) = state.aligned() {
                    state.observe_alignment(&barrier, out.metrics());
                    checkpoint(operator, barrier, state.current, out, link)?;
                }
            }
        }
    }
    if let (Some(link), Some(last)) = (link, operator.pending_commit()) {
        await_commit(operator, link, last)?;
    }
    if stopped {
        operator.on_stop();
    }
    operator.close(out)?;
    if stopped {
        out.stop()?
    } else {
        out.end()?
    }
    if let Some(link) = link {
        link.finished();
    }
    Ok(())
}

/// The operator's watermark advanced: the operator sees it, then it goes
/// downstream (unless the operator emits watermarks itself).
fn advance_watermark(operator: &mut dyn Operator, out: &mut Output, watermark: EventTime) -> Result<(), TaskError> {
    out.metrics().set_input_watermark(watermark);
    operator.on_watermark(watermark, out)?;
    if operator.holds_watermarks() {
        Ok(())
    } else {
        out.watermark(watermark)
    }
}

/// Snapshots the operator (and its event-time progress: `watermark` and
/// the output's generator) for `barrier` and forwards the barrier.
fn checkpoint(
    operator: &mut dyn Operator,
    barrier: Barrier,
    watermark: EventTime,
    out: &mut Output,
    link: Option<&CoordinatorLink>,
) -> Result<(), TaskError> {
    let snapshot = operator.snapshot_state(barrier.id)?;
    if let Some(link) = link {
        let progress = WatermarkSnapshot {
            input: Some(operator.emitted_watermark().unwrap_or(watermark)),
            output: out.generator_state(),
        };
        link.ack_operator(barrier.id, snapshot, progress);
    }
    out.barrier(barrier)
}

fn on_control(operator: &mut dyn Operator, state: &mut InputState, message: ToTask) -> Result<(), TaskError> {
    match message {
        ToTask::Complete(id) => operator.notify_checkpoint_complete(id),
        ToTask::Abort(id) => {
            state.abort(id);
            operator.notify_checkpoint_aborted(id)
        }
        ToTask::Trigger(_) | ToTask::Stop(_) => Ok(()),
    }
}

/// Waits until checkpoint `last` (or a later one) completes.
///
/// The coordinator is told first: whether `last` failed before or after
/// this wait began (its abort may have been read already), it then knows
/// that nothing can commit this output and fails the attempt, closing the
/// link channel. So an abort here is no reason to stop waiting, and the
/// attempt's error is the coordinator's, which says why the checkpoint failed.
fn await_commit(operator: &mut dyn Operator, link: &CoordinatorLink, last: CheckpointId) -> Result<(), TaskError> {
    let _ = link
        .to_coordinator
        .send(crate::checkpoint::coordinator::ToCoordinator::AwaitsCommit {
            task: link.task.clone(),
            id: last,
        });
    while operator.pending_commit().is_some_and(|pending| pending <= last) {
        // Reads no channel another subtask could close: a failure elsewhere
        // shows only in the cancel flag.
        if link.cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        match link.from_coordinator.recv_timeout(Duration::from_millis(50)) {
            Ok(ToTask::Complete(id)) => operator.notify_checkpoint_complete(id)?,
            Ok(_) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err(TaskError::Cancelled),
        }
    }
    Ok(())
}

/// Waits for the next input message, link message or timer.
fn next_event(
    operator: &dyn Operator,
    out: &Output,
    inputs: &[Receiver<Message>],
    state: &InputState,
    mode: CheckpointMode,
    link: Option<&CoordinatorLink>,
) -> Result<Event, TaskError> {
    let mut select = Select::new();
    let mut channel_of = Vec::with_capacity(inputs.len());
    // An operator that takes no input now waits for its wakeup instead.
    let accepts = operator.accepts_input();
    for (channel, input) in inputs.iter().enumerate() {
        if accepts && !state.ended[channel] && !state.blocked(channel, mode) {
            select.recv(input);
            channel_of.push(channel);
        }
    }
    let control_index = link.map(|c| select.recv(&c.from_coordinator));
    let wakeup = operator.wakeup();
    let wakeup_index = wakeup.map(|w| select.recv(w));
    let timer = operator
        .next_processing_time()
        .map(|deadline| Duration::from_millis(deadline.saturating_sub(crate::time::now_ms()).max(0) as u64));
    let wait = match (timer, out.next_tick()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Only a wait that blocks is timed (and counted as idle).
    let ready = match select.try_select() {
        Ok(ready) => ready,
        Err(_) => {
            let waiting = Instant::now();
            let ready = match wait {
                Some(wait) => select.select_timeout(wait).ok(),
                None => Some(select.select()),
            };
            out.metrics().add_idle(waiting.elapsed());
            match ready {
                Some(ready) => ready,
                None => return Ok(Event::Timer),
            }
        }
    };
    let index = ready.index();
    if Some(index) == control_index
        && let Some(link) = link
    {
        return ready
            .recv(&link.from_coordinator)
            .map(Event::Control)
            .map_err(|_| TaskError::Cancelled);
    }
    if Some(index) == wakeup_index
        && let Some(wakeup) = wakeup
    {
        let _ = ready.recv(wakeup);
        return Ok(Event::Wakeup);
    }
    let channel = channel_of[index];
    let message = ready.recv(&inputs[channel]).map_err(|_| TaskError::Cancelled)?;
    Ok(Event::Input(channel, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watermark_is_the_minimum_over_open_channels_and_never_goes_back() {
        let mut state = InputState::new(2);
        state.watermarks[0] = 10;
        assert_eq!(state.advance(), None, "channel 1 has no watermark yet");
        state.watermarks[1] = 5;
        assert_eq!(state.advance(), Some(5));
        state.ended[1] = true;
        assert_eq!(state.advance(), Some(10));
        state.ended[0] = true;
        assert_eq!(state.advance(), Some(EventTime::MAX));
        assert_eq!(state.advance(), None);
    }

    /// Records what it saw, and what it had seen at each snapshot.
    #[derive(Default)]
    struct Recorder {
        seen: Vec<String>,
        snapshots: Vec<(CheckpointId, Vec<String>)>,
    }

    impl Operator for Recorder {
        fn process_batch(&mut self, batch: RecordBatch, _out: &mut Output) -> Result<(), TaskError> {
            self.seen
                .extend(batch.iter().map(|r| String::from_utf8_lossy(r.payload).into_owned()));
            Ok(())
        }

        fn snapshot_state(&mut self, id: CheckpointId) -> Result<crate::operators::OperatorSnapshot, TaskError> {
            let mut seen = self.seen.clone();
            seen.sort();
            self.snapshots.push((id, seen));
            Ok(crate::operators::OperatorSnapshot::default())
        }
    }

    fn data(record: &str) -> Message {
        let mut batch = RecordBatch::default();
        batch.push(record.as_bytes(), 0);
        Message::Data(batch)
    }

    #[test]
    fn a_two_input_snapshot_never_contains_records_from_after_the_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let barrier = |id| {
            Message::Barrier(Barrier {
                id: CheckpointId(id),
                timestamp_ms: 0,
            })
        };
        for _ in 0..200 {
            // Both channels are full before the operator starts, so without
            // alignment `select` would often pick `a2` or `b3` before the
            // other channel's barrier.
            let script = [
                vec![data("a1"), barrier(1), data("a2"), barrier(2), data("a3"), Message::End],
                vec![data("b1"), data("b2"), barrier(1), data("b3"), Message::End],
            ];
            let inputs: Vec<Receiver<Message>> = script
                .into_iter()
                .map(|messages| {
                    let (tx, rx) = crossbeam_channel::bounded(16);
                    for message in messages {
                        tx.send(message).unwrap();
                    }
                    rx
                })
                .collect();
            let mut out = Output::new(
                Vec::new(),
                std::sync::Arc::new(crate::exchange::dead_letter::DeadLetters::new(&dir.path().join("dead"))),
                std::sync::Arc::new(crate::metrics::SubtaskMetrics::new(0)),
            );
            let mut recorder = Recorder::default();
            run_operator(&mut recorder, &inputs, &mut out, None).unwrap();
            let expected = vec![
                (CheckpointId(1), vec!["a1".to_string(), "b1".into(), "b2".into()]),
                // Channel 1 ended before barrier 2: it counts as aligned.
                (
                    CheckpointId(2),
                    vec!["a1".to_string(), "a2".into(), "b1".into(), "b2".into(), "b3".into()],
                ),
            ];
            assert_eq!(recorder.snapshots, expected);
            assert_eq!(recorder.seen.len(), 6);
        }
    }

    #[test]
    fn idle_channels_do_not_hold_the_watermark_back() {
        let mut state = InputState::new(2);
        state.watermarks[0] = 100;
        assert_eq!(state.advance(), None, "channel 1 holds it back");
        state.idle[1] = true;
        assert_eq!(state.advance(), Some(100));
        state.watermarks[1] = 150;
        state.idle[0] = true;
        assert!(state.all_idle());
        assert_eq!(
            state.advance(),
            Some(150),
            "all idle: the largest watermark of the idle channels"
        );
        assert_eq!(state.advance(), None);
    }

    #[test]
    fn alignment_blocks_channels_until_every_open_channel_delivered_the_barrier() {
        let barrier = Barrier {
            id: CheckpointId(1),
            timestamp_ms: 0,
        };
        let mut state = InputState::new(3);
        assert_eq!(state.on_barrier(0, barrier), None);
        assert!(state.blocked(0, CheckpointMode::ExactlyOnce));
        assert!(!state.blocked(0, CheckpointMode::AtLeastOnce));
        assert!(!state.blocked(1, CheckpointMode::ExactlyOnce));
        state.ended[2] = true;
        assert_eq!(state.aligned(), None);
        assert_eq!(state.on_barrier(1, barrier), Some(barrier));
        assert!(!state.blocked(0, CheckpointMode::ExactlyOnce));
    }
}
