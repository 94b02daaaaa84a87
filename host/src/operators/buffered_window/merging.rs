//! Merging windows (sessions) of the buffered window operator: the windows
//! of a batch's records and the windows in state that overlap or touch
//! merge, as Flink's merging assigners do; element lists concatenate and
//! accumulators merge through the guest, one call per round.

use std::collections::HashMap;

use super::{BufferedWindowOperator, Target, WindowFunction};
use crate::exchange::TaskError;
use crate::record::batch::RecordBatch;
use crate::time::windows::Window;
use crate::wasm::instance::Accumulators;

/// A window of a key's merge: (window, its contents in state, or the
/// record of the batch that opens it).
type Member = (Window, Option<Vec<u8>>, Option<usize>);

impl BufferedWindowOperator {
    /// Session windows: the windows of the batch's records and the windows
    /// in state that overlap or touch merge, as Flink's merging assigners do.
    /// A record whose session would be late and merges with nothing in
    /// state is late.
    pub(super) fn merged_targets(
        &mut self,
        batch: &RecordBatch,
        late: &mut RecordBatch,
    ) -> Result<Vec<Target>, TaskError> {
        let mut keys: Vec<(&[u8], Vec<usize>)> = Vec::new();
        let mut key_index: HashMap<&[u8], usize> = HashMap::new();
        for i in 0..batch.len() {
            let key = batch.key(i).unwrap_or_default();
            let slot = *key_index.entry(key).or_insert_with(|| {
                keys.push((key, Vec::new()));
                keys.len() - 1
            });
            keys[slot].1.push(i);
        }
        let mut targets = Vec::new();
        // (target, the contents of the stored windows it merges)
        let mut merges: Vec<(usize, Vec<Vec<u8>>)> = Vec::new();
        for (key, records) in keys {
            self.context.backend.set_current_key(key);
            let mut items: Vec<Member> = Vec::new();
            for (user_key, contents) in self
                .context
                .backend
                .entries(self.buffer)
                .map_err(|e| self.context.state_error(e))?
            {
                if let Some(window) = Window::from_key(&user_key) {
                    items.push((window, Some(contents), None));
                }
            }
            if self.triggered {
                // A window its trigger purged still exists (empty) while
                // it has trigger state.
                for (user_key, _) in self
                    .context
                    .backend
                    .entries(self.trigger_state)
                    .map_err(|e| self.context.state_error(e))?
                {
                    if let Some(window) = Window::from_key(&user_key)
                        && !items.iter().any(|(w, _, _)| *w == window)
                    {
                        items.push((window, Some(Vec::new()), None));
                    }
                }
            }
            for &i in &records {
                self.parts
                    .config
                    .assigner
                    .assign(batch.timestamps[i], |window| items.push((window, None, Some(i))));
            }
            // Stored windows first on equal windows, so their elements come
            // before the batch's.
            items.sort_by_key(|(window, contents, _)| (window.start, window.end, contents.is_none()));
            let mut groups: Vec<(Window, Vec<Member>)> = Vec::new();
            for item in items {
                match groups.last_mut() {
                    Some((window, members)) if window.intersects(item.0) => {
                        *window = window.cover(item.0);
                        members.push(item);
                    }
                    _ => groups.push((item.0, vec![item])),
                }
            }
            for (window, members) in groups {
                let mut target = Target {
                    key: key.to_vec(),
                    window,
                    contents: Vec::new(),
                    whole: self.accumulating,
                    records: Vec::new(),
                    replaced: Vec::new(),
                };
                let mut stored = Vec::new();
                for (member, contents, record) in members {
                    if let Some(contents) = contents {
                        target.replaced.push(member);
                        stored.push(contents);
                    }
                    target.records.extend(record);
                }
                if target.records.is_empty() {
                    continue; // a stored window the batch does not touch
                }
                if stored.is_empty() && self.is_late(window) {
                    for i in target.records {
                        late.push_record(batch.get(i));
                    }
                    continue;
                }
                if target.replaced == [window] {
                    // The batch only adds to a stored window.
                    target.replaced.clear();
                    if self.accumulating {
                        target.contents = stored.pop().unwrap_or_default();
                    }
                } else if !stored.is_empty() {
                    if !self.accumulating {
                        stored.clear();
                        for old in target.replaced.clone() {
                            stored.push(self.load(old)?);
                        }
                    }
                    target.whole = true;
                    merges.push((targets.len(), stored));
                }
                targets.push(target);
            }
        }
        let (slots, lists): (Vec<usize>, Vec<Vec<Vec<u8>>>) = merges.into_iter().unzip();
        let merged = self.merge_contents(lists)?;
        for (t, contents) in slots.into_iter().zip(merged) {
            targets[t].contents = contents;
        }
        Ok(targets)
    }

    /// Merges the contents of windows: element lists concatenate;
    /// accumulators merge pairwise through the guest, one call per round.
    fn merge_contents(&mut self, lists: Vec<Vec<Vec<u8>>>) -> Result<Vec<Vec<u8>>, TaskError> {
        if !self.accumulating {
            return Ok(lists.into_iter().map(|list| list.concat()).collect());
        }
        let WindowFunction::Aggregate { aggregate, .. } = &mut self.parts.function else {
            return Ok(lists.into_iter().map(|list| list.concat()).collect());
        };
        let mut merged: Vec<Vec<u8>> = lists.iter().map(|l| l.first().cloned().unwrap_or_default()).collect();
        let mut next = vec![1usize; lists.len()];
        loop {
            let pending: Vec<usize> = (0..lists.len()).filter(|&t| next[t] < lists[t].len()).collect();
            if pending.is_empty() {
                return Ok(merged);
            }
            let (mut a, mut b) = (Accumulators::default(), Accumulators::default());
            for &t in &pending {
                a.push(&merged[t]);
                b.push(&lists[t][next[t]]);
                next[t] += 1;
            }
            let result = aggregate.aggregate_merge(a, b)?;
            for (i, &t) in pending.iter().enumerate() {
                merged[t] = result.get(i).to_vec();
            }
        }
    }
}
