//! The data of a Wasm store, and the host side of every WIT import.
//!
//! Keyed state resources are handles to registered states: the resource's
//! representation is the backend's [`StateId`], so a state call costs one
//! lookup, with no resource table in between. Every keyed call reads and
//! writes the entry of the *current key*, which the guest selects by position
//! in the batch it is processing (`key-scope.select-key`).

use wasmtime::component::{HasSelf, Linker, Resource, ResourceTable};
use wasmtime::format_err as anyhow;
use wasmtime::{StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::Limits;
use super::bindings::AnyModule;
use super::bindings::weir::udf::keyed_state::{
    self, AggregatingState, ListState, MapState, ReducingState, TtlConfig, ValueState,
};
use super::bindings::weir::udf::{host, key_scope, timers, types};
use super::guest_output::{GuestOutput, Stream};
use crate::record::batch::span;
use crate::state::TimerService;
use crate::state::{KeyedStateBackend, StateDescriptor, StateId, StateKind, ttl};
use crate::time::TimeDomain;

/// Why the guest last said it would trap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanicReport {
    /// The panic message.
    pub message: String,
    /// The record of the current batch being processed, if known.
    pub record_index: Option<u32>,
}

/// Keyed context of a keyed operator's store: state, timers and the keys of
/// the batch being processed.
pub struct KeyedScope {
    /// The state backend of this subtask.
    pub backend: Box<dyn KeyedStateBackend>,
    /// The timers of this subtask.
    pub timers: TimerService,
    /// Keys of the batch being processed, back to back.
    pub keys: Vec<u8>,
    /// End offsets of `keys`.
    pub key_ends: Vec<u32>,
    /// Processing time of the current call, for TTL.
    pub now_ms: i64,
    /// The call processes a broadcast input: broadcast state is writable,
    /// keyed state is not available.
    pub broadcast_side: bool,
    scratch: Vec<u8>,
}

impl KeyedScope {
    /// A scope over `backend` with no timers.
    pub fn new(backend: Box<dyn KeyedStateBackend>) -> Self {
        Self {
            backend,
            timers: TimerService::new(),
            keys: Vec::new(),
            key_ends: Vec::new(),
            now_ms: 0,
            broadcast_side: false,
            scratch: Vec::new(),
        }
    }

    /// Makes the keys of a batch the ones `select-key` picks from.
    pub fn set_batch_keys(&mut self, keys: &[u8], key_ends: &[u32]) {
        self.keys.clear();
        self.keys.extend_from_slice(keys);
        self.key_ends.clear();
        self.key_ends.extend_from_slice(key_ends);
    }

    fn ttl_of(&self, state: StateId) -> wasmtime::Result<Option<crate::state::TtlConfig>> {
        Ok(self.backend.descriptor(state)?.ttl)
    }

    /// Reads an entry, honouring the state's time-to-live.
    fn read(&mut self, state: StateId, user_key: &[u8]) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(stored) = self.backend.get(state, user_key)? else {
            return Ok(None);
        };
        let Some(config) = self.ttl_of(state)? else {
            return Ok(Some(stored));
        };
        let (expires_at, value) = ttl::unwrap(&stored).ok_or_else(|| anyhow!("corrupt TTL entry"))?;
        if ttl::is_expired(expires_at, self.now_ms) {
            self.backend.delete(state, user_key)?;
            return Ok(None);
        }
        let value = value.to_vec();
        if config.update_on_read {
            self.write(state, user_key, &value)?;
        }
        Ok(Some(value))
    }

    /// Writes an entry, stamping its expiry if the state has a time-to-live.
    fn write(&mut self, state: StateId, user_key: &[u8], value: &[u8]) -> wasmtime::Result<()> {
        match self.ttl_of(state)? {
            None => self.backend.put(state, user_key, value)?,
            Some(config) => {
                let expires_at = self
                    .now_ms
                    .saturating_add(i64::try_from(config.ttl_ms).unwrap_or(i64::MAX));
                let mut scratch = std::mem::take(&mut self.scratch);
                ttl::wrap(value, expires_at, &mut scratch);
                let result = self.backend.put(state, user_key, &scratch);
                self.scratch = scratch;
                result?;
            }
        }
        Ok(())
    }

    /// All live entries of a map-like state for the current key.
    fn live_entries(&mut self, state: StateId) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let entries = self.backend.entries(state)?;
        if self.ttl_of(state)?.is_none() {
            return Ok(entries);
        }
        let mut live = Vec::with_capacity(entries.len());
        for (user_key, _) in entries {
            if let Some(value) = self.read(state, &user_key)? {
                live.push((user_key, value));
            }
        }
        Ok(live)
    }

    fn current_key(&self) -> wasmtime::Result<Vec<u8>> {
        if self.broadcast_side {
            return Err(anyhow!(
                "timers are not available while processing the broadcast input (process_element2)"
            ));
        }
        self.backend
            .current_key()
            .map(<[u8]>::to_vec)
            .ok_or_else(|| anyhow!("timers were used outside a keyed context (no current key)"))
    }
}

