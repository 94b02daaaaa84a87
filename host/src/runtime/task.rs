//! The loops that subtasks run.
//!
//! An operator subtask selects over its input channels, hands batches to its
//! operator, and tracks one watermark per channel: the operator's watermark
//! is the minimum over channels that have not ended, and it only moves
//! forward. When every channel has ended, the watermark becomes the maximum
//! (so every event-time timer fires), the operator closes, and the subtask
//! tells its consumers it has ended.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Select};

use super::TaskError;
use super::batch::{EventTime, RecordBatch};
use super::message::Message;
use super::output::Output;
use crate::connectors::{Source, SourceStatus};
use crate::operators::Operator;

/// Runs a source subtask until its input ends or the job is cancelled.
/// (Its output is counted by `out`.)
pub fn run_source(
    uid: &str,
    source: &mut dyn Source,
    out: &mut Output,
    batch_size: usize,
    cancel: &AtomicBool,
) -> Result<(), TaskError> {
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(TaskError::Cancelled);
        }
        let mut batch = RecordBatch::with_capacity(batch_size, batch_size * 48);
        let status = source
            .next_batch(&mut batch, batch_size)
            .map_err(|source| TaskError::Connector {
                vertex: format!("source `{uid}`"),
                source,
            })?;
        if !batch.is_empty() {
            out.emit(batch)?;
        }
        if status == SourceStatus::End {
            break;
        }
    }
    out.watermark(EventTime::MAX)?;
    out.end()
}

/// Per-channel progress of an operator subtask's input.
struct InputState {
    watermarks: Vec<EventTime>,
    ended: Vec<bool>,
    current: EventTime,
}

impl InputState {
    fn new(channels: usize) -> Self {
        Self {
            watermarks: vec![EventTime::MIN; channels],
            ended: vec![false; channels],
            current: EventTime::MIN,
        }
    }

    fn open_channels(&self) -> usize {
        self.ended.iter().filter(|ended| !**ended).count()
    }

    /// The new operator watermark, if it advanced.
    fn advance(&mut self) -> Option<EventTime> {
        let minimum = self
            .watermarks
            .iter()
            .zip(&self.ended)
            .filter(|(_, ended)| !**ended)
            .map(|(w, _)| *w)
            .min()
            .unwrap_or(EventTime::MAX);
        (minimum > self.current).then(|| {
            self.current = minimum;
            minimum
        })
    }
}

/// Runs an operator subtask until all its inputs end.
pub fn run_operator(
    operator: &mut dyn Operator,
    inputs: &[Receiver<Message>],
    out: &mut Output,
) -> Result<(), TaskError> {
    operator.open()?;
    let mut state = InputState::new(inputs.len());
    while state.open_channels() > 0 {
        let mut select = Select::new();
        let mut channel_of = Vec::with_capacity(inputs.len());
        for (channel, input) in inputs.iter().enumerate() {
            if !state.ended[channel] {
                select.recv(input);
                channel_of.push(channel);
            }
        }
        let ready = match operator.next_processing_time() {
            Some(deadline) => {
                let wait = deadline.saturating_sub(crate::time::now_ms()).max(0) as u64;
                match select.select_timeout(Duration::from_millis(wait)) {
                    Ok(ready) => ready,
                    Err(_) => {
                        operator.on_processing_time(crate::time::now_ms(), out)?;
                        continue;
                    }
                }
            }
            None => select.select(),
        };
        let channel = channel_of[ready.index()];
        let message = ready
            .recv(&inputs[channel])
            .map_err(|_| TaskError::Cancelled)?;
        match message {
            Message::Data(batch) => operator.process_batch(batch, out)?,
            Message::Watermark(watermark) => {
                let slot = &mut state.watermarks[channel];
                *slot = (*slot).max(watermark);
                if let Some(watermark) = state.advance() {
                    operator.on_watermark(watermark, out)?;
                    out.watermark(watermark)?;
                }
            }
            Message::End => {
                state.ended[channel] = true;
                if let Some(watermark) = state.advance() {
                    operator.on_watermark(watermark, out)?;
                    out.watermark(watermark)?;
                }
            }
        }
    }
    operator.close(out)?;
    out.end()
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
}
