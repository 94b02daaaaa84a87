//! Version 1 of a small stateful module, for the hot-swap tests: per key,
//! a count, the values seen and how often each value was seen.
//!
//! Input records are comma-separated text; the key is their first field
//! (key selector `key`) or their second (`second`), and the value is the last field
//! as a `u32` (0 if it is not one). Per record it emits
//! `key,count,sum,distinct`: the key's count of records, the sum of its
//! values and its number of distinct values.

use weir_sdk::{
    Context, Error, KeySelector, KeyWriter, KeyedProcessFunction, ListState, MapState, OpenContext, Record, Result,
    TaskInfo, ValueState,
};

/// Keys a record by its comma-separated field `N`.
pub struct Key<const N: usize>;

impl<const N: usize> KeySelector for Key<N> {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        let line = record.payload_str()?;
        let field = line
            .split(',')
            .nth(N)
            .ok_or_else(|| Error::new(format!("no field {N}")))?;
        key.write_bytes(field.as_bytes());
        Ok(())
    }
}

/// The value of a record: its last field as a `u32`, or 0.
fn value(record: &Record<'_>) -> Result<u32> {
    let line = record.payload_str()?;
    Ok(line.rsplit(',').next().and_then(|v| v.parse().ok()).unwrap_or(0))
}

/// Counts per key (v1 state: `u32` count, `u32` values, `u32 -> u32` map).
pub struct Count {
    count: ValueState<u32>,
    values: ListState<u32>,
    seen: MapState<u32, u32>,
}

impl KeyedProcessFunction for Count {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            count: ctx.value_state("count"),
            values: ctx.list_state("values"),
            seen: ctx.map_state("seen"),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let value = value(record)?;
        let count = self.count.get()?.unwrap_or(0) + 1;
        self.count.set(&count)?;
        self.values.add(&value)?;
        let seen = self.seen.get(&value)?.unwrap_or(0) + 1;
        self.seen.put(&value, &seen)?;
        let sum: u64 = self.values.get()?.iter().map(|v| u64::from(*v)).sum();
        let distinct = self.seen.entries()?.len();
        let key = std::str::from_utf8(ctx.key()).map_err(|_| Error::new("key is not UTF-8"))?;
        ctx.emit(format!("{key},{count},{sum},{distinct}").as_bytes());
        Ok(())
    }
}

weir_sdk::export_functions! {
    key_selector "key" => Key<0>,
    key_selector "second" => Key<1>,
    keyed_process "count" => Count,
}