/// The data of one store: WASI (nothing granted but stdout and stderr, which
/// go to the log), limits, the keyed scope.
pub struct HostState {
    label: String,
    subtask: Option<u32>,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory limits of the instance.
    pub limits: StoreLimits,
    /// The last panic the guest reported.
    pub panic: Option<PanicReport>,
    /// State and timers, for keyed operators.
    pub keyed: Option<KeyedScope>,
    /// The schemas of the states the guest declared (`state-schema`).
    pub schemas: Vec<(String, String)>,
}

impl HostState {
    /// Store data for `label` (an operator uid, or what the store is for)
    /// under `limits`, running no subtask.
    pub fn new(label: &str, limits: Limits) -> Self {
        Self::build(label, None, limits)
    }

    /// Store data for subtask `subtask` of operator `operator` under `limits`.
    pub fn for_subtask(operator: &str, subtask: u32, limits: Limits) -> Self {
        Self::build(operator, Some(subtask), limits)
    }

    fn build(label: &str, subtask: Option<u32>, limits: Limits) -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput::new(label, subtask, Stream::Stdout))
            .stderr(GuestOutput::new(label, subtask, Stream::Stderr))
            .build();
        Self {
            label: label.to_string(),
            subtask,
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .trap_on_grow_failure(true)
                .build(),
            panic: None,
            keyed: None,
            schemas: Vec::new(),
        }
    }

    fn scope(&mut self) -> wasmtime::Result<&mut KeyedScope> {
        self.keyed
            .as_mut()
            .ok_or_else(|| anyhow!("keyed state and timers are only available to keyed process functions"))
    }

    fn open(&mut self, name: String, kind: StateKind, ttl: Option<TtlConfig>) -> wasmtime::Result<u32> {
        let descriptor = StateDescriptor {
            name,
            kind,
            ttl: ttl.map(|t| crate::state::TtlConfig {
                ttl_ms: t.ttl_ms,
                update_on_read: t.update_on_read,
            }),
        };
        let id = self.scope()?.backend.register(&descriptor)?;
        Ok(id.0)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Adds every import a Weir module may use (the WIT package and WASI) to
/// `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    AnyModule::add_to_linker::<HostState, HasSelf<HostState>>(linker, |state| state)?;
    wasmtime_wasi::p2::add_to_linker_sync(linker)
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) -> wasmtime::Result<()> {
        let (operator, subtask) = (self.label.as_str(), self.subtask);
        match level {
            host::LogLevel::Trace => tracing::trace!(operator, subtask, "{message}"),
            host::LogLevel::Debug => tracing::debug!(operator, subtask, "{message}"),
            host::LogLevel::Info => tracing::info!(operator, subtask, "{message}"),
            host::LogLevel::Warn => tracing::warn!(operator, subtask, "{message}"),
            host::LogLevel::Error => tracing::error!(operator, subtask, "{message}"),
        }
        Ok(())
    }

    fn report_panic(&mut self, message: String, record_index: Option<u32>) -> wasmtime::Result<()> {
        self.panic = Some(PanicReport { message, record_index });
        Ok(())
    }
}

