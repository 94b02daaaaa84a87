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

/// The key's last record, v2: its value and whether v1 wrote it (v1's
/// `Last` had only the value, under the same type name).
#[derive(weir_sdk::serde::Serialize, weir_sdk::serde::Deserialize)]
#[serde(crate = "weir_sdk::serde")]
pub struct Last {
    value: u32,
    from_v1: bool,
}

/// Counts per key (v2 state: `(count, count when migrated)`, `i64`
/// values, `u32 -> i64` map, [`Last`] read back per record). The parameter
/// `drop_seen = "true"` leaves the `seen` state out (distinct is then 0);
/// `count_schema` sets the schema `count` declares (instead of its type's
/// name and shape).
pub struct Count {
    count: ValueState<(u64, u64)>,
    values: ListState<i64>,
    seen: Option<MapState<u32, i64>>,
    last: ValueState<Last>,
}

impl KeyedProcessFunction for Count {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        let drop_seen = ctx.task().param("drop_seen") == Some("true");
        if let Some(schema) = ctx.task().param("count_schema") {
            ctx.set_state_schema("count", schema);
        }
        Ok(Self {
            count: ctx.value_state("count"),
            values: ctx.list_state("values"),
            seen: (!drop_seen).then(|| ctx.map_state("seen")),
            last: ctx.value_state("last"),
        })
    }

    fn process_element(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let value = value(record)?;
        let (count, migrated) = self.count.get()?.unwrap_or((0, 0));
        let count = count + 1;
        self.count.set(&(count, migrated))?;
        self.values.add(&i64::from(value))?;
        let distinct = match &self.seen {
            Some(seen) => {
                let n = seen.get(&value)?.unwrap_or(0) + 1;
                seen.put(&value, &n)?;
                seen.entries()?.len()
            }
            None => 0,
        };
        self.last.get()?;
        self.last.set(&Last { value, from_v1: false })?;
        let sum: i64 = self.values.get()?.iter().sum();
        let key = std::str::from_utf8(ctx.key()).map_err(|_| Error::new("key is not UTF-8"))?;
        ctx.emit(format!("{key},{count},{sum},{distinct},v2").as_bytes());
        Ok(())
    }
}
