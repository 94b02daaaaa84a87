//! Typed keyed state.
//!
//! Every handle reads and writes the entry of the current key: the key of the
//! record or timer being processed. Values (and map keys) are stored
//! postcard-encoded; a stored value that no longer decodes (say, after its
//! type changed) is an [`Error`] for the record being processed.
//!
//! Handles are created in [`KeyedProcessFunction::open`] through
//! [`OpenContext`](crate::OpenContext).
//!
//! [`KeyedProcessFunction::open`]: crate::KeyedProcessFunction::open

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::weir::udf::keyed_state as wit;
use crate::runtime::scope::select_current_key;
use crate::{AggregateFunction, Error, Result};

/// Time-to-live of state entries, in processing time (as in Flink).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ttl {
    /// How long an entry lives after it was last written (or read, with
    /// `update_on_read`), in milliseconds.
    pub ttl_ms: u64,
    /// Reading an entry also refreshes its time-to-live.
    pub update_on_read: bool,
}

impl Ttl {
    /// Entries expire `ttl_ms` after they were last written.
    pub const fn after_write(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            update_on_read: false,
        }
    }

    /// Entries expire `ttl_ms` after they were last written or read.
    pub const fn after_access(ttl_ms: u64) -> Self {
        Self {
            ttl_ms,
            update_on_read: true,
        }
    }

    /// Converts an optional TTL to the WIT record.
    pub(crate) fn to_wit(ttl: Option<Self>) -> Option<wit::TtlConfig> {
        ttl.map(|ttl| wit::TtlConfig {
            ttl_ms: ttl.ttl_ms,
            update_on_read: ttl.update_on_read,
        })
    }
}

/// Encodes a value of state `name`.
fn encode<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::new(format!("state `{name}`: value could not be encoded: {e}")))
}

/// Decodes a stored value of state `name`.
fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::new(format!("state `{name}`: stored value could not be decoded: {e}")))
}

/// Decodes an optional stored value of state `name`.
fn decode_opt<T: DeserializeOwned>(name: &str, bytes: Option<Vec<u8>>) -> Result<Option<T>> {
    bytes.map(|bytes| decode(name, &bytes)).transpose()
}

/// A single value per key.
pub struct ValueState<T> {
    name: String,
    inner: wit::ValueState,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    /// Opens the state `name`.
    pub(crate) fn open(name: &str, ttl: Option<Ttl>) -> Self {
        Self {
            name: name.to_owned(),
            inner: {
                crate::migration::declare::<T>(name);
                wit::ValueState::new(name, Ttl::to_wit(ttl))
            },
            _value: PhantomData,
        }
    }

    /// The current key's value, if it has one.
    pub fn get(&self) -> Result<Option<T>> {
        select_current_key();
        decode_opt(&self.name, self.inner.get())
    }

    /// Sets the current key's value.
    pub fn set(&self, value: &T) -> Result<()> {
        let bytes = encode(&self.name, value)?;
        select_current_key();
        self.inner.set(&bytes);
        Ok(())
    }

    /// Removes the current key's value.
    pub fn clear(&self) {
        select_current_key();
        self.inner.clear();
    }
}

/// A list of values per key.
pub struct ListState<T> {
    name: String,
    inner: wit::ListState,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    /// Opens the state `name`.
    pub(crate) fn open(name: &str, ttl: Option<Ttl>) -> Self {
        Self {
            name: name.to_owned(),
            inner: {
                crate::migration::declare::<T>(name);
                wit::ListState::new(name, Ttl::to_wit(ttl))
            },
            _value: PhantomData,
        }
    }

    /// The current key's list (empty if it has none).
    pub fn get(&self) -> Result<Vec<T>> {
        select_current_key();
        self.inner.get().iter().map(|bytes| decode(&self.name, bytes)).collect()
    }

    /// Appends a value to the current key's list.
    pub fn add(&self, value: &T) -> Result<()> {
        let bytes = encode(&self.name, value)?;
        select_current_key();
        self.inner.add(&bytes);
        Ok(())
    }

    /// Replaces the current key's list.
    pub fn update(&self, values: &[T]) -> Result<()> {
        let encoded = values
            .iter()
            .map(|value| encode(&self.name, value))
            .collect::<Result<Vec<_>>>()?;
        select_current_key();
        self.inner.update(&encoded);
        Ok(())
    }

    /// Removes the current key's list.
    pub fn clear(&self) {
        select_current_key();
        self.inner.clear();
    }
}