impl key_scope::Host for HostState {
    fn select_key(&mut self, index: u32) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        if scope.broadcast_side {
            return Err(anyhow!(
                "keyed state is not available while processing the broadcast input (process_element2)"
            ));
        }
        let i = index as usize;
        if i >= scope.key_ends.len() {
            return Err(anyhow!(
                "select-key({index}) is out of range: the batch has {} elements",
                scope.key_ends.len()
            ));
        }
        let range = span(&scope.key_ends, i);
        scope.backend.set_current_key(&scope.keys[range]);
        Ok(())
    }
}

impl timers::Host for HostState {
    fn register_event_time_timer(&mut self, timestamp: i64) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let key = scope.current_key()?;
        scope.timers.register(TimeDomain::EventTime, &key, timestamp);
        Ok(())
    }

    fn delete_event_time_timer(&mut self, timestamp: i64) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let key = scope.current_key()?;
        scope.timers.delete(TimeDomain::EventTime, &key, timestamp);
        Ok(())
    }

    fn register_processing_time_timer(&mut self, timestamp: i64) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let key = scope.current_key()?;
        scope.timers.register(TimeDomain::ProcessingTime, &key, timestamp);
        Ok(())
    }

    fn delete_processing_time_timer(&mut self, timestamp: i64) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let key = scope.current_key()?;
        scope.timers.delete(TimeDomain::ProcessingTime, &key, timestamp);
        Ok(())
    }
}

impl keyed_state::Host for HostState {}

/// The empty user key under which value-like states keep their entry.
const VALUE: &[u8] = &[];

