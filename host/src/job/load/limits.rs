//! Job-wide settings, and the limits that keep a job file from asking for
//! more memory than a machine has.
//!
//! A few settings size allocations directly: a batch is allocated whole
//! (`batch_size`), a channel holds up to `channel_capacity` batches, a
//! sliding window copies each record into `size_ms / slide_ms` windows.
//! Without a bound, a typo (`batch_size = 4294967295`) passes validation
//! and aborts the run on a 200 GB allocation. Each bound is generous for
//! real jobs (Flink's own, where Flink has one) and is checked by
//! `weir validate` and `weir run` alike, with a message that names the
//! field, its line and the limit.

use std::fmt::Display;
use std::ops::Range;
use std::path::PathBuf;

use toml::Spanned;

use super::{
    Builder, DEFAULT_BATCH_SIZE, DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CHANNEL_CAPACITY, DEFAULT_MAX_PARALLELISM,
    DEFAULT_MEMORY_MB, MAX_BATCH_SIZE, MAX_CHANNEL_CAPACITY, MAX_MAX_PARALLELISM, MAX_MEMORY_MB,
    MAX_RECORDS_PER_CHANNEL, MAX_WINDOWS_PER_RECORD,
};
use crate::job::spec::JobSpec;
use crate::plan::restart::RestartStrategy;
use crate::plan::{Limits, Settings, StateBackendConfig};

