//! The queue of an async operator: records in flight and the watermarks
//! between them, and which of them may leave now (Flink's
//! `OrderedStreamElementQueue` and `UnorderedStreamElementQueue`).
//!
//! Records enter in input order, each under an id, and are completed in any
//! order. In ordered mode only the head leaves, once completed, so output
//! follows input. In unordered mode any completed record before the first
//! watermark of the queue leaves at once; a watermark leaves when every
//! record before it has, and the records after it wait for it: no record
//! crosses a watermark either way.

use std::collections::VecDeque;

use super::config::AsyncMode;
use crate::record::batch::EventTime;

/// An element of the queue.
#[derive(Debug)]
enum Slot<T> {
    /// A record in flight (`None`) or completed.
    Record { id: u64, result: Option<T> },
    /// A watermark that arrived after the records before it.
    Watermark(EventTime),
}

/// What may leave the queue, in the order it must be emitted.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ready<T> {
    /// A completed record.
    Record(u64, T),
    /// A watermark whose records have all left.
    Watermark(EventTime),
}

/// Records in flight and watermarks, in input order.
#[derive(Debug)]
pub(crate) struct CompletionQueue<T> {
    mode: AsyncMode,
    slots: VecDeque<Slot<T>>,
    records: usize,
}

impl<T> CompletionQueue<T> {
    /// An empty queue emitting in `mode`.
    pub(crate) fn new(mode: AsyncMode) -> Self {
        Self {
            mode,
            slots: VecDeque::new(),
            records: 0,
        }
    }

    /// Records in the queue (in flight or completed, not yet left).
    pub(crate) fn records(&self) -> usize {
        self.records
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The ids of the queued records, in input order.
    pub(crate) fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.slots.iter().filter_map(|slot| match slot {
            Slot::Record { id, .. } => Some(*id),
            Slot::Watermark(_) => None,
        })
    }

    /// Queues record `id`, in flight.
    pub(crate) fn push_record(&mut self, id: u64) {
        self.slots.push_back(Slot::Record { id, result: None });
        self.records += 1;
    }

    /// Queues a watermark after the records queued so far.
    pub(crate) fn push_watermark(&mut self, watermark: EventTime) {
        self.slots.push_back(Slot::Watermark(watermark));
    }

    /// Completes record `id` with `result`; false when no record in flight
    /// has that id.
    pub(crate) fn complete(&mut self, id: u64, result: T) -> bool {
        for slot in &mut self.slots {
            if let Slot::Record {
                id: queued,
                result: slot_result,
            } = slot
                && *queued == id
                && slot_result.is_none()
            {
                *slot_result = Some(result);
                return true;
            }
        }
        false
    }

    /// Takes what may leave now, in emission order, into `ready`.
    pub(crate) fn pop_ready(&mut self, ready: &mut Vec<Ready<T>>) {
        loop {
            match self.slots.front() {
                None => return,
                Some(Slot::Watermark(watermark)) => {
                    ready.push(Ready::Watermark(*watermark));
                    self.slots.pop_front();
                }
                Some(Slot::Record { result: Some(_), .. }) => {
                    if let Some(Slot::Record {
                        id,
                        result: Some(result),
                    }) = self.slots.pop_front()
                    {
                        self.records -= 1;
                        ready.push(Ready::Record(id, result));
                    }
                }
                Some(Slot::Record { result: None, .. }) => match self.mode {
                    AsyncMode::Ordered => return,
                    AsyncMode::Unordered => {
                        self.pop_completed_before_watermark(ready);
                        return;
                    }
                },
            }
        }
    }

    /// Unordered mode, the head in flight: takes the completed records
    /// before the first watermark.
    fn pop_completed_before_watermark(&mut self, ready: &mut Vec<Ready<T>>) {
        let end = self
            .slots
            .iter()
            .position(|slot| matches!(slot, Slot::Watermark(_)))
            .unwrap_or(self.slots.len());
        let mut kept = VecDeque::with_capacity(self.slots.len());
        for (position, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            match slot {
                Slot::Record {
                    id,
                    result: Some(result),
                } if position < end => {
                    self.records -= 1;
                    ready.push(Ready::Record(id, result));
                }
                other => kept.push_back(other),
            }
        }
        self.slots = kept;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(queue: &mut CompletionQueue<&'static str>) -> Vec<Ready<&'static str>> {
        let mut ready = Vec::new();
        queue.pop_ready(&mut ready);
        ready
    }

    #[test]
    fn ordered_mode_emits_in_input_order_and_watermarks_after_their_records() {
        let mut queue = CompletionQueue::new(AsyncMode::Ordered);
        queue.push_record(1);
        queue.push_record(2);
        queue.push_watermark(10);
        queue.push_record(3);
        assert!(queue.complete(3, "c"));
        assert!(queue.complete(2, "b"));
        assert_eq!(drain(&mut queue), vec![], "record 1 is still in flight");
        assert_eq!(queue.records(), 3);
        assert!(queue.complete(1, "a"));
        assert_eq!(
            drain(&mut queue),
            vec![
                Ready::Record(1, "a"),
                Ready::Record(2, "b"),
                Ready::Watermark(10),
                Ready::Record(3, "c")
            ]
        );
        assert!(queue.is_empty());
        assert_eq!(queue.records(), 0);
        assert!(!queue.complete(1, "again"), "record 1 has left");
    }

    #[test]
    fn unordered_mode_emits_as_completed_but_never_across_a_watermark() {
        let mut queue = CompletionQueue::new(AsyncMode::Unordered);
        for id in 1..=3 {
            queue.push_record(id);
        }
        queue.push_watermark(10);
        queue.push_record(4);
        queue.push_record(5);
        queue.push_watermark(20);
        assert!(queue.complete(2, "b"));
        assert!(queue.complete(5, "e"));
        assert_eq!(
            drain(&mut queue),
            vec![Ready::Record(2, "b")],
            "5 waits behind watermark 10"
        );
        assert!(queue.complete(3, "c"));
        assert!(queue.complete(1, "a"));
        assert_eq!(
            drain(&mut queue),
            vec![
                Ready::Record(1, "a"),
                Ready::Record(3, "c"),
                Ready::Watermark(10),
                Ready::Record(5, "e")
            ]
        );
        assert_eq!(queue.ids().collect::<Vec<_>>(), vec![4]);
        assert!(queue.complete(4, "d"));
        assert_eq!(drain(&mut queue), vec![Ready::Record(4, "d"), Ready::Watermark(20)]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_watermark_alone_leaves_at_once() {
        for mode in [AsyncMode::Ordered, AsyncMode::Unordered] {
            let mut queue: CompletionQueue<&'static str> = CompletionQueue::new(mode);
            queue.push_watermark(5);
            assert_eq!(drain(&mut queue), vec![Ready::Watermark(5)]);
        }
    }
}
