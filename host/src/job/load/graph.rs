//! The dataflow graph: uids, inputs, cycles, topological order and the
//! partitioning of every edge.

use std::collections::HashMap;

use super::{Builder, Draft, DraftInput, DraftPartitioning};
use crate::job::spec::PartitionSpec;
use crate::plan::{Edge, Partitioning, Vertex, VertexKind};

impl Builder<'_> {
    /// Checks uids and inputs and orders the vertices so that every vertex
    /// follows its input.
    pub(super) fn order(&mut self, drafts: Vec<Draft>) -> Vec<Vertex> {
        let mut by_uid: HashMap<String, usize> = HashMap::new();
        for (index, draft) in drafts.iter().enumerate() {
            if draft.uid.is_empty() {
                self.errors
                    .push(self.line_error(draft.line, "uid", "must not be empty"));
            }
            if let Some(&first) = by_uid.get(&draft.uid) {
                self.errors.push(self.line_error(
                    draft.line,
                    "uid",
                    format!(
                        "duplicate uid `{}` (first used on line {})",
                        draft.uid, drafts[first].line
                    ),
                ));
            } else {
                by_uid.insert(draft.uid.clone(), index);
            }
        }
        let mut inputs: Vec<[Option<usize>; 2]> = vec![[None, None]; drafts.len()];
        for (index, draft) in drafts.iter().enumerate() {
            let declared = [(&draft.input, "input"), (&draft.second_input, "second_input")];
            for (slot, (input, name)) in declared.into_iter().enumerate() {
                let Some(DraftInput { uid: input, .. }) = input else {
                    continue;
                };
                match by_uid.get(input.get_ref()) {
                    Some(&from) if drafts[from].is_sink => self.errors.push(self.locator.error(
                        input.span(),
                        format!("`{}` → {name}", draft.uid),
                        format!("`{}` is a sink; sinks have no output", input.get_ref()),
                    )),
                    Some(&from) => inputs[index][slot] = Some(from),
                    None => {
                        let mut known: Vec<&str> =
                            drafts.iter().filter(|d| !d.is_sink).map(|d| d.uid.as_str()).collect();
                        known.sort_unstable();
                        self.errors.push(self.locator.error(
                            input.span(),
                            format!("`{}` → {name}", draft.uid),
                            format!(
                                "no source or operator has uid `{}` (known: {})",
                                input.get_ref(),
                                known.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        // Topological order: depth first over the inputs (two at most).
        let mut order = Vec::with_capacity(drafts.len());
        let mut state = vec![0u8; drafts.len()]; // 0 new, 1 visiting, 2 done
        for start in 0..drafts.len() {
            // (vertex, next input slot to visit)
            let mut stack = vec![(start, 0usize)];
            while let Some(&mut (index, ref mut slot)) = stack.last_mut() {
                if *slot == 0 {
                    match state[index] {
                        2 => {
                            stack.pop();
                            continue;
                        }
                        1 => {
                            self.errors.push(self.line_error(
                                drafts[index].line,
                                "input",
                                format!("`{}` is part of a cycle of inputs", drafts[index].uid),
                            ));
                            stack.pop();
                            continue;
                        }
                        _ => state[index] = 1,
                    }
                }
                if *slot < 2 {
                    let next = inputs[index][*slot];
                    *slot += 1;
                    if let Some(from) = next
                        && state[from] != 2
                    {
                        if state[from] == 1 {
                            self.errors.push(self.line_error(
                                drafts[from].line,
                                "input",
                                format!("`{}` is part of a cycle of inputs", drafts[from].uid),
                            ));
                        } else {
                            stack.push((from, 0));
                        }
                    }
                    continue;
                }
                state[index] = 2;
                order.push(index);
                stack.pop();
            }
        }
        let position: HashMap<usize, usize> = order.iter().enumerate().map(|(pos, &index)| (index, pos)).collect();
        let mut slots: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
        let mut vertices = Vec::with_capacity(order.len());
        for (pos, &index) in order.iter().enumerate() {
            let Some(draft) = slots[index].take() else {
                continue;
            };
            let mut edges = [draft.input, draft.second_input]
                .into_iter()
                .zip(inputs[index])
                .map(|(input, from)| {
                    let (
                        Some(from),
                        Some(DraftInput {
                            partitioning,
                            side_output,
                            ..
                        }),
                    ) = (from, input)
                    else {
                        return None;
                    };
                    let upstream_parallelism = vertices.get(position[&from]).map_or(1, |v: &Vertex| v.parallelism);
                    Some(Edge {
                        from: position[&from],
                        partitioning: self.partitioning(
                            partitioning,
                            upstream_parallelism,
                            &draft.uid,
                            draft.parallelism,
                        ),
                        side_output,
                    })
                });
            let input = edges.next().flatten();
            let mut kind = draft.kind;
            if let (VertexKind::Operator(operator), Some(second)) = (&mut kind, edges.next().flatten())
                && let Some(slot) = operator.second_input_mut()
            {
                *slot = second;
            }
            vertices.push(Vertex {
                index: pos,
                uid: draft.uid,
                parallelism: draft.parallelism,
                kind,
                input,
                watermarks: draft.watermarks,
            });
        }
        vertices
    }

    fn partitioning(
        &mut self,
        draft: Option<DraftPartitioning>,
        upstream_parallelism: u32,
        uid: &str,
        parallelism: u32,
    ) -> Partitioning {
        match draft {
            Some(DraftPartitioning::KeyBy(selector)) => Partitioning::KeyBy(selector),
            Some(DraftPartitioning::Explicit(spec)) => match spec.get_ref() {
                PartitionSpec::Forward if upstream_parallelism != parallelism => {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("operator `{uid}` → partition"),
                        format!(
                            "forward needs equal parallelism, but the input has {upstream_parallelism} subtasks and this operator {parallelism}"
                        ),
                    ));
                    Partitioning::Rebalance
                }
                PartitionSpec::Forward => Partitioning::Forward,
                PartitionSpec::Rebalance => Partitioning::Rebalance,
                PartitionSpec::Broadcast => Partitioning::Broadcast,
            },
            None if upstream_parallelism == parallelism => Partitioning::Forward,
            None => Partitioning::Rebalance,
        }
    }
}
