//! `${name}` parameters in job files, so that one job runs on any input.

use std::collections::BTreeMap;

/// Parameter values: the job file's `[params]` defaults overridden by the
/// command line's `--param name=value`.
#[derive(Debug, Clone, Default)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    /// Defaults from the job file, then overrides from the command line.
    pub fn new(defaults: &BTreeMap<String, String>, overrides: &[(String, String)]) -> Self {
        let mut values = defaults.clone();
        values.extend(overrides.iter().cloned());
        Self(values)
    }

    /// Replaces every `${name}` in `text`; `$$` stands for a literal `$`.
    /// Fails with a message naming the first parameter that is not set.
    pub fn expand(&self, text: &str) -> Result<String, String> {
        let mut out = String::with_capacity(text.len());
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
                    .ok_or_else(|| format!("unterminated parameter reference in \"{text}\""))?;
                let name = &tail[..end];
                let value = self.0.get(name).ok_or_else(|| {
                    format!("parameter `{name}` is not set: pass --param {name}=VALUE or give it a default in [params]")
                })?;
                out.push_str(value);
                rest = &tail[end + 1..];
            } else {
                out.push('$');
                rest = after;
            }
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Parses `name=value` from the command line.
pub fn parse_assignment(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, found \"{text}\"")),
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
    fn names_the_missing_parameter() {
        let params = Params::default();
        assert_eq!(
            params.expand("${input}").unwrap_err(),
            "parameter `input` is not set: pass --param input=VALUE or give it a default in [params]"
        );
        assert!(parse_assignment("=x").is_err());
        assert_eq!(parse_assignment("k=v=w").unwrap(), ("k".into(), "v=w".into()));
    }
}
