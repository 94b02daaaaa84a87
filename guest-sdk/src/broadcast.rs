//! Broadcast state (Flink's broadcast state pattern): a map replicated on
//! every subtask, written by the records of a broadcast input and read by
//! the keyed input.
//!
//! A [`KeyedCoProcessFunction`](crate::KeyedCoProcessFunction) whose job
//! gives it a broadcast second input (`second_input = { input = "rules",
//! partition = "broadcast" }`) opens the state in `open` with
//! [`OpenContext::broadcast_state`](crate::OpenContext::broadcast_state),
//! writes it in `process_element2` (every subtask sees every broadcast
//! record, so every copy stays the same) and reads it in
//! `process_element1`, where writing it is an error that fails the task.
//! Keyed state and the record's key are not available in
//! `process_element2` (its key is empty). Keys and values are stored
//! postcard-encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::weir::udf::broadcast_state as wit;
use crate::{Error, Result};

/// A map from `K` to `V` that every subtask holds a copy of.
pub struct BroadcastState<K, V> {
    name: String,
    inner: wit::BroadcastMapState,
    _types: PhantomData<fn() -> (K, V)>,
}

fn encode<T: Serialize + ?Sized>(name: &str, value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::new(format!("broadcast state `{name}`: could not be encoded: {e}")))
}

fn decode<T: DeserializeOwned>(name: &str, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::new(format!(
            "broadcast state `{name}`: stored entry could not be decoded: {e}"
        ))
    })
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> BroadcastState<K, V> {
    /// Opens the broadcast state `name`.
    pub(crate) fn open(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            inner: wit::BroadcastMapState::new(name),
            _types: PhantomData,
        }
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let key = encode(&self.name, key)?;
        self.inner.get(&key).map(|bytes| decode(&self.name, &bytes)).transpose()
    }

    /// Sets the value of `key` (only while processing the broadcast input).
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let key = encode(&self.name, key)?;
        let value = encode(&self.name, value)?;
        self.inner.put(&key, &value);
        Ok(())
    }

    /// Removes `key` (only while processing the broadcast input).
    pub fn remove(&self, key: &K) -> Result<()> {
        let key = encode(&self.name, key)?;
        self.inner.remove(&key);
        Ok(())
    }

    /// Whether `key` has a value.
    pub fn contains(&self, key: &K) -> Result<bool> {
        Ok(self.inner.contains(&encode(&self.name, key)?))
    }

    /// Every entry, in no particular order.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        self.inner
            .entries()
            .into_iter()
            .map(|(k, v)| Ok((decode(&self.name, &k)?, decode(&self.name, &v)?)))
            .collect()
    }
}

impl<K, V> fmt::Debug for BroadcastState<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastState").field("name", &self.name).finish()
    }
}
