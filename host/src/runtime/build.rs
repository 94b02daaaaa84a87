//! Building a subtask's operator from its [`OperatorPlan`]: one `match`,
//! one arm per kind of operator, each starting the Wasm instances it runs
//! and restoring the state it keeps.

use std::sync::Arc;

use super::subtask::Subtask;
use crate::exchange::TaskError;
use crate::operators::async_io::AsyncOperator;
use crate::operators::buffered_window::{BufferedWindowOperator, BufferedWindowParts, Evictor, WindowFunction};
use crate::operators::co_process::CoProcessOperator;
use crate::operators::interval_join::IntervalJoinOperator;
use crate::operators::keyed_process::KeyedProcessOperator;
use crate::operators::transform::TransformOperator;
use crate::operators::window::WindowOperator;
use crate::operators::window_config::{EvictorConfig, WindowConfig};
use crate::operators::window_join::WindowJoinOperator;
use crate::operators::{KeyedContext, Operator, OperatorContext};
use crate::plan::{BufferedWindowFunction, FunctionRef, OperatorPlan, Partitioning};
use crate::wasm::host_state::KeyedScope;
use crate::wasm::instance::{CallObserver, Export, InstanceSpec, Udf};

impl Subtask<'_> {
    /// The operator of this subtask, with its state restored.
    pub(super) fn operator(&self, plan: &OperatorPlan) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let module = plan.function().module.display_name();
        Ok(match plan {
            OperatorPlan::Transform(function) => {
                let instance = self.instance(uid, function, Some(self.operator_scope()?))?;
                Box::new(TransformOperator::new(self.context(module), instance))
            }
            OperatorPlan::Async { function, config } => {
                let instance = self.instance(uid, function, None)?;
                let scope = self.operator_scope()?;
                let context = self.context(module);
                Box::new(AsyncOperator::new(
                    context,
                    instance,
                    config.clone(),
                    scope,
                    self.subtask,
                )?)
            }
            OperatorPlan::KeyedProcess(function) => {
                let instance = self.instance(uid, function, Some(self.keyed_scope()?))?;
                Box::new(KeyedProcessOperator::new(self.context(module), instance))
            }
            OperatorPlan::Window { aggregate, window } => {
                let context = self.keyed_context(module)?;
                let instance = self.instance(uid, aggregate, None)?;
                Box::new(WindowOperator::new(context, instance, window.clone())?)
            }
            OperatorPlan::BufferedWindow { function, window } => self.buffered_window(function, window, module)?,
            OperatorPlan::WindowJoin { function, assigner, .. } => {
                let context = self.keyed_context(module)?;
                let instance = self.instance(uid, function, None)?;
                Box::new(WindowJoinOperator::new(context, instance, *assigner)?)
            }
            OperatorPlan::IntervalJoin {
                function,
                lower_ms,
                upper_ms,
                ..
            } => {
                let context = self.keyed_context(module)?;
                let instance = self.instance(uid, function, None)?;
                Box::new(IntervalJoinOperator::new(context, instance, (*lower_ms, *upper_ms))?)
            }
            OperatorPlan::CoProcess { function, second } => {
                let instance = self.instance(uid, function, Some(self.keyed_scope()?))?;
                let operator = CoProcessOperator::new(self.context(module), instance);
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
        module: String,
    ) -> Result<Box<dyn Operator>, TaskError> {
        let uid = &self.vertex.uid;
        let window_function = match function {
            BufferedWindowFunction::Process(process) => WindowFunction::Process(self.instance(uid, process, None)?),
            BufferedWindowFunction::Aggregate { aggregate, process } => WindowFunction::Aggregate {
                aggregate: self.instance(uid, aggregate, None)?,
                process: match process {
                    Some(process) => Some(self.instance(uid, process, None)?),
                    None => None,
                },
            },
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
        let context = self.keyed_context(module)?;
        Ok(Box::new(BufferedWindowOperator::new(
            context,
            BufferedWindowParts {
                config: window.clone(),
                function: window_function,
                evictor,
                trigger,
            },
        )?))
    }

    /// Starts `function` for this subtask as the typed handle `G` of its
    /// kind, as part of vertex `uid` (this vertex, or the consumer whose key
    /// selector runs here) of `parallelism` subtasks.
    pub(super) fn instance_of<G: Export>(
        &self,
        uid: &str,
        function: &FunctionRef,
        parallelism: u32,
        keyed: Option<KeyedScope>,
    ) -> Result<Udf<G>, TaskError> {
        let mut params = function.params.clone();
        params.push(("weir.attempt".into(), self.attempt.to_string()));
        let spec = InstanceSpec {
            operator: uid,
            module: &function.module,
            function: &function.function,
            params: &params,
            subtask: self.subtask,
            parallelism,
            max_parallelism: self.plan().settings.max_parallelism,
            limits: self.plan().settings.limits,
            on_call: Some({
                let metrics = self.metrics();
                CallObserver(Arc::new(move |took| metrics.observe_wasm_call(took)))
            }),
        };
        Ok(Udf::start(self.shared.engine, &spec, keyed)?)
    }

    /// Starts `function` as part of this subtask's vertex.
    fn instance<G: Export>(
        &self,
        uid: &str,
        function: &FunctionRef,
        keyed: Option<KeyedScope>,
    ) -> Result<Udf<G>, TaskError> {
        self.instance_of(uid, function, self.vertex.parallelism, keyed)
    }

    /// The context of this subtask's operator, running a function of `module`.
    fn context(&self, module: String) -> OperatorContext {
        let settings = &self.plan().settings;
        OperatorContext::new(
            &self.vertex.uid,
            module,
            self.metrics(),
            self.key_groups(),
            settings.batch_size,
        )
    }

    /// The context of a keyed operator whose state lives on the host, its
    /// backend and timers restored.
    fn keyed_context(&self, module: String) -> Result<KeyedContext, TaskError> {
        let KeyedScope { backend, timers, .. } = self.keyed_scope()?;
        Ok(KeyedContext::new(self.context(module), backend, timers))
    }
}
