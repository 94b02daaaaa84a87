//! Checks of two-input operators (joins and keyed co-process functions):
//! the second input, that both inputs are keyed, and the join's settings.

use toml::Spanned;

use super::{Builder, DraftInput, DraftPartitioning};
use crate::job::spec::{JoinKind, JoinSpec, OperatorSpec, PartitionSpec};
use crate::plan::{FunctionRef, Trigger, WindowConfig};
use crate::time::windows::WindowAssigner;
use crate::wasm::FunctionKind;

/// How a join pairs the records of its two inputs (both keyed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinChoice {
    /// Every pair of records of a key in the same event-time window.
    Window(WindowAssigner),
    /// Every pair with `left + lower_ms <= right <= left + upper_ms`.
    Interval {
        /// Lower bound of the right record's time relative to the left's, ms.
        lower_ms: i64,
        /// Upper bound of the right record's time relative to the left's, ms.
        upper_ms: i64,
    },
}

impl Builder<'_> {
    /// The second input and the join settings of `operator`, checked against
    /// its function's kind; errors are recorded.
    pub(super) fn two_input(
        &mut self,
        operator: &OperatorSpec,
        uid: &str,
        function: Option<&FunctionRef>,
        window: Option<&WindowConfig>,
    ) -> (Option<DraftInput>, Option<JoinChoice>) {
        let field = |name: &str| format!("operator `{uid}` → {name}");
        let kind = function.map(|f| f.kind);
        let two_inputs = matches!(kind, Some(FunctionKind::Join | FunctionKind::KeyedCoProcess));
        let name = function.map_or("", |f| f.function.as_str());
        if let (Some(function), false) = (function, two_inputs) {
            if let Some(second) = &operator.second_input {
                self.errors.push(self.locator.error(
                    second.span(),
                    field("second_input"),
                    format!(
                        "`{name}` is a {} function; only join and keyed-co-process functions read a second input",
                        function.kind
                    ),
                ));
            }
            if let Some(join) = &operator.join {
                self.errors.push(self.locator.error(
                    join.span(),
                    field("join"),
                    format!("`{name}` is a {} function; `join` needs a join function", function.kind),
                ));
            }
            return (None, None);
        }
        let Some(kind) = kind else {
            return (None, None);
        };
        if operator.key_by.is_none() {
            self.errors.push(self.locator.error(
                operator.function.span(),
                field("key_by"),
                format!("`{name}` is a {kind} function: both inputs must be keyed, so the operator needs `key_by`"),
            ));
        }
        let second = match &operator.second_input {
            None => {
                self.errors.push(self.locator.error(
                    operator.function.span(),
                    field("second_input"),
                    format!(
                        "`{name}` is a {kind} function: the operator needs `second_input = {{ input = \"…\", key_by = … }}`"
                    ),
                ));
                None
            }
            Some(spanned) => {
                let spec = spanned.get_ref();
                let partitioning = match (&spec.key_by, &spec.partition) {
                    (_, Some(partition)) => self.second_partition(partition, spec.key_by.is_some(), kind, name, uid),
                    (None, None) => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field("second_input → key_by"),
                            format!(
                                "`{name}` is a {kind} function: both inputs must be keyed, so `second_input` needs `key_by`"
                            ),
                        ));
                        None
                    }
                    (Some(key_by), None) => self
                        .key_selector_at(key_by, &field("second_input → key_by"))
                        .map(DraftPartitioning::KeyBy),
                };
                Some(DraftInput {
                    uid: spec.input.clone(),
                    partitioning,
                    side_output: spec.side_output.clone(),
                })
            }
        };
        let join = match (kind, &operator.join) {
            (FunctionKind::Join, Some(join)) => self.join(join, operator, uid, window),
            (FunctionKind::Join, None) => {
                self.errors.push(self.locator.error(
                    operator.function.span(),
                    field("join"),
                    format!(
                        "`{name}` is a join function: the operator needs `join = {{ type = \"window\" }}` (with `window`) or `join = {{ type = \"interval\", lower_ms = …, upper_ms = … }}`"
                    ),
                ));
                None
            }
            (_, Some(join)) => {
                self.errors.push(self.locator.error(
                    join.span(),
                    field("join"),
                    format!("`{name}` is a {kind} function; `join` needs a join function"),
                ));
                None
            }
            (_, None) => None,
        };
        (second, join)
    }

    /// The explicit partitioning of a second input: only `broadcast`, only
    /// for keyed co-process functions, and not with `key_by`.
    fn second_partition(
        &mut self,
        partition: &Spanned<PartitionSpec>,
        keyed: bool,
        kind: FunctionKind,
        name: &str,
        uid: &str,
    ) -> Option<DraftPartitioning> {
        let message = if keyed {
            "`second_input` takes `key_by` or `partition = \"broadcast\"`, not both".to_string()
        } else if kind != FunctionKind::KeyedCoProcess {
            format!(
                "`{name}` is a {kind} function: both inputs must be keyed; only keyed-co-process functions read a broadcast input"
            )
        } else if *partition.get_ref() != PartitionSpec::Broadcast {
            "a second input is keyed (`key_by`) or broadcast (`partition = \"broadcast\"`)".to_string()
        } else {
            return Some(DraftPartitioning::Explicit(partition.clone()));
        };
        self.errors.push(self.locator.error(
            partition.span(),
            format!("operator `{uid}` → second_input → partition"),
            message,
        ));
        None
    }

    fn join(
        &mut self,
        spanned: &Spanned<JoinSpec>,
        operator: &OperatorSpec,
        uid: &str,
        window: Option<&WindowConfig>,
    ) -> Option<JoinChoice> {
        let spec = spanned.get_ref();
        let field = |name: &str| format!("operator `{uid}` → {name}");
        let error = |this: &mut Self, name: &str, message: String| {
            this.errors
                .push(this.locator.error(spanned.span(), field(name), message));
        };
        match spec.kind {
            JoinKind::Interval => {
                if operator.window.is_some() {
                    error(self, "window", "an interval join has no `window`".into());
                }
                let (Some(lower), Some(upper)) = (spec.lower_ms, spec.upper_ms) else {
                    error(self, "join", "an interval join needs `lower_ms` and `upper_ms`".into());
                    return None;
                };
                if lower > upper {
                    error(
                        self,
                        "join → lower_ms",
                        format!("`lower_ms` ({lower}) must not exceed `upper_ms` ({upper})"),
                    );
                    return None;
                }
                Some(JoinChoice::Interval {
                    lower_ms: lower,
                    upper_ms: upper,
                })
            }
            JoinKind::Window => {
                if spec.lower_ms.is_some() || spec.upper_ms.is_some() {
                    error(
                        self,
                        "join",
                        "`lower_ms` and `upper_ms` belong to interval joins".into(),
                    );
                }
                let Some(window) = window else {
                    if operator.window.is_none() {
                        error(
                            self,
                            "window",
                            "a window join needs `window` (tumbling or sliding)".into(),
                        );
                    }
                    return None;
                };
                if !matches!(
                    window.assigner,
                    WindowAssigner::Tumbling { .. } | WindowAssigner::Sliding { .. }
                ) {
                    error(
                        self,
                        "window",
                        "a window join supports tumbling and sliding windows".into(),
                    );
                    return None;
                }
                if window.trigger != Trigger::EventTime
                    || window.allowed_lateness_ms != 0
                    || window.late_output.is_some()
                {
                    error(
                        self,
                        "window",
                        "a window join fires when the watermark passes a window's end: `trigger`, `allowed_lateness_ms` and `late_output` are not supported"
                            .into(),
                    );
                    return None;
                }
                Some(JoinChoice::Window(window.assigner))
            }
        }
    }
}
