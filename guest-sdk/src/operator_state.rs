//! Operator state (Flink's non-keyed `ListState`): a list per subtask of a
//! map, filter or flat-map function, checkpointed with the operator.
//!
//! Open it in the function's `open` with [`OperatorListState::split`] or
//! [`OperatorListState::union`]; on a restore it holds what the subtask's
//! share of the checkpoint is. When the parallelism changes, the lists of
//! every old subtask are concatenated in subtask order and either split into
//! even, contiguous shares (`split`) or given whole to every subtask
//! (`union`, e.g. for source offsets every subtask must see). Elements are
//! stored postcard-encoded.

use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__bindings::weir::udf::operator_state as wit;
use crate::{Error, Result};

/// A list of `T` per subtask.
pub struct OperatorListState<T> {
    name: String,
    inner: wit::OperatorListState,
    _value: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> OperatorListState<T> {
    /// Opens the list `name`, split evenly over the subtasks on a rescale.
    pub fn split(name: &str) -> Self {
        Self::open(name, wit::Redistribution::Split)
    }

    /// Opens the list `name`, given whole to every subtask on a restore at
    /// another parallelism (the union of every old subtask's list).
    pub fn union(name: &str) -> Self {
        Self::open(name, wit::Redistribution::Union)
    }

    fn open(name: &str, redistribution: wit::Redistribution) -> Self {
        Self {
            name: name.to_owned(),
            inner: wit::OperatorListState::new(name, redistribution),
            _value: PhantomData,
        }
    }

    /// The elements, in order.
    pub fn get(&self) -> Result<Vec<T>> {
        self.inner
            .get()
            .iter()
            .map(|bytes| {
                postcard::from_bytes(bytes).map_err(|e| {
                    Error::new(format!(
                        "operator state `{}`: stored element could not be decoded: {e}",
                        self.name
                    ))
                })
            })
            .collect()
    }

    /// Appends `value`.
    pub fn add(&self, value: &T) -> Result<()> {
        self.inner.add(&self.encode(value)?);
        Ok(())
    }

    /// Replaces the elements with `values`.
    pub fn update(&self, values: &[T]) -> Result<()> {
        let encoded = values.iter().map(|v| self.encode(v)).collect::<Result<Vec<_>>>()?;
        self.inner.update(&encoded);
        Ok(())
    }

    /// Removes every element.
    pub fn clear(&self) {
        self.inner.clear();
    }

    fn encode(&self, value: &T) -> Result<Vec<u8>> {
        postcard::to_allocvec(value)
            .map_err(|e| Error::new(format!("operator state `{}`: could not be encoded: {e}", self.name)))
    }
}

impl<T> fmt::Debug for OperatorListState<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OperatorListState").field("name", &self.name).finish()
    }
}
