//! Windows of the job file: the assigner, trigger and lateness, and a
//! window operator's `process` function, `evictor` and wasm `trigger`
//! (with the triggers a buffering window operator can run).

use super::Builder;
use crate::job::spec::OperatorSpec;
use crate::job::spec::{EvictorKind, WindowKind};
use crate::operators::window_config::EvictorConfig;
use crate::plan::{FunctionRef, Trigger, WindowConfig};
use crate::time::windows::WindowAssigner;
use crate::wasm::FunctionKind;

impl Builder<'_> {
    /// The window of `operator`, checked.
    pub(super) fn window(&mut self, operator: &OperatorSpec, uid: &str) -> Option<WindowConfig> {
        let spanned = operator.window.as_ref()?;
        let spec = spanned.get_ref();
        let field = |name: &str| format!("operator `{uid}` → window → {name}");
        let positive = |value: u64| i64::try_from(value).ok().filter(|v| *v > 0);
        let offset = spec.offset_ms.unwrap_or(0);
        let assigner = match spec.kind {
            WindowKind::Global => WindowAssigner::Global,
            WindowKind::Session => match spec.gap_ms.and_then(positive) {
                Some(gap) => WindowAssigner::Session { gap },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        field("gap_ms"),
                        "a session window needs `gap_ms` of at least 1",
                    ));
                    return None;
                }
            },
            WindowKind::Tumbling | WindowKind::Sliding => {
                let Some(size) = spec.size_ms.and_then(positive) else {
                    self.errors.push(
                        self.locator
                            .error(spanned.span(), field("size_ms"), "must be at least 1"),
                    );
                    return None;
                };
                if spec.kind == WindowKind::Tumbling {
                    WindowAssigner::Tumbling { size, offset }
                } else {
                    match spec.slide_ms.and_then(positive) {
                        Some(slide) if slide <= size => {
                            if !self.sliding_windows(size, slide, spanned.span(), &field("slide_ms")) {
                                return None;
                            }
                            WindowAssigner::Sliding { size, slide, offset }
                        }
                        _ => {
                            self.errors.push(self.locator.error(
                                spanned.span(),
                                field("slide_ms"),
                                format!("a sliding window needs `slide_ms` between 1 and its size ({size})"),
                            ));
                            return None;
                        }
                    }
                }
            }
        };
        let time = crate::job::triggers::window_time(spec);
        let lateness = operator.allowed_lateness_ms.unwrap_or(0);
        let trigger = crate::job::triggers::trigger(operator.trigger.as_ref().map(|t| t.get_ref()), time)
            .and_then(|trigger| crate::job::triggers::check(assigner, time, trigger, lateness).map(|()| trigger));
        let trigger = match trigger {
            Ok(trigger) => trigger,
            Err(problem) => {
                let span = match (problem.field.starts_with("trigger"), operator.trigger.as_ref()) {
                    (true, Some(trigger)) => trigger.span(),
                    _ => spanned.span(),
                };
                self.errors.push(self.locator.error(
                    span,
                    format!("operator `{uid}` → {}", problem.field),
                    problem.message,
                ));
                return None;
            }
        };
        Some(WindowConfig {
            assigner,
            allowed_lateness_ms: i64::try_from(lateness).unwrap_or(i64::MAX),
            late_output: operator.late_output.clone(),
            trigger,
            time,
            functions: Default::default(),
        })
    }

    /// Fills `window.functions` from `evictor` and a wasm `trigger`, and
    /// returns the `process` function, reporting what is wrong with them.
    /// `kind` is the kind of the operator's function.
    pub(super) fn window_functions(
        &mut self,
        operator: &OperatorSpec,
        uid: &str,
        kind: Option<FunctionKind>,
        window: Option<&mut WindowConfig>,
    ) -> Option<FunctionRef> {
        let field = |name: &str| format!("operator `{uid}` → {name}");
        if operator.window.is_none() {
            for (name, span) in [
                ("process", operator.process.as_ref().map(|p| p.span())),
                ("evictor", operator.evictor.as_ref().map(|e| e.span())),
            ] {
                if let Some(span) = span {
                    self.errors.push(self.locator.error(
                        span,
                        field(name),
                        format!("`{name}` belongs to a window operator: the operator needs `window`"),
                    ));
                }
            }
            return None;
        }
        let params: Vec<(String, String)> = operator.params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let mut process = None;
        if let Some(spec) = &operator.process {
            if let Some(kind) = kind.filter(|k| *k != FunctionKind::WindowAggregate) {
                self.errors.push(self.locator.error(
                    spec.span(),
                    field("process"),
                    format!(
                        "`process` runs on the result of a window aggregate or reduce, but `{}` is a {kind} function",
                        operator.function.get_ref()
                    ),
                ));
            } else if let Some(function) = self.function(
                &operator.module,
                &spec.get_ref().function,
                &field("module"),
                &field("process → function"),
                params.clone(),
            ) {
                if function.kind == FunctionKind::ProcessWindow {
                    process = Some(function);
                } else {
                    self.errors.push(self.locator.error(
                        spec.get_ref().function.span(),
                        field("process → function"),
                        format!(
                            "`{}` is a {} function; `process` needs a process-window function",
                            function.function, function.kind
                        ),
                    ));
                }
            }
        }
        let evictor = operator.evictor.as_ref().and_then(|spanned| {
            let spec = spanned.get_ref();
            let evictor_field = |name: &str| field(&format!("evictor → {name}"));
            if spec.kind == EvictorKind::Wasm && spec.after.is_some() {
                self.errors.push(self.locator.error(
                    spanned.span(),
                    evictor_field("after"),
                    "a wasm evictor is called both before and after the window function: remove `after`",
                ));
                return None;
            }
            let after = spec.after.unwrap_or(false);
            let positive = |value: Option<u64>| value.and_then(|v| i64::try_from(v).ok()).filter(|v| *v > 0);
            match spec.kind {
                EvictorKind::Count => match positive(spec.count) {
                    Some(count) => Some(EvictorConfig::Count {
                        count: count as u64,
                        after,
                    }),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            evictor_field("count"),
                            "a count evictor needs `count` of at least 1",
                        ));
                        None
                    }
                },
                EvictorKind::Time => match positive(spec.size_ms) {
                    Some(size_ms) => Some(EvictorConfig::Time { size_ms, after }),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            evictor_field("size_ms"),
                            "a time evictor needs `size_ms` of at least 1",
                        ));
                        None
                    }
                },
                EvictorKind::Wasm => {
                    let Some(name) = &spec.function else {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            evictor_field("function"),
                            "a wasm evictor needs `function`: a window-evictor function of the operator's module",
                        ));
                        return None;
                    };
                    let function = self.function(
                        &operator.module,
                        name,
                        &field("module"),
                        &evictor_field("function"),
                        params.clone(),
                    )?;
                    if function.kind == FunctionKind::WindowEvictor {
                        Some(EvictorConfig::Wasm(function))
                    } else {
                        self.errors.push(self.locator.error(
                            name.span(),
                            evictor_field("function"),
                            format!(
                                "`{}` is a {} function; `evictor` needs a window-evictor function",
                                function.function, function.kind
                            ),
                        ));
                        None
                    }
                }
            }
        });
        let window = window?;
        window.functions.evictor = evictor;
        if window.trigger == Trigger::Wasm {
            window.functions.trigger = self.wasm_trigger(operator, uid, &params);
        }
        // The buffering operator runs event-time windows with the
        // event-time, count or wasm trigger.
        let buffers = kind == Some(FunctionKind::ProcessWindow) || process.is_some() || !window.functions.is_empty();
        if buffers
            && (window.time != crate::time::TimeDomain::EventTime
                || !matches!(
                    window.trigger,
                    Trigger::EventTime | Trigger::Count { .. } | Trigger::Wasm
                ))
        {
            let span = operator.trigger.as_ref().map_or(operator.function.span(), |t| t.span());
            self.errors.push(self.locator.error(
                span,
                field("trigger"),
                "process-window functions, evictors and wasm triggers run on event-time windows with the event-time, count or wasm trigger, for now",
            ));
        }
        if window.trigger != Trigger::EventTime
            && matches!(window.functions.evictor, Some(EvictorConfig::Wasm(_)))
            && let Some(evictor) = &operator.evictor
        {
            self.errors.push(self.locator.error(
                evictor.span(),
                field("evictor"),
                "a wasm evictor works with the event-time trigger only, for now",
            ));
        }
        process
    }

    /// The window-trigger function of `trigger = { type = "wasm", function = ... }`.
    fn wasm_trigger(&mut self, operator: &OperatorSpec, uid: &str, params: &[(String, String)]) -> Option<FunctionRef> {
        let spanned = operator.trigger.as_ref()?;
        let field = format!("operator `{uid}` → trigger → function");
        let Some(name) = &spanned.get_ref().function else {
            self.errors.push(self.locator.error(
                spanned.span(),
                field,
                "a wasm trigger needs `function`: a window-trigger function of the operator's module",
            ));
            return None;
        };
        let function = self.function(
            &operator.module,
            name,
            &format!("operator `{uid}` → module"),
            &field,
            params.to_vec(),
        )?;
        if function.kind == FunctionKind::WindowTrigger {
            Some(function)
        } else {
            self.errors.push(self.locator.error(
                name.span(),
                field,
                format!(
                    "`{}` is a {} function; a wasm trigger needs a window-trigger function",
                    function.function, function.kind
                ),
            ));
            None
        }
    }
}
