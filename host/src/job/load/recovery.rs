//! Checkpointing and restart settings.

use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::Builder;
use crate::job::spec::{CheckpointSpec, RestartKind, RestartSpec};
use crate::plan::restart::RestartStrategy;
use crate::plan::{CheckpointMode, CheckpointSettings};

impl Builder<'_> {
    /// The checkpoint settings, with their defaults.
    pub(super) fn checkpoint(&mut self, spec: &Spanned<CheckpointSpec>) -> CheckpointSettings {
        let spec = spec.get_ref();
        let field = |name: &str| format!("checkpoint → {name}");
        CheckpointSettings {
            dir: spec
                .dir
                .as_ref()
                .map_or_else(|| PathBuf::from("checkpoints"), |d| self.path(d)),
            interval_ms: spec
                .interval_ms
                .as_ref()
                .map_or(10_000, |v| self.positive_u64(v, &field("interval_ms"))),
            timeout_ms: spec
                .timeout_ms
                .as_ref()
                .map_or(600_000, |v| self.positive_u64(v, &field("timeout_ms"))),
            min_pause_ms: spec.min_pause_ms.unwrap_or(0),
            max_concurrent: spec
                .max_concurrent
                .as_ref()
                .map_or(1, |v| self.positive(v, &field("max_concurrent"))) as usize,
            tolerable_failures: spec.tolerable_failures.unwrap_or(0),
            retain: spec.retain.as_ref().map_or(3, |v| self.positive(v, &field("retain"))) as usize,
            mode: spec.mode.unwrap_or(CheckpointMode::ExactlyOnce),
        }
    }

    /// The restart strategy (Flink's default: fixed delay with checkpoints, none without).
    pub(super) fn restart(&mut self, spec: Option<&Spanned<RestartSpec>>, checkpointing: bool) -> RestartStrategy {
        let Some(spec) = spec else {
            // As in Flink: with checkpoints a failed job restarts, without it fails.
            return if checkpointing {
                RestartStrategy::FixedDelay {
                    attempts: 3,
                    delay: Duration::from_secs(1),
                }
            } else {
                RestartStrategy::None
            };
        };
        let spec = spec.get_ref();
        let attempts = spec.attempts.unwrap_or(3);
        match spec.strategy.get_ref() {
            RestartKind::None => RestartStrategy::None,
            RestartKind::FixedDelay => RestartStrategy::FixedDelay {
                attempts,
                delay: Duration::from_millis(spec.delay_ms.unwrap_or(1_000)),
            },
            RestartKind::ExponentialBackoff => {
                let multiplier = spec.multiplier.unwrap_or(2.0);
                if multiplier.is_nan() || multiplier < 1.0 {
                    self.errors.push(self.locator.error(
                        spec.strategy.span(),
                        "restart → multiplier",
                        format!("must be at least 1.0, found {multiplier}"),
                    ));
                }
                RestartStrategy::ExponentialBackoff {
                    attempts,
                    initial: Duration::from_millis(spec.initial_delay_ms.unwrap_or(1_000)),
                    max: Duration::from_millis(spec.max_delay_ms.unwrap_or(60_000)),
                    multiplier: multiplier.max(1.0),
                }
            }
        }
    }
}
