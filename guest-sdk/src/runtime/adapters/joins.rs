//! Type erasure for the two-input kinds: join functions and keyed co-process
//! functions.

use super::{Instance, for_each_keyed_record, for_each_timer, records};
use crate::__bindings::exports::weir::udf::join as wit_join;
use crate::__bindings::weir::udf::types as wit;
use crate::output::Output;
use crate::record::{Column, check_len};
use crate::{Emitter, JoinFunction, KeyedCoProcessFunction, OpenContext, Record, TaskInfo};

/// A join function.
pub(crate) trait DynJoin {
    /// Joins every pair of a batch of pairs.
    fn join(&mut self, pairs: wit_join::JoinPairs, out: &mut Output) -> wit::Output;
}

/// A keyed co-process function.
pub(crate) trait DynKeyedCoProcess {
    /// Processes a batch of keyed records of input `input`.
    fn process(
        &mut self,
        clock: &wit::BatchContext,
        input: u32,
        batch: wit::KeyedBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output;

    /// Handles timers that fired.
    fn on_timers(
        &mut self,
        clock: &wit::BatchContext,
        timers: wit::TimerBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output;
}

/// Opens a [`JoinFunction`].
pub(crate) fn open_join<F: JoinFunction>(task: &TaskInfo) -> crate::Result<Instance> {
    Ok(Instance::Join(Box::new(JoinFn(F::open(task)?))))
}

/// Opens a [`KeyedCoProcessFunction`] and its state.
pub(crate) fn open_keyed_co_process<F: KeyedCoProcessFunction>(task: &TaskInfo) -> crate::Result<Instance> {
    let function = F::open(&mut OpenContext::new(task))?;
    Ok(Instance::KeyedCoProcess(Box::new(KeyedCoProcessFn(function))))
}

struct JoinFn<F>(F);

impl<F: JoinFunction> DynJoin for JoinFn<F> {
    fn join(&mut self, pairs: wit_join::JoinPairs, out: &mut Output) -> wit::Output {
        let count = pairs.left.ends.len();
        check_len("right records", pairs.right.ends.len(), count);
        check_len("keys", pairs.key_ends.len(), count);
        check_len("pair timestamps", pairs.timestamps.len(), count);
        check_len("right timestamps", pairs.right.timestamps.len(), count);
        let keys = Column::new(&pairs.keys, &pairs.key_ends);
        let rights = Column::new(&pairs.right.data, &pairs.right.ends);
        out.begin();
        let lefts = records(&pairs.left).zip(rights.iter()).zip(keys.iter());
        for (((left, right), key), (&timestamp, &right_timestamp)) in
            lefts.zip(pairs.timestamps.iter().zip(&pairs.right.timestamps))
        {
            let index = left.index();
            let left = Record::new(left.payload(), left.timestamp(), Some(key), index);
            let right = Record::new(right, right_timestamp, Some(key), index);
            let mark = out.mark();
            if let Err(error) = self.0.join(key, &left, &right, &mut Emitter::new(out, timestamp)) {
                out.rollback(mark);
                out.reject(index, error);
            }
        }
        out.finish()
    }
}

struct KeyedCoProcessFn<F>(F);

impl<F: KeyedCoProcessFunction> DynKeyedCoProcess for KeyedCoProcessFn<F> {
    fn process(
        &mut self,
        batch: &wit::BatchContext,
        input: u32,
        records_in: wit::KeyedBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output {
        for_each_keyed_record(batch, &records_in, task, out, |record, ctx| match input {
            0 => self.0.process_element1(record, ctx),
            1 => self.0.process_element2(record, ctx),
            other => panic!("the host sent records of input {other}; a co-process function has inputs 0 and 1"),
        })
    }

    fn on_timers(
        &mut self,
        batch: &wit::BatchContext,
        timers: wit::TimerBatch,
        task: &TaskInfo,
        out: &mut Output,
    ) -> wit::Output {
        for_each_timer(batch, &timers, task, out, |timer, ctx| self.0.on_timer(timer, ctx))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Result};

    /// `key:left+right` at the pair's timestamp, plus `sum` at the sum of
    /// the two records' timestamps; a right record `bad` is rejected.
    struct Concat;

    impl JoinFunction for Concat {
        fn open(_task: &TaskInfo) -> Result<Self> {
            Ok(Self)
        }

        fn join(&mut self, key: &[u8], left: &Record<'_>, right: &Record<'_>, out: &mut Emitter<'_>) -> Result<()> {
            out.emit(b"dropped when rejected");
            if right.payload() == b"bad" {
                return Err(Error::new("bad pair"));
            }
            let line = [key, b":", left.payload(), b"+", right.payload()].concat();
            out.emit(&line);
            out.emit_with_timestamp(b"sum", left.timestamp() + right.timestamp());
            Ok(())
        }
    }

    fn batch(records: &[(&str, i64)]) -> wit::Batch {
        let (mut data, mut ends, mut timestamps) = (Vec::new(), Vec::new(), Vec::new());
        for (payload, timestamp) in records {
            data.extend_from_slice(payload.as_bytes());
            ends.push(u32::try_from(data.len()).expect("small"));
            timestamps.push(*timestamp);
        }
        wit::Batch { data, ends, timestamps }
    }

    #[test]
    fn joins_every_pair_at_its_timestamp_and_rejects_pairs_by_index() {
        let pairs = wit_join::JoinPairs {
            left: batch(&[("a", 1), ("b", 2), ("c", 3)]),
            right: batch(&[("x", 10), ("bad", 20), ("y", 30)]),
            keys: b"k1k2k3".to_vec(),
            key_ends: vec![2, 4, 6],
            timestamps: vec![100, 200, 300],
        };
        let output = JoinFn(Concat).join(pairs, &mut Output::default());
        let main = &output.main;
        let lines: Vec<&[u8]> = Column::new(&main.data, &main.ends).iter().collect();
        assert_eq!(
            lines,
            [
                &b"dropped when rejected"[..],
                b"k1:a+x",
                b"sum",
                b"dropped when rejected",
                b"k3:c+y",
                b"sum"
            ]
        );
        assert_eq!(main.timestamps, [100, 100, 11, 300, 300, 33]);
        let errors: Vec<(u32, &str)> = output.errors.iter().map(|e| (e.index, e.reason.as_str())).collect();
        assert_eq!(errors, [(1, "bad pair")]);
    }

    #[test]
    #[should_panic(expected = "malformed batch from the host: 1 right records for 2 records")]
    fn refuses_columns_of_different_lengths() {
        let pairs = wit_join::JoinPairs {
            left: batch(&[("a", 1), ("b", 2)]),
            right: batch(&[("x", 10)]),
            keys: b"kk".to_vec(),
            key_ends: vec![1, 2],
            timestamps: vec![1, 2],
        };
        JoinFn(Concat).join(pairs, &mut Output::default());
    }
}
