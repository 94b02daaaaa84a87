//! A keyed co-process function with broadcast state, for the tests of the
//! broadcast state pattern: speed limits per camera arrive on a broadcast
//! input and are checked against the passings of the keyed input.

use std::io::Write as _;

use weir_sdk::{BroadcastState, Context, Error, KeyedCoProcessFunction, OpenContext, Record, Result, ValueState};

/// Input 0: passings `camera ts speed`, keyed by camera; each becomes
/// `camera,ts,speed,limit,violations` (`limit` is `none` while the camera
/// has no rule; `violations` counts the camera's passings over its limit so
/// far). Input 1, broadcast: rules `camera limit` (or `camera -` to remove
/// the camera's rule), stored in the broadcast state `limits`; subtask 0
/// acknowledges each with `rule,camera,limit`.
pub struct SpeedLimits {
    limits: BroadcastState<String, u32>,
    violations: ValueState<u64>,
    acknowledge: bool,
    line: Vec<u8>,
}

impl KeyedCoProcessFunction for SpeedLimits {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            limits: ctx.broadcast_state("limits"),
            violations: ctx.value_state("violations"),
            acknowledge: ctx.task().subtask_index == 0,
            line: Vec::new(),
        })
    }

    fn process_element1(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let text = record.payload_str()?;
        let fields: Vec<&str> = text.split(' ').collect();
        let [camera, ts, speed] = fields[..] else {
            return Err(Error::new(format!("expected `camera ts speed`, found \"{text}\"")));
        };
        let speed: u32 = speed
            .parse()
            .map_err(|_| Error::new(format!("bad speed in \"{text}\"")))?;
        let limit = self.limits.get(&camera.to_string())?;
        let mut violations = self.violations.get()?.unwrap_or(0);
        if limit.is_some_and(|limit| speed > limit) {
            violations += 1;
            self.violations.set(&violations)?;
        }
        self.line.clear();
        write!(self.line, "{camera},{ts},{speed},")?;
        match limit {
            Some(limit) => write!(self.line, "{limit}")?,
            None => self.line.extend_from_slice(b"none"),
        }
        write!(self.line, ",{violations}")?;
        ctx.emit(&self.line);
        Ok(())
    }

    fn process_element2(&mut self, record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let text = record.payload_str()?;
        let Some((camera, limit)) = text.split_once(' ') else {
            return Err(Error::new(format!("expected `camera limit`, found \"{text}\"")));
        };
        if limit == "-" {
            self.limits.remove(&camera.to_string())?;
        } else {
            let limit: u32 = limit
                .parse()
                .map_err(|_| Error::new(format!("bad limit in \"{text}\"")))?;
            self.limits.put(&camera.to_string(), &limit)?;
        }
        if self.acknowledge {
            ctx.emit(format!("rule,{camera},{limit}").as_bytes());
        }
        Ok(())
    }
}
