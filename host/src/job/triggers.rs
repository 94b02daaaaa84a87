//! The `trigger` and `window.time` fields of a window operator: which
//! built-in trigger a job asks for, and which combinations of trigger,
//! window and clock make sense.
//!
//! Kept apart from `load.rs` so that the rules (and their messages) are in
//! one place. Flink allows a few combinations that can never fire or that
//! mix clocks in ways that lose data silently (an event-time trigger on
//! processing-time windows, a continuous processing-time trigger on
//! event-time windows, any time trigger on a global window); Weir refuses
//! them with a message that names the field.

use super::spec::{TriggerKind, TriggerSpec, WindowSpec, WindowTimeSpec};
use crate::plan::Trigger;
use crate::time::TimeDomain;
use crate::time::windows::WindowAssigner;

/// A problem with a window's configuration: the field (below `operator
/// `uid``) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TriggerProblem {
    /// The field, e.g. `trigger → interval_ms`.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

fn problem(field: &'static str, message: impl Into<String>) -> TriggerProblem {
    TriggerProblem {
        field,
        message: message.into(),
    }
}

/// The clock of a window spec (`time`, default event time).
pub(crate) fn window_time(spec: &WindowSpec) -> TimeDomain {
    match spec.time {
        Some(WindowTimeSpec::Processing) => TimeDomain::ProcessingTime,
        Some(WindowTimeSpec::Event) | None => TimeDomain::EventTime,
    }
}

/// The trigger a spec asks for; without a spec, the window's default (Flink's
/// `getDefaultTrigger`: event time, or processing time for processing-time
/// windows).
pub(crate) fn trigger(spec: Option<&TriggerSpec>, time: TimeDomain) -> Result<Trigger, TriggerProblem> {
    let Some(spec) = spec else {
        return Ok(match time {
            TimeDomain::EventTime => Trigger::EventTime,
            TimeDomain::ProcessingTime => Trigger::ProcessingTime { purge: false },
        });
    };
    let purge = spec.purge.unwrap_or(false);
    let continuous = matches!(
        spec.kind,
        TriggerKind::ContinuousEventTime | TriggerKind::ContinuousProcessingTime
    );
    if spec.interval_ms.is_some() && !continuous {
        return Err(problem(
            "trigger → interval_ms",
            "only the continuous triggers (`continuous-event-time`, `continuous-processing-time`) take `interval_ms`",
        ));
    }
    if spec.count.is_some() && spec.kind != TriggerKind::Count {
        return Err(problem("trigger → count", "only a `count` trigger takes `count`"));
    }
    let interval = || {
        spec.interval_ms
            .and_then(|i| i64::try_from(i).ok())
            .filter(|i| *i > 0)
            .ok_or_else(|| {
                problem(
                    "trigger → interval_ms",
                    "a continuous trigger needs `interval_ms` of at least 1",
                )
            })
    };
    Ok(match spec.kind {
        TriggerKind::EventTime if purge => Trigger::PurgingEventTime,
        TriggerKind::EventTime => Trigger::EventTime,
        TriggerKind::Count => match spec.count.filter(|c| *c > 0) {
            Some(count) => Trigger::Count { count, purge },
            None => {
                return Err(problem(
                    "trigger → count",
                    "a count trigger needs `count` of at least 1",
                ));
            }
        },
        TriggerKind::ProcessingTime => Trigger::ProcessingTime { purge },
        TriggerKind::ContinuousEventTime => Trigger::ContinuousEventTime {
            interval_ms: interval()?,
            purge,
        },
        TriggerKind::ContinuousProcessingTime => Trigger::ContinuousProcessingTime {
            interval_ms: interval()?,
            purge,
        },
        TriggerKind::Wasm if purge => {
            return Err(problem(
                "trigger → purge",
                "a wasm trigger decides itself when to purge (`fire-and-purge`): remove `purge`",
            ));
        }
        TriggerKind::Wasm => Trigger::Wasm,
    })
}

/// Checks that `trigger` can fire `assigner`'s windows in `time`.
pub(crate) fn check(
    assigner: WindowAssigner,
    time: TimeDomain,
    trigger: Trigger,
    allowed_lateness_ms: u64,
) -> Result<(), TriggerProblem> {
    let processing = time == TimeDomain::ProcessingTime;
    // Flink's `abs(offset) < size` (tumbling) and `abs(offset) < slide` (sliding).
    let offset = match assigner {
        WindowAssigner::Tumbling { size, offset } => Some((offset, size, "size")),
        WindowAssigner::Sliding { slide, offset, .. } => Some((offset, slide, "slide")),
        _ => None,
    };
    if let Some((offset, bound, what)) = offset
        && offset.unsigned_abs() >= bound.unsigned_abs()
    {
        return Err(problem(
            "window → offset_ms",
            format!("the offset must be smaller than the window's {what} ({bound}) in absolute value"),
        ));
    }
    if assigner == WindowAssigner::Global {
        if processing {
            return Err(problem(
                "window → time",
                "a global window holds all time, so it has no clock: remove `time`",
            ));
        }
        if trigger.is_time_based() {
            return Err(problem(
                "trigger",
                "a global window never ends, so it needs a trigger that fires it (`trigger = { type = \"count\", count = N }`)",
            ));
        }
    }
    if processing {
        if !matches!(
            trigger,
            Trigger::ProcessingTime { .. } | Trigger::ContinuousProcessingTime { .. } | Trigger::Wasm
        ) {
            return Err(problem(
                "trigger",
                "processing-time windows fire by the wall clock: use a `processing-time` or `continuous-processing-time` trigger",
            ));
        }
        if allowed_lateness_ms > 0 {
            return Err(problem(
                "allowed_lateness_ms",
                "processing-time windows are never late: allowed lateness applies to event-time windows only",
            ));
        }
    } else if matches!(trigger, Trigger::ContinuousProcessingTime { .. }) {
        return Err(problem(
            "trigger",
            "a continuous processing-time trigger fires up to the window's end, so it needs processing-time windows (`time = \"processing\"`)",
        ));
    }
    if assigner.is_merging() && matches!(trigger, Trigger::Count { .. }) {
        return Err(problem(
            "trigger",
            "session windows merge, and count triggers cannot merge their counts yet: use a time trigger",
        ));
    }
    Ok(())
}

impl Trigger {
    /// Whether the trigger fires by a clock (the built-in time triggers).
    pub(crate) fn is_time_based(self) -> bool {
        matches!(
            self,
            Trigger::EventTime
                | Trigger::PurgingEventTime
                | Trigger::ProcessingTime { .. }
                | Trigger::ContinuousEventTime { .. }
                | Trigger::ContinuousProcessingTime { .. }
        )
    }

    /// Whether each firing empties the window (Flink's `PurgingTrigger`).
    pub(crate) fn purges(self) -> bool {
        match self {
            Trigger::EventTime | Trigger::Wasm => false,
            Trigger::PurgingEventTime => true,
            Trigger::Count { purge, .. }
            | Trigger::ProcessingTime { purge }
            | Trigger::ContinuousEventTime { purge, .. }
            | Trigger::ContinuousProcessingTime { purge, .. } => purge,
        }
    }
}
