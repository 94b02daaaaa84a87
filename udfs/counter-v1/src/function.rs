// The functions of `counter-v1`, shared with `counter-v1b` (which includes
// this file with its own `Last`): each crate defines `Last` and
// `Last::record(value, count)`.

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

/// Counts per key (v1 state: `u32` count, `u32` values, `u32 -> u32` map,
/// and the key's last record as a [`Last`], read back per record so that a
/// stored `Last` that no longer decodes fails the record). The parameter
/// `last_schema` sets the schema `last` declares.
pub struct Count {
    count: ValueState<u32>,
    values: ListState<u32>,
    seen: MapState<u32, u32>,
    last: ValueState<Last>,
}

impl KeyedProcessFunction for Count {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        // For the test of what a schema that names the type alone let
        // through: declare `last`'s schema by hand.
        if let Some(schema) = ctx.task().param("last_schema") {
            ctx.set_state_schema("last", schema);
        }
        Ok(Self {
            count: ctx.value_state("count"),
            values: ctx.list_state("values"),
            seen: ctx.map_state("seen"),
            last: ctx.value_state("last"),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let value = value(record)?;
        let count = self.count.get()?.unwrap_or(0) + 1;
        self.count.set(&count)?;
        self.values.add(&value)?;
        let seen = self.seen.get(&value)?.unwrap_or(0) + 1;
        self.seen.put(&value, &seen)?;
        self.last.get()?;
        self.last.set(&Last::record(value, count))?;
        let sum: u64 = self.values.get()?.iter().map(|v| u64::from(*v)).sum();
        let distinct = self.seen.entries()?.len();
        let key = std::str::from_utf8(ctx.key()).map_err(|_| Error::new("key is not UTF-8"))?;
        ctx.emit(format!("{key},{count},{sum},{distinct}").as_bytes());
        Ok(())
    }
}
