//! What an operator running a user function carries, built once by the
//! runtime and passed whole (Arroyo's `ArrowContext` is the model), and the
//! helpers every such operator would otherwise repeat.
//!
//! - [`OperatorContext`]: who the operator is (uid, module), its counters,
//!   the key groups it owns and how many timers or pairs it handles in one
//!   go; it names the operator in state errors and dead letters.
//! - [`KeyedContext`]: that, plus the keyed state backend, the timers and
//!   the watermark of an operator that keeps keyed state on the host
//!   (windows, joins): registering its states, lateness, the late side
//!   output, and its checkpoint view.
//!
//! Keyed process and co-process functions keep their backend and timers in
//! the Wasm store instead (the guest's state calls reach them there while a
//! call runs), so they carry an [`OperatorContext`] and snapshot their
//! store's scope through [`OperatorContext::snapshot_keyed`].
//!
//! [`Side`] says which input of a two-input operator a batch came from.

use std::sync::Arc;

use super::{KeyedView, OperatorSnapshot};
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::metrics::SubtaskMetrics;
use crate::record::batch::{EventTime, RecordBatch, RecordRef};
use crate::state::{KeyGroupRange, KeyedStateBackend, StateDescriptor, StateError, StateId, StateKind, TimerService};
use crate::time::windows::Window;
use crate::wasm::instance::CallOutput;

/// Which input of a two-input operator a batch came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// The first (left) input.
    First,
    /// The second (right, or broadcast) input.
    Second,
}

impl Side {
    /// Both sides, first first.
    pub(crate) const BOTH: [Side; 2] = [Side::First, Side::Second];

    /// The other side.
    pub(crate) fn other(self) -> Self {
        match self {
            Side::First => Side::Second,
            Side::Second => Side::First,
        }
    }
}

/// Who an operator is, what it counts, and what it owns.
pub(crate) struct OperatorContext {
    /// The operator's uid.
    pub uid: String,
    /// The module running its function, for messages and dead letters.
    pub module: String,
    /// The vertex's counters.
    pub metrics: Arc<SubtaskMetrics>,
    /// The key groups the subtask owns.
    pub key_groups: KeyGroupRange,
    /// Most timers (or join pairs) handled in one go; at least 1.
    pub batch_size: usize,
}

impl OperatorContext {
    /// The context of operator `uid` running a function of `module`.
    pub(crate) fn new(
        uid: &str,
        module: String,
        metrics: Arc<SubtaskMetrics>,
        key_groups: KeyGroupRange,
        batch_size: usize,
    ) -> Self {
        Self {
            uid: uid.to_string(),
            module,
            metrics,
            key_groups,
            batch_size: batch_size.max(1),
        }
    }

    /// A state error of this operator.
    pub(crate) fn state_error(&self, source: StateError) -> TaskError {
        TaskError::State {
            operator: self.uid.clone(),
            source,
        }
    }

    /// Sends `record`, which the function rejected for `reason`, to the dead
    /// letters.
    pub(crate) fn dead_letter(&self, out: &Output, record: RecordRef<'_>, reason: &str) -> Result<(), TaskError> {
        out.dead_letters().write(&self.uid, &self.module, record, reason)
    }

    /// Sends a function's output on: main records, side outputs, and dead
    /// letters for the records of `input` it rejected.
    pub(crate) fn route(&self, output: CallOutput, input: &RecordBatch, out: &mut Output) -> Result<(), TaskError> {
        for (index, reason) in &output.errors {
            let index = *index as usize;
            if index < input.len() {
                self.dead_letter(out, input.get(index), reason)?;
            }
        }
        out.emit(output.main)?;
        for (tag, batch) in output.side {
            out.emit_side(&tag, batch)?;
        }
        Ok(())
    }

    /// The checkpoint view of `backend` and `timers` under this subtask's
    /// key groups.
    pub(crate) fn snapshot_keyed(
        &self,
        backend: &mut dyn KeyedStateBackend,
        timers: &TimerService,
    ) -> Result<OperatorSnapshot, TaskError> {
        let state = backend.snapshot().map_err(|e| self.state_error(e))?;
        Ok(OperatorSnapshot {
            keyed: Some(KeyedView {
                state,
                timers: timers.clone(),
                key_groups: self.key_groups,
            }),
            transactions: Vec::new(),
        })
    }
}

/// The context of an operator whose keyed state and timers live on the host.
pub(crate) struct KeyedContext {
    /// Who the operator is.
    pub base: OperatorContext,
    /// The keyed state backend (restored already).
    pub backend: Box<dyn KeyedStateBackend>,
    /// The timers (restored already).
    pub timers: TimerService,
    /// The operator's watermark.
    pub watermark: EventTime,
}

impl KeyedContext {
    /// The context over `backend` and `timers`, before any watermark.
    pub(crate) fn new(base: OperatorContext, backend: Box<dyn KeyedStateBackend>, timers: TimerService) -> Self {
        Self {
            base,
            backend,
            timers,
            watermark: EventTime::MIN,
        }
    }

    /// A state error of this operator.
    pub(crate) fn state_error(&self, source: StateError) -> TaskError {
        self.base.state_error(source)
    }

    /// Registers the map state `name` (the kind every host-side operator
    /// state is).
    pub(crate) fn register(&mut self, name: &str) -> Result<StateId, TaskError> {
        let descriptor = StateDescriptor {
            name: name.into(),
            kind: StateKind::Map,
            ttl: None,
        };
        self.backend.register(&descriptor).map_err(|e| self.state_error(e))
    }

    /// Whether `window` is late: the watermark has passed its end plus
    /// `lateness`.
    pub(crate) fn is_late(&self, window: Window, lateness: i64) -> bool {
        window.max_timestamp().saturating_add(lateness) <= self.watermark
    }

    /// Counts the records of `late` and sends them to the late side output
    /// `tag`, if there is one.
    pub(crate) fn emit_late(&self, late: RecordBatch, tag: Option<&str>, out: &mut Output) -> Result<(), TaskError> {
        if late.is_empty() {
            return Ok(());
        }
        self.base.metrics.add_late(late.len() as u64);
        match tag {
            Some(tag) => out.emit_side(tag, late),
            None => Ok(()),
        }
    }

    /// The checkpoint view of the backend and the timers.
    pub(crate) fn snapshot(&mut self) -> Result<OperatorSnapshot, TaskError> {
        self.base.snapshot_keyed(self.backend.as_mut(), &self.timers)
    }
}
