//! Count triggers (Flink's `CountTrigger`, optionally purging): a window
//! fires each time it has received `count` more records, exactly at the
//! n-th record even inside a batch.

use std::collections::HashMap;

use super::WindowOperator;
use crate::exchange::TaskError;
use crate::exchange::output::Output;
use crate::record::batch::RecordBatch;
use crate::time::TimeDomain;
use crate::time::windows::Window;
use crate::wasm::instance::Accumulators;

/// One firing's worth of a window's records under a count trigger.
struct Generation {
    key: Vec<u8>,
    window: Window,
    /// Records already counted before this batch (generation 0 only).
    carried: u64,
    /// Records of this batch in the generation.
    records: u64,
    /// The generation reached the trigger's count.
    complete: bool,
    /// The window's first generation in this batch: it continues the
    /// accumulator in state.
    first: bool,
}

impl WindowOperator {
    /// Count triggers (Flink's `CountTrigger`, optionally purging): a window
    /// fires each time it has received `count` more records. The records of
    /// a window in one batch are cut into generations of `count`, so firing
    /// happens exactly at the n-th record even inside a batch; without
    /// purging, generation `g` fires the merge of all generations up to `g`.
    pub(super) fn process_counted(
        &mut self,
        batch: RecordBatch,
        out: &mut Output,
        count: u64,
        purge: bool,
    ) -> Result<(), TaskError> {
        let mut generations: Vec<Generation> = Vec::new();
        let mut current: HashMap<(Vec<u8>, Window), usize> = HashMap::new();
        let mut slots = Vec::with_capacity(batch.len());
        let mut origin = Vec::with_capacity(batch.len());
        let mut input = RecordBatch::with_capacity(batch.len(), batch.payload_bytes());
        let mut late = RecordBatch::default();
        for (i, record) in batch.iter().enumerate() {
            let key = record.key.unwrap_or_default();
            let mut placed = false;
            let mut windows = Vec::new();
            self.config
                .assigner
                .assign(record.timestamp, |window| windows.push(window));
            for window in windows {
                if self.is_late(window) {
                    continue;
                }
                placed = true;
                let probe = (key.to_vec(), window);
                let slot = match current.get(&probe) {
                    Some(&slot) if !generations[slot].complete => slot,
                    Some(&previous) => {
                        // The window starts a new count after its firing.
                        let carried = generations[previous].carried + generations[previous].records;
                        generations.push(Generation {
                            key: key.to_vec(),
                            window,
                            carried,
                            records: 0,
                            complete: false,
                            first: false,
                        });
                        generations.len() - 1
                    }
                    None => {
                        self.context.backend.set_current_key(key);
                        let carried = self
                            .context
                            .backend
                            .get(self.counts, &window.to_key())
                            .map_err(|e| self.context.state_error(e))?
                            .and_then(|bytes| bytes.try_into().ok().map(u64::from_le_bytes))
                            .unwrap_or(0);
                        generations.push(Generation {
                            key: key.to_vec(),
                            window,
                            carried,
                            records: 0,
                            complete: false,
                            first: true,
                        });
                        generations.len() - 1
                    }
                };
                current.insert(probe, slot);
                let generation = &mut generations[slot];
                generation.records += 1;
                let in_generation = generation.carried % count + generation.records;
                generation.complete = in_generation >= count;
                slots.push(slot as u32);
                origin.push(i);
                input.push(record.payload, record.timestamp);
            }
            if !placed {
                late.push_record(record);
            }
        }
        // Generation 0 of a window continues its stored accumulator.
        let mut accumulators = Accumulators::default();
        for generation in &generations {
            if generation.first {
                self.context.backend.set_current_key(&generation.key);
                let stored = self
                    .context
                    .backend
                    .get(self.contents, &generation.window.to_key())
                    .map_err(|e| self.context.state_error(e))?;
                accumulators.push(stored.as_deref().unwrap_or_default());
            } else {
                accumulators.push(&[]);
            }
        }
        let accumulators = self.add(accumulators, slots, &mut input, Some((&batch, &origin)), out)?;
        // Without purging, each generation's result includes the ones before.
        let mut results: Vec<Vec<u8>> = (0..generations.len()).map(|g| accumulators.get(g).to_vec()).collect();
        if !purge {
            let mut chain: HashMap<(Vec<u8>, Window), usize> = HashMap::new();
            for g in 0..generations.len() {
                let probe = (generations[g].key.clone(), generations[g].window);
                if let Some(&previous) = chain.get(&probe) {
                    let (mut a, mut b) = (Accumulators::default(), Accumulators::default());
                    a.push(&results[previous]);
                    b.push(&results[g]);
                    let merged = self.instance.aggregate_merge(a, b)?;
                    results[g] = merged.get(0).to_vec();
                }
                chain.insert(probe, g);
            }
        }
        let mut fired = Vec::new();
        let mut last: HashMap<(Vec<u8>, Window), (usize, u64)> = HashMap::new();
        for (g, generation) in generations.iter().enumerate() {
            if generation.complete {
                fired.push((generation.key.clone(), generation.window, results[g].clone()));
            }
            last.insert(
                (generation.key.clone(), generation.window),
                (g, generation.carried + generation.records),
            );
        }
        for ((key, window), (g, total)) in last {
            self.context.backend.set_current_key(&key);
            let window_key = window.to_key();
            let keep = if purge { !generations[g].complete } else { true };
            if keep && !results[g].is_empty() {
                self.context
                    .backend
                    .put(self.contents, &window_key, &results[g])
                    .map_err(|e| self.context.state_error(e))?;
            } else {
                self.context
                    .backend
                    .delete(self.contents, &window_key)
                    .map_err(|e| self.context.state_error(e))?;
            }
            let remaining = if purge { total % count } else { total };
            self.context
                .backend
                .put(self.counts, &window_key, &remaining.to_le_bytes())
                .map_err(|e| self.context.state_error(e))?;
            if window != Window::GLOBAL {
                let cleanup = window.max_timestamp().saturating_add(self.config.allowed_lateness_ms);
                self.context.timers.register(TimeDomain::EventTime, &key, cleanup);
            }
        }
        self.fire(fired, out)?;
        self.context.emit_late(late, self.config.late_output.as_deref(), out)
    }
}
