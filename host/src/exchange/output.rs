//! A subtask's output: records, watermarks and end-of-input, partitioned
//! over the subtasks of every consumer.
//!
//! Each outgoing edge has a route: forward (to the consumer subtask with the
//! same index), rebalance (whole batches round-robin), broadcast (every batch
//! to every subtask), or key-by. A key-by edge runs the consumer's key
//! selector (a Wasm function) on the whole batch, then splits the batch by
//! key group into one batch per consumer subtask.

use std::sync::Arc;

use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use super::TaskError;
use super::dead_letter::DeadLetters;
use super::message::Message;
use crate::metrics::SubtaskMetrics;
use crate::record::batch::{EventTime, RecordBatch};
use crate::state::KeyGroup;
use crate::time::watermarks::{GeneratorState, WatermarkEvent, WatermarkGenerator, WatermarkStrategy};
use crate::wasm::instance::{KeySelectorUdf, WatermarkGeneratorUdf};

/// How an edge distributes records over its consumer's subtasks.
pub(crate) enum Route {
    /// To the single target (the consumer subtask with this subtask's index).
    Forward,
    /// Whole batches, round-robin.
    Rebalance,
    /// Every batch to every subtask.
    Broadcast,
    /// By the key group of each record's key.
    KeyBy {
        /// The consumer's key selector.
        selector: Box<KeySelectorUdf>,
        /// Number of key groups.
        max_parallelism: u32,
        /// The consumer's uid (for dead letters).
        consumer: String,
        /// The key selector's module (for dead letters).
        module: String,
    },
}

/// One outgoing edge of a subtask.
pub(crate) struct OutputEdge {
    /// Records of which side output travel on this edge (`None`: main output).
    pub side_output: Option<String>,
    /// One sender per consumer subtask (one in total for forward).
    pub targets: Vec<Sender<Message>>,
    /// How records are distributed.
    pub route: Route,
    next: usize,
}

impl OutputEdge {
    /// An edge to `targets` along `route`.
    pub(crate) fn new(side_output: Option<String>, targets: Vec<Sender<Message>>, route: Route) -> Self {
        Self {
            side_output,
            targets,
            route,
            next: 0,
        }
    }

