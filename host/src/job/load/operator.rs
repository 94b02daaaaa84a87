//! Operators of the job file: the checks of each function kind against
//! the operator's settings, and the one [`OperatorPlan`] the runtime builds.

use std::collections::BTreeMap;

use toml::Spanned;

use super::two_input::JoinChoice;
use super::{Builder, Draft, DraftInput, DraftPartitioning};
use crate::job::spec::{KeyBySpec, OperatorSpec};
use crate::plan::{
    AsyncConfig, BufferedWindowFunction, Edge, FunctionRef, LookupConfig, OperatorPlan, Partitioning, SinkConfig,
    VertexKind, WindowConfig,
};
use crate::wasm::FunctionKind;

impl Builder<'_> {
    /// The draft vertex of `[[operator]]` `spanned`; problems are recorded.
    pub(super) fn operator(
        &mut self,
        spanned: &Spanned<OperatorSpec>,
        default_parallelism: u32,
        lookups: &BTreeMap<String, LookupConfig>,
    ) -> Draft {
        let errors_at_start = self.errors.len();
        let operator = spanned.get_ref();
        let uid = operator.uid.get_ref().clone();
        let field = |name: &str| format!("operator `{uid}` → {name}");
        let parallelism = operator
            .parallelism
            .as_ref()
            .map_or(default_parallelism, |p| self.positive(p, &field("parallelism")));
        let params = operator
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<Vec<_>>();
        let function = self.function(
            &operator.module,
            &operator.function,
            &field("module"),
            &field("function"),
            params,
        );
        let mut partitioning = operator.partition.clone().map(DraftPartitioning::Explicit);
        if let Some(key_by) = &operator.key_by
            && let Some(selector) = self.key_selector(key_by, &uid)
        {
            partitioning = Some(DraftPartitioning::KeyBy(selector));
        }
        if let Some(function) = &function {
            self.check_kind(operator, &uid, function, parallelism);
        }
        let mut window = self.window(operator, &uid);
        let main_kind = function.as_ref().map(|f| f.kind);
        let process = self.window_functions(operator, &uid, main_kind, window.as_mut());
        let (second_input, join) = self.two_input(operator, &uid, function.as_ref(), window.as_ref());
        let watermarks = operator
            .watermarks
            .as_ref()
            .map(|w| self.watermarks(w, &uid, Some(&operator.module)));
        let async_config = self.async_config(operator, &uid, function.as_ref(), lookups);
        let plan = function.and_then(|function| operator_plan(function, window, process, join, async_config));
        let kind = match plan {
            Some(plan) => VertexKind::Operator(plan),
            None => {
                // Every check that fails records why; this is the net
                // under them, for a shape no check anticipated.
                if self.errors.len() == errors_at_start {
                    self.errors.push(self.locator.error(
                        operator.function.span(),
                        field("function"),
                        "this function cannot run as an operator with these settings",
                    ));
                }
                VertexKind::Sink(SinkConfig::Stdout) // placeholder; errors were recorded
            }
        };
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism,
            kind,
            input: Some(DraftInput {
                uid: operator.input.clone(),
                partitioning,
                side_output: operator.side_output.clone(),
            }),
            second_input,
            is_sink: false,
            watermarks,
        }
    }

    /// Checks that a function of this kind can be the operator's function
    /// with these settings (windows, `key_by`, parallelism).
    fn check_kind(&mut self, operator: &OperatorSpec, uid: &str, function: &FunctionRef, parallelism: u32) {
        let field = |name: &str| format!("operator `{uid}` → {name}");
        match function.kind {
        FunctionKind::KeySelector => self.errors.push(self.locator.error(
                operator.function.span(),
                field("function"),
                format!(
                    "`{}` is a key selector; use it in `key_by`, not as an operator",
                    function.function
                ),
            )),
            FunctionKind::WatermarkGenerator => self.errors.push(self.locator.error(
                operator.function.span(),
                field("function"),
                format!(
                    "`{}` is a watermark generator; use it in `watermarks = {{ strategy = \"punctuated\", function = ... }}`, not as an operator",
                    function.function
                ),
            )),
            FunctionKind::ProcessWindow if operator.window.is_none() => self.errors.push(self.locator.error(
                operator.function.span(),
                field("window"),
                format!(
                    "`{}` is a process-window function: the operator needs `window`",
                    function.function
                ),
            )),
            FunctionKind::WindowTrigger => self.errors.push(self.locator.error(
                operator.function.span(),
                field("function"),
                format!(
                    "`{}` is a window trigger; use it in `trigger = {{ type = \"wasm\", function = ... }}`, not as an operator",
                    function.function
                ),
            )),
            FunctionKind::Partitioner => self.errors.push(self.locator.error(
                operator.function.span(),
                field("function"),
                format!(
                    "`{}` is a Kafka partitioner; use it in a kafka sink's `partitioner = {{ module = ..., function = ... }}`, not as an operator",
                    function.function
                ),
            )),
            FunctionKind::WindowEvictor => self.errors.push(self.locator.error(
                operator.function.span(),
                field("function"),
                format!(
                    "`{}` is a window evictor; use it in `evictor = {{ type = \"wasm\", function = ... }}`, not as an operator",
                    function.function
                ),
            )),
            FunctionKind::WindowAggregate if operator.window.is_none() => self.errors.push(self.locator.error(
                operator.function.span(),
                field("window"),
                format!(
                    "`{}` is a window aggregate: the operator needs `window` (tumbling, sliding or session)",
                    function.function
                ),
            )),
            // Without `key_by`, windows are over the whole stream
            // (Flink's `windowAll`): one subtask sees every record.
            FunctionKind::WindowAggregate | FunctionKind::ProcessWindow
                if operator.key_by.is_none() && parallelism != 1 =>
            {
                self.errors.push(self.locator.error(
                    operator.function.span(),
                    field("parallelism"),
                    format!(
                        "`{}` windows the whole stream (no `key_by`), which runs as one subtask: set `parallelism = 1` or add `key_by`",
                        function.function
                    ),
                ))
            }
            kind if !matches!(
                kind,
                FunctionKind::WindowAggregate | FunctionKind::ProcessWindow | FunctionKind::Join
            )
                && operator.window.is_some() =>
            {
                self.errors.push(self.locator.error(
                    operator.function.span(),
                    field("window"),
                    format!(
                        "`{}` is a {kind} function; windows need a window-aggregate or process-window function",
                        function.function
                    ),
                ))
            }
            FunctionKind::KeyedProcess if operator.key_by.is_none() => self.errors.push(self.locator.error(
                operator.function.span(),
                field("key_by"),
                format!(
                    "`{}` is a keyed process function: the operator needs `key_by`",
                    function.function
                ),
            )),
            _ => {}
        }
    }

    fn key_selector(&mut self, key_by: &Spanned<KeyBySpec>, uid: &str) -> Option<FunctionRef> {
        self.key_selector_at(key_by, &format!("operator `{uid}` → key_by"))
    }

    /// Loads the key selector of `key_by`; errors name fields under `at`.
    pub(super) fn key_selector_at(&mut self, key_by: &Spanned<KeyBySpec>, at: &str) -> Option<FunctionRef> {
        let spec = key_by.get_ref();
        let field = |name: &str| format!("{at} → {name}");
        let selector = self.function(
            &spec.module,
            &spec.function,
            &field("module"),
            &field("function"),
            Vec::new(),
        )?;
        if selector.kind != FunctionKind::KeySelector {
            self.errors.push(self.locator.error(
                spec.function.span(),
                field("function"),
                format!(
                    "expected a key selector, found `{}`, a {} function",
                    selector.function, selector.kind
                ),
            ));
            return None;
        }
        Some(selector)
    }
}

