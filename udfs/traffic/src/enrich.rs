//! `enrich` (async map): each passing with its camera's road, from the
//! `cameras` lookup the job file declares (an HTTP service, say). The host
//! runs the lookups; the function only says what it needs and writes the
//! result.

use weir_sdk::{AsyncMap, Emitter, Error, Lookups, Map, Record, RecordWriter, Result, TaskInfo};

/// Copies a passing line, stamped with its `ts_ms` as event time (for
/// event-time jobs that keep the raw lines, such as `enrich`'s).
pub struct EventTime;

impl Map for EventTime {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let passing = crate::Passing::parse(record.payload())?;
        out.write_bytes(record.payload());
        out.set_timestamp(passing.ts_ms);
        Ok(())
    }
}

/// `ts_ms,camera_id,plate,speed_kmh` becomes `ts_ms,camera_id,plate,speed_kmh,road`,
/// where `road` is what the `cameras` lookup answered for `camera_id`
/// (`unknown` when it found nothing). A line that is not a passing goes to
/// the dead letters.
pub struct Enrich;

impl AsyncMap for Enrich {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn lookups(&mut self, record: &Record<'_>, lookups: &mut Lookups) -> Result<()> {
        let passing = crate::Passing::parse(record.payload())?;
        lookups.request("cameras", passing.camera_id().to_string());
        Ok(())
    }

    fn complete(&mut self, record: &Record<'_>, results: &[Option<Vec<u8>>], out: &mut Emitter<'_>) -> Result<()> {
        let road = match results {
            [Some(road)] => std::str::from_utf8(road).map_err(|_| Error::new("the camera's road is not UTF-8"))?,
            [None] => "unknown",
            _ => return Err(Error::new(format!("expected 1 lookup result, got {}", results.len()))),
        };
        let line = record.payload_str()?.trim_end_matches('\r');
        out.emit(format!("{line},{}", road.trim()).as_bytes());
        Ok(())
    }
}
