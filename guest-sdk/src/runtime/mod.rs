//! Runtime glue: the WIT exports, dispatching to the function instance that
//! `library.init` opened.

mod adapters;
mod async_adapter;
mod partitioner_adapter;
pub(crate) mod scope;
mod trigger_adapter;
mod window_adapters;
mod window_exports;

use std::cell::RefCell;
use std::marker::PhantomData;

use adapters::Instance;

use crate::__bindings::exports::weir::udf::{
    join, key_selector, keyed_co_process, keyed_process, library, transform, watermark_generator, window_aggregate,
};
use crate::__bindings::weir::udf::types as wit;
use crate::output::{KeyColumn, Output};
use crate::{
    Filter, FlatMap, JoinFunction, KeySelector, KeyedCoProcessFunction, KeyedProcessFunction, Map, Result, TaskInfo,
    WatermarkGenerator, WindowAggregate,
};

/// A module: what [`export_functions!`](crate::export_functions) declares.
pub trait Module: 'static {
    /// The module's name (its crate's name).
    const NAME: &'static str;
    /// The module's version (its crate's version).
    const VERSION: &'static str;
    /// The functions the module exports.
    const FUNCTIONS: &'static [FunctionEntry];
    /// The state migrations the module exports.
    const MIGRATIONS: &'static [crate::migration::MigrationEntry] = &[];
    /// How its states decode, for `weir state dump` (the `states { … }`
    /// section of [`export_functions!`](crate::export_functions)).
    const STATE_CODECS: &'static [crate::codec::StateCodec] = &[];
}

/// One function a module exports: its name, its kind and how to open it.
pub struct FunctionEntry {
    name: &'static str,
    kind: wit::FunctionKind,
    open: fn(&TaskInfo) -> Result<Instance>,
}

impl FunctionEntry {
    /// A [`Map`] function.
    pub const fn map<F: Map>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::Map,
            open: adapters::open_map::<F>,
        }
    }

    /// A [`Filter`] function.
    pub const fn filter<F: Filter>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::Filter,
            open: adapters::open_filter::<F>,
        }
    }

    /// A [`FlatMap`] function.
    pub const fn flat_map<F: FlatMap>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::FlatMap,
            open: adapters::open_flat_map::<F>,
        }
    }

    /// A [`KeySelector`].
    pub const fn key_selector<F: KeySelector>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::KeySelector,
            open: adapters::open_key_selector::<F>,
        }
    }

    /// A [`KeyedProcessFunction`].
    pub const fn keyed_process<F: KeyedProcessFunction>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::KeyedProcess,
            open: adapters::open_keyed_process::<F>,
        }
    }

    /// A [`WindowAggregate`].
    pub const fn window_aggregate<F: WindowAggregate>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::WindowAggregate,
            open: adapters::open_window_aggregate::<F>,
        }
    }

    /// A [`JoinFunction`].
    pub const fn join<F: JoinFunction>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::Join,
            open: adapters::open_join::<F>,
        }
    }

    /// A [`KeyedCoProcessFunction`].
    pub const fn keyed_co_process<F: KeyedCoProcessFunction>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::KeyedCoProcess,
            open: adapters::open_keyed_co_process::<F>,
        }
    }

    /// A [`WatermarkGenerator`].
    pub const fn watermark_generator<F: WatermarkGenerator>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::WatermarkGenerator,
            open: adapters::open_watermark_generator::<F>,
        }
    }

    /// A [`ReduceFunction`](crate::ReduceFunction), run as a window aggregate.
    pub const fn reduce<F: crate::ReduceFunction>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::WindowAggregate,
            open: window_adapters::open_reduce::<F>,
        }
    }

    /// A [`ProcessWindowFunction`](crate::ProcessWindowFunction).
    pub const fn process_window<F: crate::ProcessWindowFunction>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::ProcessWindow,
            open: window_adapters::open_process_window::<F>,
        }
    }

    /// An [`Evictor`](crate::Evictor).
    pub const fn evictor<F: crate::Evictor>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::WindowEvictor,
            open: window_adapters::open_evictor::<F>,
        }
    }

    /// A window [`Trigger`](crate::Trigger).
    pub const fn trigger<F: crate::Trigger>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::WindowTrigger,
            open: trigger_adapter::open_trigger::<F>,
        }
    }

    /// An [`AsyncMap`](crate::AsyncMap): records enriched by async lookups.
    pub const fn async_map<F: crate::AsyncMap>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::AsyncMap,
            open: async_adapter::open_async_map::<F>,
        }
    }

    /// A Kafka sink [`Partitioner`](crate::Partitioner).
    pub const fn partitioner<F: crate::Partitioner>(name: &'static str) -> Self {
        Self {
            name,
            kind: wit::FunctionKind::Partitioner,
            open: partitioner_adapter::open_partitioner::<F>,
        }
    }
}

