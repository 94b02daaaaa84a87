//! What a keyed process function sees when it starts and while it runs.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output::Output;
use crate::{
    AggregateFunction, AggregatingState, EventTime, ListState, MapState, ReducingState, Result, TaskInfo, Ttl,
    ValueState, timers,
};

/// Starts a [`KeyedProcessFunction`](crate::KeyedProcessFunction): the task,
/// and the opening of its keyed state.
///
/// Each state has a name, unique in the function; opening the same name
/// twice with different kinds fails the task. The `*_with_ttl` variants give
/// entries a time-to-live.
#[derive(Debug)]
pub struct OpenContext<'a> {
    task: &'a TaskInfo,
}

impl<'a> OpenContext<'a> {
    /// A context for `task`.
    pub(crate) fn new(task: &'a TaskInfo) -> Self {
        Self { task }
    }

    /// The task this instance runs.
    pub fn task(&self) -> &'a TaskInfo {
        self.task
    }

    /// Sets the schema state `name` declares when it is opened (call it
    /// before opening the state), instead of [`schema_of`](crate::schema_of)
    /// its value type (the type's name and shape): it is declared as
    /// written, so bump it whenever the encoding changes. Needed for types
    /// whose shape the SDK cannot trace. See [`Migration`](crate::Migration).
    pub fn set_state_schema(&mut self, name: &str, schema: &str) {
        crate::migration::set_schema(name, schema);
    }

    /// Opens a [`ValueState`].
    pub fn value_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> ValueState<T> {
        ValueState::open(name, None)
    }

    /// Opens a [`ValueState`] whose entries expire.
    pub fn value_state_with_ttl<T: Serialize + DeserializeOwned>(&mut self, name: &str, ttl: Ttl) -> ValueState<T> {
        ValueState::open(name, Some(ttl))
    }

    /// Opens a [`ListState`].
    pub fn list_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> ListState<T> {
        ListState::open(name, None)
    }

    /// Opens a [`ListState`] whose entries expire.
    pub fn list_state_with_ttl<T: Serialize + DeserializeOwned>(&mut self, name: &str, ttl: Ttl) -> ListState<T> {
        ListState::open(name, Some(ttl))
    }

    /// Opens a [`MapState`].
    pub fn map_state<K, V>(&mut self, name: &str) -> MapState<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        MapState::open(name, None)
    }

    /// Opens a [`BroadcastState`](crate::BroadcastState) (for a keyed
    /// co-process function with a broadcast second input).
    pub fn broadcast_state<K, V>(&mut self, name: &str) -> crate::BroadcastState<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        crate::BroadcastState::open(name)
    }

    /// Opens a [`MapState`] whose entries expire.
    pub fn map_state_with_ttl<K, V>(&mut self, name: &str, ttl: Ttl) -> MapState<K, V>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        MapState::open(name, Some(ttl))
    }

    /// Opens a [`ReducingState`] that combines values with `reduce`.
    pub fn reducing_state<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        reduce: fn(T, T) -> T,
    ) -> ReducingState<T> {
        ReducingState::open(name, reduce, None)
    }

    /// Opens a [`ReducingState`] whose entries expire.
    pub fn reducing_state_with_ttl<T: Serialize + DeserializeOwned>(
        &mut self,
        name: &str,
        reduce: fn(T, T) -> T,
        ttl: Ttl,
    ) -> ReducingState<T> {
        ReducingState::open(name, reduce, Some(ttl))
    }

    /// Opens an [`AggregatingState`] that aggregates values with `agg`.
    pub fn aggregating_state<A: AggregateFunction>(&mut self, name: &str, agg: A) -> AggregatingState<A> {
        AggregatingState::open(name, agg, None)
    }

    /// Opens an [`AggregatingState`] whose entries expire.
    pub fn aggregating_state_with_ttl<A: AggregateFunction>(
        &mut self,
        name: &str,
        agg: A,
        ttl: Ttl,
    ) -> AggregatingState<A> {
        AggregatingState::open(name, agg, Some(ttl))
    }
}

/// What a [`KeyedProcessFunction`](crate::KeyedProcessFunction) sees while it
/// handles a record or a timer: the current key, time, output and timers.
///
/// Emitted records take the timestamp of the record (or timer) being handled
/// unless given one.
#[derive(Debug)]
pub struct Context<'a> {
    key: &'a [u8],
    timestamp: EventTime,
    watermark: EventTime,
    processing_time: i64,
    task: &'a TaskInfo,
    out: &'a mut Output,
}

impl<'a> Context<'a> {
    /// A context for an element of `key` at `timestamp`.
    pub(crate) fn new(
        key: &'a [u8],
        timestamp: EventTime,
        (watermark, processing_time): (EventTime, i64),
        task: &'a TaskInfo,
        out: &'a mut Output,
    ) -> Self {
        Self {
            key,
            timestamp,
            watermark,
            processing_time,
            task,
            out,
        }
    }

    /// The current key.
    pub fn key(&self) -> &'a [u8] {
        self.key
    }

    /// The timestamp of the record being handled, or of the timer that fired.
    pub fn timestamp(&self) -> Option<EventTime> {
        Some(self.timestamp)
    }

    /// The operator's current event-time watermark.
    pub fn watermark(&self) -> EventTime {
        self.watermark
    }

    /// The host's wall clock when the batch was sent, ms since the Unix epoch.
    pub fn processing_time(&self) -> i64 {
        self.processing_time
    }

    /// The task this instance runs.
    pub fn task(&self) -> &'a TaskInfo {
        self.task
    }

    /// Emits a record with the current timestamp.
    pub fn emit(&mut self, payload: &[u8]) {
        self.out.emit(payload, self.timestamp);
    }

    /// Emits a record with the given timestamp.
    pub fn emit_with_timestamp(&mut self, payload: &[u8], timestamp: EventTime) {
        self.out.emit(payload, timestamp);
    }

    /// Emits `value`, postcard-encoded, with the current timestamp.
    pub fn emit_postcard<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.out.emit_postcard(value, self.timestamp)
    }

    /// Emits a record with the current timestamp to the side output `tag`.
    pub fn side_output(&mut self, tag: &str, payload: &[u8]) {
        self.out.side_output(tag, payload, self.timestamp);
    }

    /// Registers an event-time timer for the current key (again: no effect).
    pub fn register_event_time_timer(&mut self, timestamp: EventTime) {
        timers::register_event_time(timestamp);
    }

    /// Deletes the current key's event-time timer at `timestamp`, if any.
    pub fn delete_event_time_timer(&mut self, timestamp: EventTime) {
        timers::delete_event_time(timestamp);
    }

    /// Registers a processing-time timer for the current key (again: no
    /// effect).
    pub fn register_processing_time_timer(&mut self, timestamp: i64) {
        timers::register_processing_time(timestamp);
    }

    /// Deletes the current key's processing-time timer at `timestamp`, if any.
    pub fn delete_processing_time_timer(&mut self, timestamp: i64) {
        timers::delete_processing_time(timestamp);
    }
}
