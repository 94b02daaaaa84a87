//! Calls of the keyed kinds whose state and timers live in the store's
//! [`KeyedScope`]: keyed process functions (one input) and keyed co-process
//! functions (two inputs), and the timers both fire ([`TimerExport`]).

use wasmtime::Store;

use super::super::bindings::exports::weir::udf::{keyed_co_process, keyed_process};
use super::super::host_state::{HostState, KeyedScope};
use super::{CallOutput, Export, Udf, UdfError, batch_context, into_output, restore_batch, take_batch, wit};
use crate::record::batch::RecordBatch;
use crate::time::TimeDomain;

/// A running keyed process function.
pub type KeyedProcessUdf = Udf<keyed_process::Guest>;
/// A running keyed co-process function.
pub type CoProcessUdf = Udf<keyed_co_process::Guest>;

/// An export with an `on-timers` call: the kinds that fire timers.
pub trait TimerExport: Export {
    /// Calls the guest's `on-timers`.
    fn call_on_timers(
        &self,
        store: &mut Store<HostState>,
        context: wit::BatchContext,
        timers: &wit::TimerBatch,
    ) -> wasmtime::Result<wit::Output>;
}

impl TimerExport for keyed_process::Guest {
    fn call_on_timers(
        &self,
        store: &mut Store<HostState>,
        context: wit::BatchContext,
        timers: &wit::TimerBatch,
    ) -> wasmtime::Result<wit::Output> {
        keyed_process::Guest::call_on_timers(self, store, context, timers)
    }
}

impl TimerExport for keyed_co_process::Guest {
    fn call_on_timers(
        &self,
        store: &mut Store<HostState>,
        context: wit::BatchContext,
        timers: &wit::TimerBatch,
    ) -> wasmtime::Result<wit::Output> {
        keyed_co_process::Guest::call_on_timers(self, store, context, timers)
    }
}

/// Makes `input`'s keys the ones the guest selects from, and moves its
/// columns into a keyed WIT batch.
fn keyed_batch(scope: Option<&mut KeyedScope>, input: &mut RecordBatch, now: i64) -> wit::KeyedBatch {
    if let Some(scope) = scope {
        scope.set_batch_keys(&input.keys, &input.key_ends);
        scope.now_ms = now;
    }
    wit::KeyedBatch {
        records: take_batch(input),
        keys: std::mem::take(&mut input.keys),
        key_ends: std::mem::take(&mut input.key_ends),
    }
}

/// Moves a keyed WIT batch's columns back into `input`.
fn restore_keyed(input: &mut RecordBatch, batch: wit::KeyedBatch) {
    input.keys = batch.keys;
    input.key_ends = batch.key_ends;
    restore_batch(input, batch.records);
}

impl KeyedProcessUdf {
    /// Runs the function over the keyed records of `input`.
    pub fn process_keyed(&mut self, input: &mut RecordBatch, watermark: i64) -> Result<CallOutput, UdfError> {
        let now = crate::time::now_ms();
        let batch = keyed_batch(self.keyed(), input, now);
        self.core.before_call();
        let result = self
            .guest
            .call_process(&mut self.core.store, batch_context(watermark, now), &batch);
        restore_keyed(input, batch);
        self.core.after_call(result, input.len()).map(into_output)
    }
}

impl CoProcessUdf {
    /// Runs the function over the keyed records of `batch`, which came from
    /// the second input if `second`, else from the first.
    pub fn process_co(
        &mut self,
        second: bool,
        batch: &mut RecordBatch,
        watermark: i64,
    ) -> Result<CallOutput, UdfError> {
        let now = crate::time::now_ms();
        let keyed = keyed_batch(self.keyed(), batch, now);
        self.core.before_call();
        let input = u32::from(second);
        let result = self
            .guest
            .call_process(&mut self.core.store, batch_context(watermark, now), input, &keyed);
        restore_keyed(batch, keyed);
        self.core.after_call(result, batch.len()).map(into_output)
    }
}

impl<G: TimerExport> Udf<G> {
    /// The earliest registered processing-time timer.
    pub fn next_processing_time(&self) -> Option<i64> {
        self.core.store.data().keyed.as_ref()?.timers.next_processing_time()
    }

    /// Fires the timers of `domain` due at `time`, batch by batch, until none
    /// is due (timers registered while firing fire too if they are due);
    /// `sink` takes each call's output (its error type is the caller's).
    pub fn fire_timers<E: From<UdfError>>(
        &mut self,
        domain: TimeDomain,
        time: i64,
        watermark: i64,
        max_batch: usize,
        mut sink: impl FnMut(CallOutput) -> Result<(), E>,
    ) -> Result<(), E> {
        loop {
            let now = crate::time::now_ms();
            let Some(scope) = self.keyed() else {
                return Ok(());
            };
            let due = scope.timers.take_due(domain, time, max_batch);
            if due.is_empty() {
                return Ok(());
            }
            scope.set_batch_keys(&due.keys, &due.key_ends);
            scope.now_ms = now;
            let count = due.len();
            let timers = wit::TimerBatch {
                domain: match domain {
                    TimeDomain::EventTime => wit::TimeDomain::EventTime,
                    TimeDomain::ProcessingTime => wit::TimeDomain::ProcessingTime,
                },
                keys: due.keys,
                key_ends: due.key_ends,
                timestamps: due.timestamps,
            };
            self.core.before_call();
            let result = self
                .guest
                .call_on_timers(&mut self.core.store, batch_context(watermark, now), &timers);
            let output = self.core.after_call(result, count)?;
            sink(into_output(output))?;
        }
    }
}