/// What the operator runs, from its checked parts; `None` where a check
/// failed (and reported why).
fn operator_plan(
    function: FunctionRef,
    window: Option<WindowConfig>,
    process: Option<FunctionRef>,
    join: Option<JoinChoice>,
    async_config: Option<AsyncConfig>,
) -> Option<OperatorPlan> {
    // The second edge is wired when the graph is ordered.
    let second = Edge {
        from: usize::MAX,
        partitioning: Partitioning::Forward,
        side_output: None,
    };
    Some(match (function.kind, window, join) {
        (FunctionKind::Map | FunctionKind::Filter | FunctionKind::FlatMap, None, None) => {
            OperatorPlan::Transform(function)
        }
        (FunctionKind::KeyedProcess, None, None) => OperatorPlan::KeyedProcess(function),
        (FunctionKind::AsyncMap, None, None) => OperatorPlan::Async {
            function,
            config: async_config?,
        },
        (FunctionKind::WindowAggregate, Some(window), None) if process.is_none() && window.functions.is_empty() => {
            OperatorPlan::Window {
                aggregate: function,
                window,
            }
        }
        (FunctionKind::WindowAggregate, Some(window), None) => OperatorPlan::BufferedWindow {
            function: BufferedWindowFunction::Aggregate {
                aggregate: function,
                process,
            },
            window,
        },
        (FunctionKind::ProcessWindow, Some(window), None) => OperatorPlan::BufferedWindow {
            function: BufferedWindowFunction::Process(function),
            window,
        },
        (FunctionKind::Join, _, Some(JoinChoice::Window(assigner))) => OperatorPlan::WindowJoin {
            function,
            assigner,
            second,
        },
        (FunctionKind::Join, _, Some(JoinChoice::Interval { lower_ms, upper_ms })) => OperatorPlan::IntervalJoin {
            function,
            lower_ms,
            upper_ms,
            second,
        },
        (FunctionKind::KeyedCoProcess, None, None) => OperatorPlan::CoProcess { function, second },
        _ => return None,
    })
}
