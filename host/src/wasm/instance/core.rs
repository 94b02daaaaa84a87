//! What every typed handle shares: the store, who runs what, the limits and
//! the position in the input ([`UdfCore`]), and how a handle starts: the
//! module is instantiated, the one export of the handle's kind is loaded
//! ([`Export`]), then the function's `init` runs.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::super::Limits;
use super::super::bindings::exports::weir::udf::{
    async_map, join, key_selector, keyed_co_process, keyed_process, library, partitioner, process_window, transform,
    watermark_generator, window_aggregate, window_evictor, window_trigger,
};
use super::super::host_state::{HostState, KeyedScope};
use super::super::module::UdfModule;
use super::{InstanceSpec, Position, UdfError, arm_deadline, new_store, wit};

/// The export of one WIT interface, loaded from an instance: what a typed
/// handle calls.
pub trait Export: Sized + Send {
    /// Loads the export from `instance` of `pre`.
    fn load(pre: &InstancePre<HostState>, store: &mut Store<HostState>, instance: &Instance) -> wasmtime::Result<Self>;
}

macro_rules! exports {
    ($($interface:ident),* $(,)?) => {$(
        impl Export for $interface::Guest {
            fn load(
                pre: &InstancePre<HostState>,
                store: &mut Store<HostState>,
                instance: &Instance,
            ) -> wasmtime::Result<Self> {
                $interface::GuestIndices::new(pre)?.load(store, instance)
            }
        }
    )*};
}

exports!(
    transform,
    key_selector,
    keyed_process,
    window_aggregate,
    join,
    keyed_co_process,
    watermark_generator,
    process_window,
    window_evictor,
    window_trigger,
    partitioner,
    async_map,
);

/// The store of a running function, who it runs for, its limits, and how
/// many input records it has processed (to place a failure).
pub(super) struct UdfCore {
    pub(super) store: Store<HostState>,
    operator: String,
    module: Arc<UdfModule>,
    function: String,
    limits: Limits,
    records_before: u64,
    /// Where call durations go, and when the current call began.
    on_call: Option<super::CallObserver>,
    call_started: Option<std::time::Instant>,
}

/// A running function whose kind exports `G`: only the calls of that kind
/// exist on it (see the aliases, such as [`super::TransformUdf`]).
pub struct Udf<G> {
    pub(super) core: UdfCore,
    pub(super) guest: G,
}

impl<G: Export> Udf<G> {
    /// Instantiates the module, loads the export of this kind and starts the
    /// function. `keyed` is the scope of its host calls: state and timers of
    /// a keyed process or co-process function (already restored), operator
    /// state of a transform, none for the other kinds.
    pub fn start(
        engine: &wasmtime::Engine,
        spec: &InstanceSpec<'_>,
        keyed: Option<KeyedScope>,
    ) -> Result<Self, UdfError> {
        let start_error = |reason: String| UdfError::Start {
            operator: spec.operator.to_string(),
            module: spec.module.display_name(),
            function: spec.function.to_string(),
            reason,
        };
        let mut state = HostState::for_subtask(spec.operator, spec.subtask, spec.limits);
        state.keyed = keyed;
        let mut store = new_store(engine, state, spec.limits.call_timeout_ms);
        let pre = &spec.module.pre;
        let instance = pre.instantiate(&mut store).map_err(|e| start_error(format!("{e:#}")))?;
        let library = library::GuestIndices::new(pre)
            .and_then(|i| i.load(&mut store, &instance))
            .map_err(|e| start_error(format!("{e:#}")))?;
        let guest = G::load(pre, &mut store, &instance).map_err(|e| start_error(format!("{e:#}")))?;
        let task = wit::TaskInfo {
            function: spec.function.to_string(),
            operator_uid: spec.operator.to_string(),
            subtask_index: spec.subtask,
            parallelism: spec.parallelism,
            max_parallelism: spec.max_parallelism,
            params: spec.params.to_vec(),
        };
        arm_deadline(&mut store, spec.limits.call_timeout_ms);
        let init = library.call_init(&mut store, &task);
        let core = UdfCore {
            store,
            operator: spec.operator.to_string(),
            module: Arc::clone(spec.module),
            function: spec.function.to_string(),
            limits: spec.limits,
            records_before: 0,
            on_call: spec.on_call.clone(),
            call_started: None,
        };
        match init {
            Ok(Ok(())) => Ok(Self { core, guest }),
            Ok(Err(reason)) => Err(start_error(reason)),
            Err(e) => Err(start_error(core.cause(&e))),
        }
    }
}

impl<G> Udf<G> {
    /// The scope of the function's host calls (keyed state and timers, or
    /// operator state), if it has one.
    pub fn keyed(&mut self) -> Option<&mut KeyedScope> {
        self.core.store.data_mut().keyed.as_mut()
    }
}

impl UdfCore {
    /// Clears the last panic and arms the deadline of the next call.
    pub(super) fn before_call(&mut self) {
        self.store.data_mut().panic = None;
        if self.on_call.is_some() {
            self.call_started = Some(std::time::Instant::now());
        }
        arm_deadline(&mut self.store, self.limits.call_timeout_ms);
    }

    /// The result of a call over `batch_len` input records, which count as
    /// processed when it succeeds.
    pub(super) fn after_call<T>(&mut self, result: wasmtime::Result<T>, batch_len: usize) -> Result<T, UdfError> {
        let value = self.checked(result, batch_len)?;
        self.records_before += batch_len as u64;
        Ok(value)
    }

    /// The result of a call over `batch_len` records that are not input
    /// (window contents, accumulators, timers): they do not count.
    pub(super) fn checked<T>(&mut self, result: wasmtime::Result<T>, batch_len: usize) -> Result<T, UdfError> {
        if let (Some(on_call), Some(started)) = (&self.on_call, self.call_started.take()) {
            (on_call.0)(started.elapsed());
        }
        result.map_err(|error| {
            let record_index = self.store.data().panic.as_ref().and_then(|p| p.record_index);
            let cause = self.cause(&error);
            self.failure(batch_len, record_index, cause)
        })
    }

    /// The guest answered a call in a shape the contract does not allow.
    pub(super) fn protocol_error(&self, cause: String) -> UdfError {
        self.failure(0, None, cause)
    }

    fn failure(&self, batch_len: usize, record_index: Option<u32>, cause: String) -> UdfError {
        UdfError::Trap {
            operator: self.operator.clone(),
            module: self.module.display_name(),
            function: self.function.clone(),
            position: Position {
                records_before: self.records_before,
                batch_len,
                record_index,
            },
            cause,
        }
    }

    /// Explains a failed call (see [`super::super::trap`]).
    fn cause(&self, error: &wasmtime::Error) -> String {
        super::super::trap::explain(error, &self.limits, self.store.data().panic.as_ref())
    }
}