impl Builder<'_> {
    /// The `[job]` settings with their defaults, checked against their limits.
    pub(super) fn settings(&mut self, spec: &JobSpec) -> Settings {
        let job = &spec.job;
        let max_parallelism = job.max_parallelism.as_ref().map_or(DEFAULT_MAX_PARALLELISM, |v| {
            self.bounded(
                v,
                "job → max_parallelism",
                MAX_MAX_PARALLELISM,
                " key groups (as in Flink)",
            )
        });
        let batch_size = job.batch_size.as_ref().map_or(DEFAULT_BATCH_SIZE, |v| {
            self.bounded(v, "job → batch_size", MAX_BATCH_SIZE, " records")
        });
        let channel_capacity = job.channel_capacity.as_ref().map_or(DEFAULT_CHANNEL_CAPACITY, |v| {
            self.bounded(v, "job → channel_capacity", MAX_CHANNEL_CAPACITY, " batches")
        });
        let in_flight = u64::from(batch_size) * u64::from(channel_capacity);
        if in_flight > MAX_RECORDS_PER_CHANNEL {
            let (span, field) = match (&job.channel_capacity, &job.batch_size) {
                (Some(capacity), _) => (capacity.span(), "job → channel_capacity"),
                (None, Some(batch)) => (batch.span(), "job → batch_size"),
                (None, None) => (0..0, "job → channel_capacity"), // the defaults are within
            };
            self.errors.push(self.locator.error(
                span,
                field,
                format!(
                    "batch_size × channel_capacity = {batch_size} × {channel_capacity} = {in_flight} records may wait in one channel; at most {MAX_RECORDS_PER_CHANNEL}: lower one of them"
                ),
            ));
        }
        let dead_letter = job
            .dead_letter
            .as_ref()
            .map_or_else(|| PathBuf::from("dead-letters.jsonl"), |p| self.path(p));
        let call_timeout_ms = job
            .limits
            .call_timeout_ms
            .as_ref()
            .map_or(DEFAULT_CALL_TIMEOUT_MS, |v| {
                self.positive_u64(v, "job → limits → call_timeout_ms")
            });
        let memory_mb = job.limits.memory_mb.as_ref().map_or(DEFAULT_MEMORY_MB, |v| {
            self.bounded(
                v,
                "job → limits → memory_mb",
                MAX_MEMORY_MB,
                " MiB (all that a 32-bit Wasm memory can address)",
            )
        });
        Settings {
            max_parallelism,
            batch_size: batch_size as usize,
            channel_capacity: channel_capacity as usize,
            dead_letter,
            limits: Limits {
                call_timeout_ms,
                memory_bytes: usize::try_from(memory_mb << 20).unwrap_or(usize::MAX),
            },
            checkpoint: None,
            restart: RestartStrategy::None,
            state_backend: StateBackendConfig::Heap,
            http: crate::plan::http::HttpSettings::default(),
        }
    }

    /// `value`, checked to be between 1 and `max` (`unit` follows the
    /// limit in the message); out of range, an error and the nearest bound.
    pub(super) fn bounded<T>(&mut self, value: &Spanned<T>, field: &str, max: T, unit: &str) -> T
    where
        T: Copy + PartialOrd + Display + From<u8>,
    {
        let found = *value.get_ref();
        if found < T::from(1) {
            self.errors
                .push(self.locator.error(value.span(), field, "must be at least 1"));
            return T::from(1);
        }
        if found > max {
            self.errors.push(self.locator.error(
                value.span(),
                field,
                format!("must be at most {max}{unit}, found {found}"),
            ));
            return max;
        }
        found
    }

    /// Checks that a record of sliding windows of `size` and `slide` (both
    /// at least 1) belongs to at most [`MAX_WINDOWS_PER_RECORD`] windows.
    pub(super) fn sliding_windows(&mut self, size: i64, slide: i64, span: Range<usize>, field: &str) -> bool {
        let windows = (size - 1) / slide + 1;
        if windows <= MAX_WINDOWS_PER_RECORD {
            return true;
        }
        self.errors.push(self.locator.error(
            span,
            field,
            format!(
                "each record belongs to size_ms / slide_ms = {size} / {slide} = {windows} windows; at most {MAX_WINDOWS_PER_RECORD}: use a larger slide_ms"
            ),
        ));
        false
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use super::Builder;
    use crate::job::error::Locator;
    use crate::job::load::{LoadOptions, load_job_text};
    use crate::wasm::{EngineOptions, WasmRuntime};

    /// Loads a source-to-sink job with `job` as its `[job]` table; the errors.
    fn errors(job: &str) -> String {
        let wasm = WasmRuntime::new(EngineOptions::default()).expect("engine");
        let text = format!(
            "[job]\n{job}\n\n[[source]]\nuid = \"in\"\ntype = \"generator\"\nevents = 10\n\n[[sink]]\nuid = \"out\"\ninput = \"in\"\ntype = \"stdout\"\n"
        );
        match load_job_text(Path::new("job.toml"), &text, &LoadOptions::default(), &wasm) {
            Ok(_) => String::new(),
            Err(errors) => errors.to_string(),
        }
    }

    #[test]
    fn the_largest_settings_pass() {
        assert_eq!(
            errors("max_parallelism = 32768\nbatch_size = 1048576\nlimits = { memory_mb = 4096 }"),
            ""
        );
        assert_eq!(errors("batch_size = 16384\nchannel_capacity = 1024"), "");
    }

    #[test]
    fn settings_beyond_their_limits_are_refused_naming_field_line_and_limit() {
        assert_eq!(
            errors("batch_size = 4294967295"),
            "job.toml:2: job → batch_size: must be at most 1048576 records, found 4294967295"
        );
        assert_eq!(
            errors("channel_capacity = 1025"),
            "job.toml:2: job → channel_capacity: must be at most 1024 batches, found 1025"
        );
        assert_eq!(
            errors("max_parallelism = 32769"),
            "job.toml:2: job → max_parallelism: must be at most 32768 key groups (as in Flink), found 32769"
        );
        assert_eq!(
            errors("limits = { memory_mb = 4097 }"),
            "job.toml:2: job → limits → memory_mb: must be at most 4096 MiB (all that a 32-bit Wasm memory can address), found 4097"
        );
        assert_eq!(
            errors("batch_size = 0"),
            "job.toml:2: job → batch_size: must be at least 1"
        );
    }

    #[test]
    fn records_waiting_in_a_channel_are_bounded() {
        assert_eq!(
            errors("batch_size = 1048576\nchannel_capacity = 17"),
            "job.toml:3: job → channel_capacity: batch_size × channel_capacity = 1048576 × 17 = 17825792 records may wait in one channel; at most 16777216: lower one of them"
        );
        assert_eq!(
            errors("batch_size = 1048576\nchannel_capacity = 16"),
            "",
            "the largest batch with the default capacity"
        );
    }

    #[test]
    fn parallelism_is_at_most_max_parallelism() {
        assert_eq!(
            errors("parallelism = 9\nmax_parallelism = 8"),
            "job.toml:5: `in` → parallelism: 9 exceeds max_parallelism 8"
        );
    }

    #[test]
    fn a_record_belongs_to_at_most_10000_sliding_windows() {
        let wasm = WasmRuntime::new(EngineOptions::default()).expect("engine");
        let mut builder = Builder {
            locator: Locator::new(Path::new("job.toml"), "[[operator]]\nwindow = {}\n"),
            unresolved: HashSet::new(),
            errors: Vec::new(),
            module_dirs: Vec::new(),
            wasm: &wasm,
            modules: HashMap::new(),
        };
        let window = 13..22;
        assert!(builder.sliding_windows(10_000, 1, window.clone(), "w"));
        assert!(builder.sliding_windows(100_000, 10, window.clone(), "w"));
        assert!(builder.sliding_windows(86_400_000, 60_000, window.clone(), "w"));
        assert_eq!(builder.errors, Vec::new());
        assert!(!builder.sliding_windows(100_001, 10, window.clone(), "w"));
        assert!(!builder.sliding_windows(60_000_000, 1, window, "w"));
        let messages: Vec<String> = builder.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            [
                "job.toml:2: w: each record belongs to size_ms / slide_ms = 100001 / 10 = 10001 windows; at most 10000: use a larger slide_ms",
                "job.toml:2: w: each record belongs to size_ms / slide_ms = 60000000 / 1 = 60000000 windows; at most 10000: use a larger slide_ms",
            ]
        );
    }
}
