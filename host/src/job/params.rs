//! `${name}` parameters in job files, so that one job runs on any input.
//!
//! The loader expands every string value of the job file except the
//! `[params]` table itself (see `load::document`); a value that holds a
//! reference then takes the type of its field, so `follow = "${follow}"` is
//! a boolean and `batch_size = "${batch}"` a number. Parameter values (the
//! `[params]` defaults and `--param name=value`) are taken literally: they
//! are not expanded again.

use std::collections::BTreeMap;

/// Why a parameter could not be set or a `${name}` reference expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParamError {
    /// The parameter has neither a `--param` value nor a default.
    #[error("parameter `{name}` is not set: pass --param {name}=VALUE or give it a default in [params]")]
    Unset {
        /// The parameter's name.
        name: String,
    },
    /// A `--param` argument that is not `NAME=VALUE`.
    #[error("expected NAME=VALUE, found \"{text}\"")]
    NotAnAssignment {
        /// The argument, as given.
        text: String,
    },
    /// A `${` without its `}`.
    #[error("unterminated parameter reference in \"{text}\"")]
    Unterminated {
        /// The whole value, as written.
        text: String,
    },
}

/// Parameter values: the job file's `[params]` defaults overridden by the
/// command line's `--param name=value`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Params(BTreeMap<String, String>);

/// The text of a value after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expanded {
    /// The text with every reference replaced.
    pub text: String,
    /// Whether the value held at least one `${name}` reference (`$$` alone
    /// is only an escape).
    pub referenced: bool,
}

impl Params {
    /// Defaults from the job file, then overrides from the command line.
    pub(crate) fn new(defaults: &BTreeMap<String, String>, overrides: &[(String, String)]) -> Self {
        let mut values = defaults.clone();
        values.extend(overrides.iter().cloned());
        Self(values)
    }

    /// Replaces every `${name}` in `text`; `$$` stands for a literal `$`.
    /// Fails naming the first parameter that is not set.
    #[cfg(test)]
    pub(crate) fn expand(&self, text: &str) -> Result<String, ParamError> {
        self.expand_value(text).map(|expanded| expanded.text)
    }

    /// Replaces every `${name}` in `text` (`$$` is a literal `$`), and tells whether `text` referred to a
    /// parameter.
    pub(crate) fn expand_value(&self, text: &str) -> Result<Expanded, ParamError> {
        let mut out = String::with_capacity(text.len());
        let mut referenced = false;
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            out.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(tail) = after.strip_prefix('{') {
                let end = tail
                    .find('}')
                    .ok_or_else(|| ParamError::Unterminated { text: text.into() })?;
                let name = &tail[..end];
                let value = self
                    .0
                    .get(name)
                    .ok_or_else(|| ParamError::Unset { name: name.into() })?;
                out.push_str(value);
                referenced = true;
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(Expanded { text: out, referenced })
    }
}

/// Parses `name=value` from the command line.
pub(crate) fn parse_assignment(text: &str) -> Result<(String, String), ParamError> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(ParamError::NotAnAssignment { text: text.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_overrides_and_defaults() {
        let defaults = BTreeMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        let params = Params::new(&defaults, &[("b".into(), "two".into())]);
        assert_eq!(params.expand("${a}-${b}/$$x/$y").unwrap(), "1-two/$x/$y");
    }

    #[test]
    fn tells_whether_a_value_referred_to_a_parameter() {
        let params = Params::new(&BTreeMap::new(), &[("x".into(), "${y}".into())]);
        let expanded = |text| params.expand_value(text).unwrap();
        assert_eq!(
            expanded("${x}"),
            Expanded {
                text: "${y}".into(),
                referenced: true
            },
            "a value is not expanded again"
        );
        assert_eq!(
            expanded("$${x}"),
            Expanded {
                text: "${x}".into(),
                referenced: false
            }
        );
        assert!(!expanded("plain").referenced);
    }

    #[test]
    fn names_the_missing_parameter() {
        let params = Params::default();
        assert_eq!(
            params.expand("${input}").unwrap_err().to_string(),
            "parameter `input` is not set: pass --param input=VALUE or give it a default in [params]"
        );
        assert_eq!(
            params.expand("a${b").unwrap_err().to_string(),
            "unterminated parameter reference in \"a${b\""
        );
        assert_eq!(
            parse_assignment("=x").unwrap_err().to_string(),
            "expected NAME=VALUE, found \"=x\""
        );
        assert_eq!(parse_assignment("k=v=w").unwrap(), ("k".into(), "v=w".into()));
    }
}
