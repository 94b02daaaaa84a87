//! The macro that turns a crate into a Weir module.

/// Exports functions as a Weir module (the WIT world `any-module`).
///
/// Invoke it once per crate, listing each function as
/// `kind "name" => Type`, where `kind` is one of `map`, `filter`, `flat_map`,
/// `key_selector`, `keyed_process`, `window_aggregate`, `join`,
/// `keyed_co_process`, `watermark_generator`, `reduce`
/// ([`ReduceFunction`](crate::ReduceFunction), run as a window aggregate),
/// `process_window` ([`ProcessWindowFunction`](crate::ProcessWindowFunction)),
/// `evictor` ([`Evictor`](crate::Evictor)), `trigger`
/// ([`Trigger`](crate::Trigger)), `partitioner`
/// ([`Partitioner`](crate::Partitioner), a Kafka sink's) or `async_map`
/// ([`AsyncMap`](crate::AsyncMap)) and `Type`
/// implements the matching trait ([`Map`](crate::Map),
/// [`Filter`](crate::Filter), [`FlatMap`](crate::FlatMap),
/// [`KeySelector`](crate::KeySelector),
/// [`KeyedProcessFunction`](crate::KeyedProcessFunction),
/// [`WindowAggregate`](crate::WindowAggregate),
/// [`JoinFunction`](crate::JoinFunction),
/// [`KeyedCoProcessFunction`](crate::KeyedCoProcessFunction),
/// [`WatermarkGenerator`](crate::WatermarkGenerator)). Job files refer to
/// functions by these names.
///
/// The module always exports every interface of the world; the host calls
/// only those of the kinds the module's functions have.
///
/// ```ignore
/// weir_sdk::export_functions! {
///     flat_map "tokenize" => Tokenize,
///     key_selector "word" => WordKey,
///     keyed_process "count" => Count,
///     window_aggregate "windowed_count" => WindowedCount,
/// }
/// ```
///
/// State [`Migration`](crate::Migration)s follow the functions, after
/// `; migrations:` (`keyed_process "count" => Count; migrations: CountV1`).
///
/// After the functions, `; states { value "name" => Type, map "name" => (Key, Value) }`
/// optionally says how the module's states decode, so that
/// `weir state dump` prints them as JSON (see [`MapTypes`](crate::MapTypes)).
///
/// The module is named after the crate (`CARGO_PKG_NAME`) and versioned
/// with it (`CARGO_PKG_VERSION`).
#[macro_export]
macro_rules! export_functions {
    ($($kind:ident $name:literal => $function:ty),+ $(,)?
     $(; migrations: $($migration:ty),+ $(,)?)?
     $(; states { $($state_kind:ident $state:literal => $state_type:ty),* $(,)? })?) => {
        #[doc(hidden)]
        #[allow(unsafe_code)]
        const _: () = {
            struct __WeirModule;

            impl $crate::__private::Module for __WeirModule {
                const NAME: &'static str = ::core::env!("CARGO_PKG_NAME");
                const VERSION: &'static str = ::core::env!("CARGO_PKG_VERSION");
                const FUNCTIONS: &'static [$crate::__private::FunctionEntry] = &[
                    $($crate::export_functions!(@entry $kind $name $function)),+
                ];
                const MIGRATIONS: &'static [$crate::__private::MigrationEntry] = &[
                    $($($crate::__private::MigrationEntry::of::<$migration>()),+)?
                ];
                const STATE_CODECS: &'static [$crate::__private::StateCodec] = &[
                    $($($crate::export_functions!(@state $state_kind $state $state_type)),*)?
                ];
            }

            const _: () = $crate::__private::check_unique_names(
                <__WeirModule as $crate::__private::Module>::FUNCTIONS,
            );

            type __WeirRuntime = $crate::__private::Runtime<__WeirModule>;

            $crate::__bindings::export!(__WeirRuntime with_types_in $crate::__bindings);
        };
    };
    (@entry map $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::map::<$function>($name)
    };
    (@entry filter $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::filter::<$function>($name)
    };
    (@entry flat_map $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::flat_map::<$function>($name)
    };
    (@entry key_selector $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::key_selector::<$function>($name)
    };
    (@entry keyed_process $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::keyed_process::<$function>($name)
    };
    (@entry window_aggregate $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::window_aggregate::<$function>($name)
    };
    (@entry join $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::join::<$function>($name)
    };
    (@entry keyed_co_process $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::keyed_co_process::<$function>($name)
    };
    (@entry watermark_generator $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::watermark_generator::<$function>($name)
    };
    (@entry reduce $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::reduce::<$function>($name)
    };
    (@entry process_window $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::process_window::<$function>($name)
    };
    (@entry evictor $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::evictor::<$function>($name)
    };
    (@entry trigger $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::trigger::<$function>($name)
    };
    (@entry partitioner $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::partitioner::<$function>($name)
    };
    (@entry async_map $name:literal $function:ty) => {
        $crate::__private::FunctionEntry::async_map::<$function>($name)
    };
    (@state value $name:literal $type:ty) => {
        $crate::__private::StateCodec::value::<$type>($name)
    };
    (@state map $name:literal $type:ty) => {
        $crate::__private::StateCodec::map::<$type>($name)
    };
    (@state $kind:ident $name:literal $type:ty) => {
        ::core::compile_error!(::core::concat!(
            "unknown state codec `",
            ::core::stringify!($kind),
            "`: expected value or map"
        ))
    };
    (@entry $kind:ident $name:literal $function:ty) => {
        ::core::compile_error!(::core::concat!(
            "unknown function kind `",
            ::core::stringify!($kind),
            "`: expected map, filter, flat_map, key_selector, keyed_process, window_aggregate, join, keyed_co_process, watermark_generator, reduce, process_window, evictor, trigger, partitioner or async_map"
        ))
    };
}