/// A map per key.
///
/// The order of [`entries`](Self::entries) is the host's (by encoded key),
/// not `K`'s: sort them if order matters.
pub struct MapState<K, V> {
    name: String,
    inner: wit::MapState,
    _entry: PhantomData<fn() -> (K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<K, V> {
    /// Opens the state `name`.
    pub(crate) fn open(name: &str, ttl: Option<Ttl>) -> Self {
        Self {
            name: name.to_owned(),
            inner: {
                crate::migration::declare::<V>(name);
                wit::MapState::new(name, Ttl::to_wit(ttl))
            },
            _entry: PhantomData,
        }
    }

    /// The value of `key` in the current key's map.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = encode(&self.name, key)?;
        select_current_key();
        decode_opt(&self.name, self.inner.get(&key))
    }

    /// Sets the value of `key` in the current key's map.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let key = encode(&self.name, key)?;
        let value = encode(&self.name, value)?;
        select_current_key();
        self.inner.put(&key, &value);
        Ok(())
    }

    /// Removes `key` from the current key's map.
    pub fn remove(&self, key: &K) -> Result<()> {
        let key = encode(&self.name, key)?;
        select_current_key();
        self.inner.remove(&key);
        Ok(())
    }

    /// Whether the current key's map has `key`.
    pub fn contains(&self, key: &K) -> Result<bool> {
        let key = encode(&self.name, key)?;
        select_current_key();
        Ok(self.inner.contains(&key))
    }

    /// All entries of the current key's map.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        select_current_key();
        self.inner
            .entries()
            .iter()
            .map(|(key, value)| Ok((decode(&self.name, key)?, decode(&self.name, value)?)))
            .collect()
    }

    /// Whether the current key's map is empty.
    pub fn is_empty(&self) -> bool {
        select_current_key();
        self.inner.is_empty()
    }

    /// Removes the current key's map.
    pub fn clear(&self) {
        select_current_key();
        self.inner.clear();
    }
}

/// The running reduction of the values added for a key, with a reduce
/// function run in the guest.
pub struct ReducingState<T> {
    name: String,
    inner: wit::ReducingState,
    reduce: fn(T, T) -> T,
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    /// Opens the state `name`.
    pub(crate) fn open(name: &str, reduce: fn(T, T) -> T, ttl: Option<Ttl>) -> Self {
        Self {
            name: name.to_owned(),
            inner: {
                crate::migration::declare::<T>(name);
                wit::ReducingState::new(name, Ttl::to_wit(ttl))
            },
            reduce,
        }
    }

    /// The current key's reduction, if values were added.
    pub fn get(&self) -> Result<Option<T>> {
        select_current_key();
        decode_opt(&self.name, self.inner.get())
    }

    /// Reduces `value` into the current key's reduction.
    pub fn add(&self, value: T) -> Result<()> {
        let reduced = match self.get()? {
            Some(current) => (self.reduce)(current, value),
            None => value,
        };
        let bytes = encode(&self.name, &reduced)?;
        self.inner.set(&bytes);
        Ok(())
    }

    /// Removes the current key's reduction.
    pub fn clear(&self) {
        select_current_key();
        self.inner.clear();
    }
}

/// The accumulator of an [`AggregateFunction`] per key.
pub struct AggregatingState<A> {
    name: String,
    inner: wit::AggregatingState,
    agg: A,
}

impl<A: AggregateFunction> AggregatingState<A> {
    /// Opens the state `name`.
    pub(crate) fn open(name: &str, agg: A, ttl: Option<Ttl>) -> Self {
        Self {
            name: name.to_owned(),
            inner: {
                crate::migration::declare::<A::Acc>(name);
                wit::AggregatingState::new(name, Ttl::to_wit(ttl))
            },
            agg,
        }
    }

    /// The current key's accumulator, if values were added.
    fn accumulator(&self) -> Result<Option<A::Acc>> {
        select_current_key();
        decode_opt(&self.name, self.inner.get())
    }

    /// The aggregate of the current key's values, if values were added.
    pub fn get(&self) -> Result<Option<A::Out>> {
        Ok(self.accumulator()?.map(|acc| self.agg.get_result(&acc)))
    }

    /// Adds `value` to the current key's accumulator.
    pub fn add(&self, value: A::In) -> Result<()> {
        let acc = match self.accumulator()? {
            Some(acc) => acc,
            None => self.agg.create_accumulator(),
        };
        let acc = self.agg.add(value, acc);
        let bytes = encode(&self.name, &acc)?;
        self.inner.set(&bytes);
        Ok(())
    }

    /// Removes the current key's accumulator.
    pub fn clear(&self) {
        select_current_key();
        self.inner.clear();
    }
}

macro_rules! debug_by_name {
    ($($state:ident<$($param:ident),+>),+) => {$(
        impl<$($param),+> fmt::Debug for $state<$($param),+> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($state)).field("name", &self.name).finish_non_exhaustive()
            }
        }
    )+};
}

debug_by_name!(
    ValueState<T>,
    ListState<T>,
    MapState<K, V>,
    ReducingState<T>,
    AggregatingState<A>
);
