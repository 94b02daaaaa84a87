//! A flat-map function with operator list state, for the tests of its
//! redistribution on a rescale.

use weir_sdk::{Emitter, Error, FlatMap, OperatorListState, Record, Result, TaskInfo};

/// Commands: `add X` appends `X` to the split list `items` and to the union
/// list `all`, and emits `added,X`; `dump` emits `<subtask>,items,<a|b|…>`
/// and `<subtask>,all,<a|b|…>` (the lists in order).
pub struct OperatorStateProbe {
    items: OperatorListState<String>,
    all: OperatorListState<String>,
    subtask: u32,
}

impl FlatMap for OperatorStateProbe {
    fn open(task: &TaskInfo) -> Result<Self> {
        Ok(Self {
            items: OperatorListState::split("items"),
            all: OperatorListState::union("all"),
            subtask: task.subtask_index,
        })
    }

    fn flat_map(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<()> {
        let text = record.payload_str()?;
        if let Some(item) = text.strip_prefix("add ") {
            self.items.add(&item.to_string())?;
            self.all.add(&item.to_string())?;
            out.emit(format!("added,{item}").as_bytes());
        } else if text == "dump" {
            let subtask = self.subtask;
            out.emit(format!("{subtask},items,{}", self.items.get()?.join("|")).as_bytes());
            out.emit(format!("{subtask},all,{}", self.all.get()?.join("|")).as_bytes());
        } else {
            return Err(Error::new(format!("unknown command: {text}")));
        }
        Ok(())
    }
}