    /// Sends `message`; the time spent waiting on a full channel counts as
    /// backpressured (measured only when the channel is full).
    fn send(target: &Sender<Message>, message: Message, metrics: &SubtaskMetrics) -> Result<(), TaskError> {
        match target.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message)) => {
                let waiting = Instant::now();
                let sent = target.send(message).map_err(|_| TaskError::Cancelled);
                metrics.add_backpressured(waiting.elapsed());
                sent
            }
            Err(TrySendError::Disconnected(_)) => Err(TaskError::Cancelled),
        }
    }

    fn emit(
        &mut self,
        mut batch: RecordBatch,
        dead_letters: &DeadLetters,
        metrics: &SubtaskMetrics,
    ) -> Result<(), TaskError> {
        match &mut self.route {
            Route::Forward => match self.targets.first() {
                Some(target) => Self::send(target, Message::Data(batch), metrics),
                None => Ok(()),
            },
            Route::Rebalance => {
                let Some(target) = self.targets.get(self.next % self.targets.len().max(1)) else {
                    return Ok(());
                };
                self.next = self.next.wrapping_add(1);
                Self::send(target, Message::Data(batch), metrics)
            }
            Route::Broadcast => {
                for target in &self.targets {
                    Self::send(target, Message::Data(batch.clone()), metrics)?;
                }
                Ok(())
            }
            Route::KeyBy {
                selector,
                max_parallelism,
                consumer,
                module,
            } => {
                batch.strip_keys();
                let errors = selector.select_keys(&mut batch)?;
                let mut rejected = vec![false; if errors.is_empty() { 0 } else { batch.len() }];
                for (index, reason) in &errors {
                    let index = *index as usize;
                    if index < batch.len() {
                        rejected[index] = true;
                        dead_letters.write(consumer, module, batch.get(index), reason)?;
                    }
                }
                let parallelism = self.targets.len() as u32;
                if parallelism == 1 && errors.is_empty() {
                    return match self.targets.first() {
                        Some(target) => Self::send(target, Message::Data(batch), metrics),
                        None => Ok(()),
                    };
                }
                let per_target = batch.len() / self.targets.len().max(1) + 1;
                let mut parts: Vec<RecordBatch> = (0..self.targets.len())
                    .map(|_| RecordBatch::with_capacity(per_target, batch.payload_bytes() / self.targets.len().max(1)))
                    .collect();
                for (i, record) in batch.iter().enumerate() {
                    if rejected.get(i).copied().unwrap_or(false) {
                        continue;
                    }
                    let key = record.key.unwrap_or_default();
                    let target = KeyGroup::of(key, *max_parallelism).subtask(*max_parallelism, parallelism);
                    if let Some(part) = parts.get_mut(target as usize) {
                        part.push_record(record);
                    }
                }
                for (part, target) in parts.into_iter().zip(&self.targets) {
                    if !part.is_empty() {
                        Self::send(target, Message::Data(part), metrics)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn broadcast(&self, message: &Message, metrics: &SubtaskMetrics) -> Result<(), TaskError> {
        for target in &self.targets {
            Self::send(target, message.clone(), metrics)?;
        }
        Ok(())
    }
}

/// Everything a subtask emits goes through its `Output`.
///
/// If the vertex has a watermark strategy, the output generates its
/// watermarks from the records it emits and replaces the watermarks that
/// came from upstream (only the final, maximum one still passes).
pub(crate) struct Output {
    edges: Vec<OutputEdge>,
    dead_letters: Arc<DeadLetters>,
    metrics: Arc<SubtaskMetrics>,
    generator: Option<WatermarkGenerator>,
    /// The Wasm function of a punctuated watermark strategy.
    punctuation: Option<WatermarkGeneratorUdf>,
}

impl Output {
    /// An output over `edges`, counting into `metrics`.
    pub(crate) fn new(edges: Vec<OutputEdge>, dead_letters: Arc<DeadLetters>, metrics: Arc<SubtaskMetrics>) -> Self {
        Self {
            edges,
            dead_letters,
            metrics,
            generator: None,
            punctuation: None,
        }
    }

    /// Asks `generator` (a watermark-generator function) for the watermarks
    /// of the records this output emits (a punctuated strategy).
    pub(crate) fn with_punctuation(mut self, generator: Option<WatermarkGeneratorUdf>) -> Self {
        self.punctuation = generator;
        self
    }

    /// Generates watermarks with `strategy` from now on.
    pub(crate) fn with_watermarks(mut self, strategy: Option<WatermarkStrategy>) -> Self {
        self.generator = strategy.map(WatermarkGenerator::new);
        self
    }

    /// The progress of this output's watermark generator, for a checkpoint.
    pub(crate) fn generator_state(&self) -> Option<GeneratorState> {
        self.generator.as_ref().map(WatermarkGenerator::state)
    }

    /// Continues from a checkpoint: restores the watermark generator to
    /// `generator` and tells every consumer subtask again where event time
    /// had got on this subtask's channels at the barrier — the generator's
    /// last watermark and idleness, or `forwarded` (the operator's restored
    /// watermark) when this output only forwards watermarks. A consumer's
    /// channel then holds what it held before the crash.
    pub(crate) fn resume_watermarks(
        &mut self,
        generator: Option<GeneratorState>,
        forwarded: Option<EventTime>,
    ) -> Result<(), TaskError> {
        let (emitted, idle) = match (&mut self.generator, generator) {
            (Some(current), Some(state)) => {
                current.restore(state);
                (current.emitted(), current.is_idle())
            }
            (Some(_), None) => return Ok(()),
            (None, _) => (forwarded.unwrap_or(EventTime::MIN), false),
        };
        if emitted > EventTime::MIN {
            self.broadcast(&Message::Watermark(emitted))?;
        }
        if idle {
            self.broadcast(&Message::Idle)?;
        }
        Ok(())
    }

    /// Emits what the watermark generator has to say now, if anything.
    pub(crate) fn tick(&mut self) -> Result<(), TaskError> {
        let Some(generator) = &mut self.generator else {
            return Ok(());
        };
        match generator.poll(Instant::now()) {
            Some(WatermarkEvent::Watermark(watermark)) => self.broadcast(&Message::Watermark(watermark)),
            Some(WatermarkEvent::Idle) => self.broadcast(&Message::Idle),
            None => Ok(()),
        }
    }

    /// How long until [`Output::tick`] may have something to emit.
    pub(crate) fn next_tick(&self) -> Option<Duration> {
        self.generator.as_ref().map(|g| g.next_poll(Instant::now()))
    }

    fn broadcast(&self, message: &Message) -> Result<(), TaskError> {
        if let Message::Watermark(watermark) = message {
            self.metrics.set_output_watermark(*watermark);
        }
        self.edges
            .iter()
            .try_for_each(|edge| edge.broadcast(message, &self.metrics))
    }

    /// The subtask's counters.
    pub(crate) fn metrics(&self) -> &SubtaskMetrics {
        &self.metrics
    }

    /// The job's dead-letter output.
    pub(crate) fn dead_letters(&self) -> &DeadLetters {
        &self.dead_letters
    }

    /// Emits records to the main output.
    pub(crate) fn emit(&mut self, batch: RecordBatch) -> Result<(), TaskError> {
        self.emit_to(None, batch)
    }

    /// Emits records to the side output `tag` (dropped if nothing reads it).
    pub(crate) fn emit_side(&mut self, tag: &str, batch: RecordBatch) -> Result<(), TaskError> {
        self.emit_to(Some(tag), batch)
    }

    fn emit_to(&mut self, tag: Option<&str>, mut batch: RecordBatch) -> Result<(), TaskError> {
        if tag.is_none()
            && !batch.is_empty()
            && let Some(generator) = &mut self.punctuation
        {
            let mut marks = generator.punctuations(&mut batch)?;
            if !marks.is_empty() {
                marks.sort_by_key(|&(index, _)| index);
                return self.emit_punctuated(batch, &marks);
            }
        }
        self.send_to(tag, batch)
    }

    /// Emits `batch` with the watermarks its generator declared after some
    /// records: the records up to each mark, then its watermark.
    fn emit_punctuated(&mut self, batch: RecordBatch, marks: &[(u32, EventTime)]) -> Result<(), TaskError> {
        let mut next = 0;
        for &(index, watermark) in marks {
            let end = (index as usize + 1).min(batch.len());
            if end > next {
                let mut part = RecordBatch::default();
                for i in next..end {
                    part.push_record(batch.get(i));
                }
                self.send_to(None, part)?;
                next = end;
            }
            if let Some(watermark) = self.generator.as_mut().and_then(|g| g.punctuate(watermark)) {
                self.broadcast(&Message::Watermark(watermark))?;
            }
        }
        if next < batch.len() {
            let mut rest = RecordBatch::default();
            for i in next..batch.len() {
                rest.push_record(batch.get(i));
            }
            self.send_to(None, rest)?;
        }
        Ok(())
    }

    fn send_to(&mut self, tag: Option<&str>, batch: RecordBatch) -> Result<(), TaskError> {
        if batch.is_empty() {
            return Ok(());
        }
        if tag.is_none() {
            self.metrics.add_out(batch.len(), batch.payload_bytes());
            if let Some(generator) = &mut self.generator {
                generator.on_batch(&batch, Instant::now());
            }
        }
        let matching: Vec<usize> = (0..self.edges.len())
            .filter(|&i| self.edges[i].side_output.as_deref() == tag)
            .collect();
        let Some((&last, rest)) = matching.split_last() else {
            return Ok(());
        };
        for &i in rest {
            self.edges[i].emit(batch.clone(), &self.dead_letters, &self.metrics)?;
        }
        self.edges[last].emit(batch, &self.dead_letters, &self.metrics)?;
        if tag.is_none() { self.tick() } else { Ok(()) }
    }

    /// Forwards a watermark from upstream to every consumer subtask — unless
    /// this output generates its own (then only the final one passes).
    pub(crate) fn watermark(&mut self, watermark: EventTime) -> Result<(), TaskError> {
        if self.generator.is_some() && watermark < EventTime::MAX {
            return Ok(());
        }
        self.broadcast(&Message::Watermark(watermark))
    }

    /// Tells every consumer subtask that this one is idle (all its inputs
    /// are), unless this output generates its own watermarks.
    pub(crate) fn idle(&mut self) -> Result<(), TaskError> {
        if self.generator.is_some() {
            return Ok(());
        }
        self.broadcast(&Message::Idle)
    }

    /// Forwards a checkpoint barrier to every consumer subtask.
    pub(crate) fn barrier(&mut self, barrier: crate::storage::Barrier) -> Result<(), TaskError> {
        let message = Message::Barrier(barrier);
        self.edges
            .iter()
            .try_for_each(|edge| edge.broadcast(&message, &self.metrics))
    }

    /// Tells every consumer subtask that the job stops with a savepoint.
    pub(crate) fn stop(&mut self) -> Result<(), TaskError> {
        self.edges
            .iter()
            .try_for_each(|edge| edge.broadcast(&Message::Stop, &self.metrics))
    }

    /// Tells every consumer subtask that this subtask has finished.
    pub(crate) fn end(&mut self) -> Result<(), TaskError> {
        self.edges
            .iter()
            .try_for_each(|edge| edge.broadcast(&Message::End, &self.metrics))
    }
}