impl keyed_state::HostValueState for HostState {
    fn new(&mut self, name: String, ttl: Option<TtlConfig>) -> wasmtime::Result<Resource<ValueState>> {
        Ok(Resource::new_own(self.open(name, StateKind::Value, ttl)?))
    }
    fn get(&mut self, this: Resource<ValueState>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.scope()?.read(StateId(this.rep()), VALUE)
    }
    fn set(&mut self, this: Resource<ValueState>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.scope()?.write(StateId(this.rep()), VALUE, &value)
    }
    fn clear(&mut self, this: Resource<ValueState>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.clear(StateId(this.rep()))?)
    }
    fn drop(&mut self, _this: Resource<ValueState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl keyed_state::HostReducingState for HostState {
    fn new(&mut self, name: String, ttl: Option<TtlConfig>) -> wasmtime::Result<Resource<ReducingState>> {
        Ok(Resource::new_own(self.open(name, StateKind::Reducing, ttl)?))
    }
    fn get(&mut self, this: Resource<ReducingState>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.scope()?.read(StateId(this.rep()), VALUE)
    }
    fn set(&mut self, this: Resource<ReducingState>, accumulator: Vec<u8>) -> wasmtime::Result<()> {
        self.scope()?.write(StateId(this.rep()), VALUE, &accumulator)
    }
    fn clear(&mut self, this: Resource<ReducingState>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.clear(StateId(this.rep()))?)
    }
    fn drop(&mut self, _this: Resource<ReducingState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl keyed_state::HostAggregatingState for HostState {
    fn new(&mut self, name: String, ttl: Option<TtlConfig>) -> wasmtime::Result<Resource<AggregatingState>> {
        Ok(Resource::new_own(self.open(name, StateKind::Aggregating, ttl)?))
    }
    fn get(&mut self, this: Resource<AggregatingState>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.scope()?.read(StateId(this.rep()), VALUE)
    }
    fn set(&mut self, this: Resource<AggregatingState>, accumulator: Vec<u8>) -> wasmtime::Result<()> {
        self.scope()?.write(StateId(this.rep()), VALUE, &accumulator)
    }
    fn clear(&mut self, this: Resource<AggregatingState>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.clear(StateId(this.rep()))?)
    }
    fn drop(&mut self, _this: Resource<AggregatingState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl keyed_state::HostListState for HostState {
    fn new(&mut self, name: String, ttl: Option<TtlConfig>) -> wasmtime::Result<Resource<ListState>> {
        Ok(Resource::new_own(self.open(name, StateKind::List, ttl)?))
    }
    fn get(&mut self, this: Resource<ListState>) -> wasmtime::Result<Vec<Vec<u8>>> {
        let stored = self.scope()?.read(StateId(this.rep()), VALUE)?;
        stored.map_or(Ok(Vec::new()), |bytes| list_codec::decode(&bytes))
    }
    fn add(&mut self, this: Resource<ListState>, value: Vec<u8>) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let state = StateId(this.rep());
        let mut stored = scope.read(state, VALUE)?.unwrap_or_default();
        list_codec::push(&mut stored, &value);
        scope.write(state, VALUE, &stored)
    }
    fn update(&mut self, this: Resource<ListState>, values: Vec<Vec<u8>>) -> wasmtime::Result<()> {
        let scope = self.scope()?;
        let state = StateId(this.rep());
        if values.is_empty() {
            return Ok(scope.backend.clear(state)?);
        }
        let mut stored = Vec::new();
        for value in &values {
            list_codec::push(&mut stored, value);
        }
        scope.write(state, VALUE, &stored)
    }
    fn clear(&mut self, this: Resource<ListState>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.clear(StateId(this.rep()))?)
    }
    fn drop(&mut self, _this: Resource<ListState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

impl keyed_state::HostMapState for HostState {
    fn new(&mut self, name: String, ttl: Option<TtlConfig>) -> wasmtime::Result<Resource<MapState>> {
        Ok(Resource::new_own(self.open(name, StateKind::Map, ttl)?))
    }
    fn get(&mut self, this: Resource<MapState>, key: Vec<u8>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.scope()?.read(StateId(this.rep()), &key)
    }
    fn put(&mut self, this: Resource<MapState>, key: Vec<u8>, value: Vec<u8>) -> wasmtime::Result<()> {
        self.scope()?.write(StateId(this.rep()), &key, &value)
    }
    fn remove(&mut self, this: Resource<MapState>, key: Vec<u8>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.delete(StateId(this.rep()), &key)?)
    }
    fn contains(&mut self, this: Resource<MapState>, key: Vec<u8>) -> wasmtime::Result<bool> {
        Ok(self.scope()?.read(StateId(this.rep()), &key)?.is_some())
    }
    fn entries(&mut self, this: Resource<MapState>) -> wasmtime::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.scope()?.live_entries(StateId(this.rep()))
    }
    fn is_empty(&mut self, this: Resource<MapState>) -> wasmtime::Result<bool> {
        Ok(self.scope()?.live_entries(StateId(this.rep()))?.is_empty())
    }
    fn clear(&mut self, this: Resource<MapState>) -> wasmtime::Result<()> {
        Ok(self.scope()?.backend.clear(StateId(this.rep()))?)
    }
    fn drop(&mut self, _this: Resource<MapState>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// How a list state's elements are framed in one stored value: each element
/// is a little-endian `u32` length followed by its bytes.
pub(crate) mod list_codec {
    use wasmtime::format_err as anyhow;

    /// Appends one element.
    pub(crate) fn push(stored: &mut Vec<u8>, value: &[u8]) {
        stored.extend_from_slice(&u32::try_from(value.len()).unwrap_or(u32::MAX).to_le_bytes());
        stored.extend_from_slice(value);
    }

    /// Splits a stored list into its elements.
    pub(crate) fn decode(mut stored: &[u8]) -> wasmtime::Result<Vec<Vec<u8>>> {
        let mut values = Vec::new();
        while !stored.is_empty() {
            let header: [u8; 4] = stored
                .get(..4)
                .and_then(|h| h.try_into().ok())
                .ok_or_else(|| anyhow!("corrupt list state entry"))?;
            let len = u32::from_le_bytes(header) as usize;
            let value = stored
                .get(4..4 + len)
                .ok_or_else(|| anyhow!("corrupt list state entry"))?;
            values.push(value.to_vec());
            stored = &stored[4 + len..];
        }
        Ok(values)
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn lists_round_trip() {
            let mut stored = Vec::new();
            for value in [&b"a"[..], b"", b"ccc"] {
                super::push(&mut stored, value);
            }
            assert_eq!(
                super::decode(&stored).unwrap(),
                vec![b"a".to_vec(), vec![], b"ccc".to_vec()]
            );
            assert!(super::decode(&stored[..stored.len() - 1]).is_err());
        }
    }
}
