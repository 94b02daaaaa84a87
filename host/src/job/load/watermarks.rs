//! The `watermarks` of sources and operators: bounded out-of-orderness,
//! monotonous or punctuated (a Wasm watermark generator).

use std::time::Duration;

use toml::Spanned;

use super::Builder;
use crate::job::spec::{WatermarkKind, WatermarksSpec};
use crate::plan::{FunctionRef, Watermarks};
use crate::time::watermarks::WatermarkStrategy;
use crate::wasm::FunctionKind;

impl Builder<'_> {
    /// The watermarks of vertex `uid`; a punctuated strategy's generator
    /// comes from `module` (else `default_module`, the operator's).
    pub(super) fn watermarks(
        &mut self,
        spec: &Spanned<WatermarksSpec>,
        uid: &str,
        default_module: Option<&Spanned<String>>,
    ) -> Watermarks {
        let spec_ref = spec.get_ref();
        let field = |name: &str| format!("`{uid}` → watermarks → {name}");
        let mut punctuation = None;
        if spec_ref.strategy != WatermarkKind::Punctuated {
            for (given, name) in [
                (spec_ref.function.is_some(), "function"),
                (spec_ref.module.is_some(), "module"),
            ] {
                if given {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        field(name),
                        "only a punctuated strategy has a watermark generator function",
                    ));
                }
            }
        }
        let bound = match spec_ref.strategy {
            WatermarkKind::Punctuated => {
                if spec_ref.max_out_of_orderness_ms.is_some() {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        field("max_out_of_orderness_ms"),
                        "a punctuated strategy has no out-of-orderness bound: its function decides the watermarks",
                    ));
                }
                match (&spec_ref.function, spec_ref.module.as_ref().or(default_module)) {
                    (Some(function), Some(module)) => {
                        punctuation = self.watermark_generator(module, function, &field("module"), &field("function"));
                    }
                    (None, _) => self.errors.push(self.locator.error(
                        spec.span(),
                        field("function"),
                        "a punctuated strategy needs `function`, a watermark generator",
                    )),
                    (Some(_), None) => self.errors.push(self.locator.error(
                        spec.span(),
                        field("module"),
                        "a punctuated strategy on a source needs `module`",
                    )),
                }
                0
            }
            WatermarkKind::Monotonous => {
                if spec_ref.max_out_of_orderness_ms.is_some() {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("`{uid}` → watermarks → max_out_of_orderness_ms"),
                        "a monotonous strategy has no out-of-orderness bound",
                    ));
                }
                0
            }
            WatermarkKind::BoundedOutOfOrderness => match spec_ref.max_out_of_orderness_ms {
                Some(bound) => i64::try_from(bound).unwrap_or(i64::MAX),
                None => {
                    self.errors.push(self.locator.error(
                        spec.span(),
                        format!("`{uid}` → watermarks → max_out_of_orderness_ms"),
                        "bounded-out-of-orderness needs `max_out_of_orderness_ms`",
                    ));
                    0
                }
            },
        };
        Watermarks {
            strategy: WatermarkStrategy {
                max_out_of_orderness_ms: bound,
                // Default 0: a watermark after every batch, so the same input gives
                // the same output whatever the machine's speed.
                interval: Duration::from_millis(spec_ref.interval_ms.unwrap_or(0)),
                idle_timeout: spec_ref.idle_timeout_ms.map(Duration::from_millis),
                punctuated: spec_ref.strategy == WatermarkKind::Punctuated,
            },
            punctuation,
        }
    }

    /// Loads the watermark generator of a punctuated strategy.
    fn watermark_generator(
        &mut self,
        module: &Spanned<String>,
        function: &Spanned<String>,
        module_field: &str,
        function_field: &str,
    ) -> Option<FunctionRef> {
        let generator = self.function(module, function, module_field, function_field, Vec::new())?;
        if generator.kind != FunctionKind::WatermarkGenerator {
            self.errors.push(self.locator.error(
                function.span(),
                function_field,
                format!(
                    "expected a watermark generator, found `{}`, a {} function",
                    generator.function, generator.kind
                ),
            ));
            return None;
        }
        Some(generator)
    }
}
