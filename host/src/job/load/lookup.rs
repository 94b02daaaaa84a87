//! `[[lookup]]` tables and the `async`/`lookups` settings of an async-map
//! operator, checked into an [`AsyncConfig`].

use std::collections::BTreeMap;
use std::time::Duration;

use toml::Spanned;

use super::Builder;
use crate::job::async_spec::{AsyncModeSpec, LookupSpec, LookupType, OnFailureSpec};
use crate::job::spec::OperatorSpec;
use crate::plan::{AsyncConfig, AsyncMode, FunctionRef, LookupConfig, LookupKind, OnFailure};
use crate::wasm::FunctionKind;

/// Most records one async subtask keeps in flight.
const MAX_CAPACITY: u32 = 1 << 20;
/// Most tries of one request.
const MAX_ATTEMPTS: u32 = 100;

impl Builder<'_> {
    /// The lookups the job declares, by name; problems are recorded.
    pub(super) fn lookups(&mut self, specs: &[Spanned<LookupSpec>]) -> BTreeMap<String, LookupConfig> {
        let mut lookups = BTreeMap::new();
        for spanned in specs {
            let spec = spanned.get_ref();
            let name = spec.name.get_ref().clone();
            let field = |f: &str| format!("lookup `{name}` → {f}");
            if name.is_empty() {
                self.errors.push(
                    self.locator
                        .error(spec.name.span(), "lookup → name", "must not be empty"),
                );
                continue;
            }
            if lookups.contains_key(&name) {
                self.errors.push(self.locator.error(
                    spec.name.span(),
                    field("name"),
                    "another [[lookup]] has this name",
                ));
                continue;
            }
            let kind = match spec.kind.get_ref() {
                LookupType::Http => {
                    let Some(url) = &spec.url else {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field("url"),
                            "an http lookup needs `url`, with `{key}` where the key goes",
                        ));
                        continue;
                    };
                    if !url.get_ref().starts_with("http://") {
                        self.errors.push(self.locator.error(
                            url.span(),
                            field("url"),
                            format!("`{}`: only http:// URLs are supported", url.get_ref()),
                        ));
                        continue;
                    }
                    if !url.get_ref().contains("{key}") {
                        self.errors.push(self.locator.error(
                            url.span(),
                            field("url"),
                            format!("`{}` has no `{{key}}` for the request's key", url.get_ref()),
                        ));
                        continue;
                    }
                    LookupKind::Http {
                        url: url.get_ref().clone(),
                    }
                }
            };
            lookups.insert(name.clone(), LookupConfig { name, kind });
        }
        lookups
    }

    /// The async settings of `operator` when its function is an async map
    /// (`None` otherwise, with an error if it has `async` or `lookups`).
    pub(super) fn async_config(
        &mut self,
        operator: &OperatorSpec,
        uid: &str,
        function: Option<&FunctionRef>,
        declared: &BTreeMap<String, LookupConfig>,
    ) -> Option<AsyncConfig> {
        let field = |f: &str| format!("operator `{uid}` → {f}");
        let function = function?;
        if function.kind != FunctionKind::AsyncMap {
            for (name, span) in [
                ("async", operator.async_.as_ref().map(Spanned::span)),
                ("lookups", operator.lookups.as_ref().map(Spanned::span)),
            ] {
                if let Some(span) = span {
                    self.errors.push(self.locator.error(
                        span,
                        field(name),
                        format!(
                            "`{}` is a {} function; `{name}` is for async-map functions",
                            function.function, function.kind
                        ),
                    ));
                }
            }
            return None;
        }
        let mut granted = BTreeMap::new();
        if let Some(names) = &operator.lookups {
            for name in names.get_ref() {
                match declared.get(name) {
                    Some(lookup) => {
                        granted.insert(name.clone(), lookup.clone());
                    }
                    None => self.errors.push(self.locator.error(
                        names.span(),
                        field("lookups"),
                        format!(
                            "no [[lookup]] is named `{name}` (declared: {:?})",
                            declared.keys().collect::<Vec<_>>()
                        ),
                    )),
                }
            }
        }
        let mut config = AsyncConfig::with_lookups(granted);
        let Some(spec) = &operator.async_ else {
            return Some(config);
        };
        let spec = spec.get_ref();
        if let Some(mode) = spec.mode {
            config.mode = match mode {
                AsyncModeSpec::Ordered => AsyncMode::Ordered,
                AsyncModeSpec::Unordered => AsyncMode::Unordered,
            };
        }
        if let Some(on_failure) = spec.on_failure {
            config.on_failure = match on_failure {
                OnFailureSpec::Fail => OnFailure::Fail,
                OnFailureSpec::DeadLetter => OnFailure::DeadLetter,
            };
        }
        if let Some(capacity) = &spec.capacity {
            let value = self.positive(capacity, &field("async → capacity"));
            if value > MAX_CAPACITY {
                self.errors.push(self.locator.error(
                    capacity.span(),
                    field("async → capacity"),
                    format!("{value} is above the limit, {MAX_CAPACITY}"),
                ));
            }
            config.capacity = value as usize;
        }
        if let Some(timeout) = &spec.timeout_ms {
            config.timeout = Duration::from_millis(self.positive_u64(timeout, &field("async → timeout_ms")));
        }
        if let Some(retry) = &spec.retry {
            let retry = retry.get_ref();
            if let Some(attempts) = &retry.attempts {
                let value = self.positive(attempts, &field("async → retry → attempts"));
                if value > MAX_ATTEMPTS {
                    self.errors.push(self.locator.error(
                        attempts.span(),
                        field("async → retry → attempts"),
                        format!("{value} is above the limit, {MAX_ATTEMPTS}"),
                    ));
                }
                config.retry.attempts = value;
            }
            if let Some(delay) = retry.delay_ms {
                config.retry.delay = Duration::from_millis(delay);
            }
            if let Some(backoff) = &retry.backoff {
                let value = *backoff.get_ref();
                if !(1.0..=100.0).contains(&value) {
                    self.errors.push(self.locator.error(
                        backoff.span(),
                        field("async → retry → backoff"),
                        format!("{value} is not between 1.0 and 100.0"),
                    ));
                }
                config.retry.backoff = value;
            }
        }
        Some(config)
    }
}
