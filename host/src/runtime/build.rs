//! Building a subtask's operator from its [`OperatorPlan`]: one `match`,
//! one arm per kind of operator, each starting the Wasm instances it runs
//! and restoring the state it keeps.

use super::subtask::Subtask;
use crate::exchange::TaskError;
use crate::operators::Operator;
use crate::operators::buffered_window::{BufferedWindowOperator, BufferedWindowParts, Evictor, WindowFunction};
use crate::operators::co_process::CoProcessOperator;
use crate::operators::interval_join::IntervalJoinOperator;
use crate::operators::keyed_process::KeyedProcessOperator;
use crate::operators::transform::TransformOperator;
use crate::operators::window::WindowOperator;
use crate::operators::window_config::{EvictorConfig, WindowConfig};
use crate::operators::window_join::WindowJoinOperator;
use crate::plan::{BufferedWindowFunction, FunctionRef, OperatorPlan, Partitioning};
use crate::wasm::host_state::KeyedScope;
use crate::wasm::instance::{InstanceSpec, UdfInstance};

impl Subtask<'_> {
    /// The operator of this subtask, with its state restored.
    pub(super) fn operator(&self, plan: &OperatorPlan) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let module = plan.function().module.display_name();
        let batch_size = self.plan().settings.batch_size;
        Ok(match plan {
            OperatorPlan::Transform(function) => {
                let instance = self.instance(uid, function, Some(self.operator_scope()?))?;
                Box::new(
                    TransformOperator::new(uid, module, instance, self.metrics())
                        .with_operator_state(self.key_groups()),
                )
            }
            OperatorPlan::KeyedProcess(function) => {
                let instance = self.instance(uid, function, Some(self.keyed_scope()?))?;
                Box::new(KeyedProcessOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    batch_size,
                    self.key_groups(),
                ))
            }
            OperatorPlan::Window { aggregate, window } => {
                let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
                let instance = self.instance(uid, aggregate, None)?;
                Box::new(WindowOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    backend,
                    timers,
                    window.clone(),
                    self.key_groups(),
                    batch_size,
                )?)
            }
            OperatorPlan::BufferedWindow { function, window } => self.buffered_window(function, window)?,
            OperatorPlan::WindowJoin { function, assigner, .. } => {
                let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
                let instance = self.instance(uid, function, None)?;
                Box::new(WindowJoinOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    backend,
                    timers,
                    *assigner,
                    self.key_groups(),
                    batch_size,
                )?)
            }
            OperatorPlan::IntervalJoin {
                function,
                lower_ms,
                upper_ms,
                ..
            } => {
                let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
                let instance = self.instance(uid, function, None)?;
                Box::new(IntervalJoinOperator::new(
                    uid,
                    module,
                    instance,
                    self.metrics(),
                    backend,
                    timers,
                    (*lower_ms, *upper_ms),
                    self.key_groups(),
                    batch_size,
                )?)
            }
            OperatorPlan::CoProcess { function, second } => {
                let instance = self.instance(uid, function, Some(self.keyed_scope()?))?;
                let operator =
                    CoProcessOperator::new(uid, module, instance, self.metrics(), batch_size, self.key_groups());
                match second.partitioning {
                    Partitioning::Broadcast => Box::new(operator.with_broadcast_input()),
                    _ => Box::new(operator),
                }
            }
        })
    }

    /// A window operator that buffers whole windows (process-window
    /// functions, `process`, evictors, Wasm triggers): one instance per
    /// function.
    fn buffered_window(
        &self,
        function: &BufferedWindowFunction,
        window: &WindowConfig,
    ) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let (window_function, module) = match function {
            BufferedWindowFunction::Process(process) => (
                WindowFunction::Process(self.instance(uid, process, None)?),
                process.module.display_name(),
            ),
            BufferedWindowFunction::Aggregate { aggregate, process } => (
                WindowFunction::Aggregate {
                    aggregate: self.instance(uid, aggregate, None)?,
                    process: match process {
                        Some(process) => Some(self.instance(uid, process, None)?),
                        None => None,
                    },
                },
                aggregate.module.display_name(),
            ),
        };
        let evictor = match &window.functions.evictor {
            None => None,
            Some(EvictorConfig::Count { count, after }) => Some(Evictor::Count {
                count: *count,
                after: *after,
            }),
            Some(EvictorConfig::Time { size_ms, after }) => Some(Evictor::Time {
                size_ms: *size_ms,
                after: *after,
            }),
            Some(EvictorConfig::Wasm(evictor)) => Some(Evictor::Wasm(self.instance(uid, evictor, None)?)),
        };
        let trigger = match &window.functions.trigger {
            Some(trigger) => Some(self.instance(uid, trigger, None)?),
            None => None,
        };
        let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
        Ok(Box::new(BufferedWindowOperator::new(BufferedWindowParts {
            uid: uid.clone(),
            module,
            metrics: self.metrics(),
            backend,
            timers,
            config: window.clone(),
            key_groups: self.key_groups(),
            timer_batch: self.plan().settings.batch_size,
            function: window_function,
            evictor,
            trigger,
        })?))
    }

    /// Starts `function` for this subtask as part of vertex `uid` (this
    /// vertex, or the consumer whose key selector runs here).
    pub(super) fn instance_of(
        &self,
        uid: &str,
        function: &FunctionRef,
        parallelism: u32,
        keyed: Option<KeyedScope>,
    ) -> Result<UdfInstance, TaskError> {
        let mut params = function.params.clone();
        params.push(("weir.attempt".into(), self.attempt.to_string()));
        let spec = InstanceSpec {
            operator: uid,
            module: &function.module,
            function: &function.function,
            kind: function.kind,
            params: &params,
            subtask: self.subtask,
            parallelism,
            max_parallelism: self.plan().settings.max_parallelism,
            limits: self.plan().settings.limits,
        };
        Ok(UdfInstance::start(self.shared.engine, &spec, keyed)?)
    }

    /// Starts `function` as part of this subtask's vertex.
    fn instance(&self, uid: &str, function: &FunctionRef, keyed: Option<KeyedScope>) -> Result<UdfInstance, TaskError> {
        self.instance_of(uid, function, self.vertex.parallelism, keyed)
    }
}
