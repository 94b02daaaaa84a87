//! What a function instance learns when it starts.

use crate::__bindings::weir::udf::types as wit;

/// Everything a function instance learns when it starts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// Which of the module's functions this instance runs.
    pub function: String,
    /// The operator's uid in the job.
    pub operator_uid: String,
    /// This subtask's index, `0..parallelism`.
    pub subtask_index: u32,
    /// How many subtasks run the operator.
    pub parallelism: u32,
    /// The operator's maximum parallelism (its number of key groups).
    pub max_parallelism: u32,
    /// The operator's `params` from the job file, in order.
    pub params: Vec<(String, String)>,
}

impl TaskInfo {
    /// The value of the parameter `name`, if the job file sets it.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl TaskInfo {
    /// Converts the WIT record.
    pub(crate) fn from_wit(task: wit::TaskInfo) -> Self {
        Self {
            function: task.function,
            operator_uid: task.operator_uid,
            subtask_index: task.subtask_index,
            parallelism: task.parallelism,
            max_parallelism: task.max_parallelism,
            params: task.params,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_params() {
        let task = TaskInfo {
            params: vec![("threshold".into(), "10".into())],
            ..TaskInfo::default()
        };
        assert_eq!(task.param("threshold"), Some("10"));
        assert_eq!(task.param("missing"), None);
    }
}