/// Fails the build if two functions share a name.
pub const fn check_unique_names(functions: &[FunctionEntry]) {
    let mut i = 0;
    while i < functions.len() {
        let mut j = i + 1;
        while j < functions.len() {
            assert!(
                !same_bytes(functions[i].name, functions[j].name),
                "export_functions!: two functions have the same name"
            );
            j += 1;
        }
        i += 1;
    }
}

/// Whether two strings are equal (`==` is not `const`).
const fn same_bytes(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The instance `library.init` opened, with its reusable buffers.
struct Active {
    task: TaskInfo,
    kind: wit::FunctionKind,
    instance: Instance,
    output: Output,
    keys: KeyColumn,
}

thread_local! {
    static ACTIVE: RefCell<Option<Active>> = const { RefCell::new(None) };
}

/// Runs `f` on the active instance for a call of `export`.
fn with_active<R>(export: &str, f: impl FnOnce(&mut Active) -> R) -> R {
    ACTIVE.with_borrow_mut(|active| {
        let active = active
            .as_mut()
            .unwrap_or_else(|| panic!("the host called {export} before library.init"));
        f(active)
    })
}

/// Panics because the host called an export of another kind of function.
fn wrong_kind(active: &Active, export: &str) -> ! {
    let kind = match active.kind {
        wit::FunctionKind::Map => "map",
        wit::FunctionKind::Filter => "filter",
        wit::FunctionKind::FlatMap => "flat-map",
        wit::FunctionKind::KeySelector => "key-selector",
        wit::FunctionKind::KeyedProcess => "keyed-process",
        wit::FunctionKind::WindowAggregate => "window-aggregate",
        wit::FunctionKind::Join => "join",
        wit::FunctionKind::KeyedCoProcess => "keyed-co-process",
        wit::FunctionKind::WatermarkGenerator => "watermark-generator",
        wit::FunctionKind::ProcessWindow => "process-window",
        wit::FunctionKind::WindowEvictor => "window-evictor",
        wit::FunctionKind::WindowTrigger => "window-trigger",
        wit::FunctionKind::Partitioner => "partitioner",
        wit::FunctionKind::AsyncMap => "async-map",
    };
    panic!(
        "the host called {export}, but function `{}` is a {kind} function",
        active.task.function
    )
}

/// Implements the WIT exports for module `M`.
pub struct Runtime<M>(PhantomData<M>);

impl<M: Module> library::Guest for Runtime<M> {
    fn describe() -> wit::ModuleInfo {
        wit::ModuleInfo {
            name: M::NAME.to_owned(),
            version: M::VERSION.to_owned(),
            functions: M::FUNCTIONS
                .iter()
                .map(|function| wit::FunctionInfo {
                    name: function.name.to_owned(),
                    kind: function.kind,
                    states: Vec::new(),
                })
                .collect(),
        }
    }

    fn init(task: wit::TaskInfo) -> Result<(), String> {
        scope::install_panic_hook();
        let task = TaskInfo::from_wit(task);
        let Some(entry) = M::FUNCTIONS.iter().find(|f| f.name == task.function) else {
            let names: Vec<&str> = M::FUNCTIONS.iter().map(|f| f.name).collect();
            return Err(format!(
                "module {} has no function `{}`; it exports: {}",
                M::NAME,
                task.function,
                names.join(", ")
            ));
        };
        ACTIVE.set(None);
        let instance = (entry.open)(&task).map_err(|e| format!("function `{}` could not start: {e}", task.function))?;
        ACTIVE.set(Some(Active {
            task,
            kind: entry.kind,
            instance,
            output: Output::default(),
            keys: KeyColumn::default(),
        }));
        Ok(())
    }
}

impl<M: Module> crate::__bindings::exports::weir::udf::state_migration::Guest for Runtime<M> {
    fn migrations() -> Vec<crate::__bindings::exports::weir::udf::state_migration::MigrationInfo> {
        crate::migration::describe(M::MIGRATIONS)
    }

    fn migrate(
        function: String,
        old_module_version: String,
        state: String,
        old_schema: String,
        values: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, String> {
        crate::migration::migrate(
            M::MIGRATIONS,
            &function,
            &old_module_version,
            &state,
            &old_schema,
            values,
        )
    }
}

impl<M: Module> transform::Guest for Runtime<M> {
    fn process(input: wit::Batch) -> wit::Output {
        const EXPORT: &str = "transform.process";
        with_active(EXPORT, |active| {
            let Instance::Transform(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.process(input, &mut active.output);
            scope::end_call();
            output
        })
    }
}

impl<M: Module> key_selector::Guest for Runtime<M> {
    fn select_keys(input: wit::Batch) -> wit::KeyOutput {
        const EXPORT: &str = "key-selector.select-keys";
        with_active(EXPORT, |active| {
            let Instance::KeySelector(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.select_keys(input, &mut active.keys);
            scope::end_call();
            output
        })
    }
}

impl<M: Module> keyed_process::Guest for Runtime<M> {
    fn process(context: wit::BatchContext, input: wit::KeyedBatch) -> wit::Output {
        const EXPORT: &str = "keyed-process.process";
        with_active(EXPORT, |active| {
            let Instance::KeyedProcess(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(true);
            let output = function.process(&context, input, &active.task, &mut active.output);
            scope::end_call();
            output
        })
    }

    fn on_timers(context: wit::BatchContext, timers: wit::TimerBatch) -> wit::Output {
        const EXPORT: &str = "keyed-process.on-timers";
        with_active(EXPORT, |active| {
            let Instance::KeyedProcess(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(true);
            let output = function.on_timers(&context, timers, &active.task, &mut active.output);
            scope::end_call();
            output
        })
    }
}

impl<M: Module> window_aggregate::Guest for Runtime<M> {
    fn add(accumulators: wit::Accumulators, slots: Vec<u32>, input: wit::Batch) -> window_aggregate::AddOutput {
        const EXPORT: &str = "window-aggregate.add";
        with_active(EXPORT, |active| {
            let Instance::WindowAggregate(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let (accumulators, errors) = function.add(&accumulators, &slots, &input);
            scope::end_call();
            window_aggregate::AddOutput { accumulators, errors }
        })
    }

    fn merge(a: wit::Accumulators, b: wit::Accumulators) -> wit::Accumulators {
        const EXPORT: &str = "window-aggregate.merge";
        with_active(EXPORT, |active| {
            let Instance::WindowAggregate(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let merged = function.merge(&a, &b);
            scope::end_call();
            merged
        })
    }

    fn results(
        accumulators: wit::Accumulators,
        keys: Vec<u8>,
        key_ends: Vec<u32>,
        windows: Vec<wit::Window>,
    ) -> wit::Batch {
        const EXPORT: &str = "window-aggregate.results";
        with_active(EXPORT, |active| {
            let Instance::WindowAggregate(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let batch = function.results(
                &accumulators,
                &keys,
                &key_ends,
                &windows,
                &active.task,
                &mut active.output,
            );
            scope::end_call();
            batch
        })
    }
}

impl<M: Module> join::Guest for Runtime<M> {
    fn join(pairs: join::JoinPairs) -> wit::Output {
        const EXPORT: &str = "join.join";
        with_active(EXPORT, |active| {
            let Instance::Join(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let output = function.join(pairs, &mut active.output);
            scope::end_call();
            output
        })
    }
}

impl<M: Module> keyed_co_process::Guest for Runtime<M> {
    fn process(context: wit::BatchContext, input: u32, batch: wit::KeyedBatch) -> wit::Output {
        const EXPORT: &str = "keyed-co-process.process";
        with_active(EXPORT, |active| {
            let Instance::KeyedCoProcess(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(true);
            let output = function.process(&context, input, batch, &active.task, &mut active.output);
            scope::end_call();
            output
        })
    }

    fn on_timers(context: wit::BatchContext, timers: wit::TimerBatch) -> wit::Output {
        const EXPORT: &str = "keyed-co-process.on-timers";
        with_active(EXPORT, |active| {
            let Instance::KeyedCoProcess(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(true);
            let output = function.on_timers(&context, timers, &active.task, &mut active.output);
            scope::end_call();
            output
        })
    }
}

impl<M: Module> watermark_generator::Guest for Runtime<M> {
    fn on_events(input: wit::Batch) -> Vec<watermark_generator::Punctuation> {
        const EXPORT: &str = "watermark-generator.on-events";
        with_active(EXPORT, |active| {
            let Instance::WatermarkGenerator(function) = &mut active.instance else {
                wrong_kind(active, EXPORT)
            };
            scope::begin_call(false);
            let punctuations = function.on_events(input);
            scope::end_call();
            punctuations
        })
    }
}
