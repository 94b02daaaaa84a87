//! Reading a job file into its [`JobSpec`]: parse the TOML, expand the
//! `${name}` parameters in every string value, then deserialize the typed
//! spec, each expanded value taking the type of its field
//! ([`super::coerce`]).
//!
//! Expansion happens on the parsed document, before any field is typed, so
//! that every field takes parameters the same way: paths and names, but
//! also booleans (`follow = "${follow}"`), numbers and enums
//! (`state_backend = "${backend}"`), and the operators' own `params`. Only
//! the `[params]` table, which holds the defaults, is left as written.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use serde::Deserialize as _;
use toml::Spanned;
use toml::de::{DeString, DeTable, DeValue};

use super::coerce::{Coercing, mark};
use crate::job::error::{JobFileError, JobFileErrors, Locator};
use crate::job::params::Params;
use crate::job::spec::JobSpec;

/// A job file, read.
#[derive(Debug)]
pub(super) struct Document {
    /// The typed job file, parameters expanded.
    pub spec: JobSpec,
    /// The references that could not be expanded, in the file's order.
    pub errors: Vec<JobFileError>,
    /// Start offsets of the values those errors are about: the loader says
    /// nothing more about them.
    pub unresolved: HashSet<usize>,
}

/// A value that referred to parameters.
#[derive(Debug)]
struct Expansion {
    /// The field, as errors name it (`source `lines` → follow`).
    field: String,
    /// The value as written.
    written: String,
    /// The value after expansion.
    text: String,
}

/// Parses `text`, expands its parameters (`overrides` first, then the
/// `[params]` defaults) and deserializes the [`JobSpec`]. Fails with every
/// parameter error and the first error of TOML syntax or of a field's type.
pub(super) fn read(text: &str, locator: &Locator, overrides: &[(String, String)]) -> Result<Document, JobFileErrors> {
    let mut root = DeTable::parse(text).map_err(|e| JobFileErrors(vec![toml_error(locator, &e)]))?;
    let defaults = take_defaults(root.get_mut());
    let mut expander = Expander {
        params: Params::new(&defaults, overrides),
        locator,
        errors: Vec::new(),
        expansions: HashMap::new(),
    };
    for (key, value) in root.get_mut().iter_mut() {
        if key.get_ref() != "params" {
            expander.top_level(key.get_ref(), value);
        }
    }
    let Expander {
        mut errors, expansions, ..
    } = expander;
    errors.sort_by_key(|(start, _)| *start);
    let unresolved: HashSet<usize> = errors.iter().map(|(start, _)| *start).collect();
    let mut errors: Vec<JobFileError> = errors.into_iter().map(|(_, error)| error).collect();
    match JobSpec::deserialize(Coercing(toml::de::Deserializer::from(root))) {
        Ok(spec) => Ok(Document {
            spec,
            errors,
            unresolved,
        }),
        Err(e) => {
            let start = e.span().map(|span| span.start);
            // A value whose parameter is unset has its error already.
            if !start.is_some_and(|start| unresolved.contains(&start)) {
                let mut error = toml_error(locator, &e);
                if let Some(expansion) = start.and_then(|start| expansions.get(&start)) {
                    error.field = Some(expansion.field.clone());
                    error.message = format!(
                        "\"{}\" expands to \"{}\": {}",
                        expansion.written, expansion.text, error.message
                    );
                }
                errors.push(error);
            }
            Err(JobFileErrors(errors))
        }
    }
}

/// An error of the toml crate, located.
fn toml_error(locator: &Locator, error: &toml::de::Error) -> JobFileError {
    JobFileError {
        file: locator.file().to_path_buf(),
        line: error.span().map(|span| locator.line_of(span.start)),
        field: None,
        message: error.message().trim().to_string(),
    }
}

/// The defaults of the `[params]` table. Integers, floats and booleans are
/// defaults too (`count = 3`): they are turned into their text, in the
/// document as well, since parameter values are text.
fn take_defaults(root: &mut DeTable<'_>) -> BTreeMap<String, String> {
    let mut defaults = BTreeMap::new();
    let Some(DeValue::Table(table)) = root
        .iter_mut()
        .find(|(key, _)| key.get_ref() == "params")
        .map(|(_, value)| value.get_mut())
    else {
        return defaults;
    };
    for (name, value) in table.iter_mut() {
        let text = match value.get_ref() {
            DeValue::String(text) => text.to_string(),
            DeValue::Integer(n) => match i128::from_str_radix(n.as_str(), n.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => continue,
            },
            DeValue::Float(x) => x.as_str().to_string(),
            DeValue::Boolean(b) => b.to_string(),
            _ => continue, // left for the typed spec to refuse
        };
        *value.get_mut() = DeValue::String(DeString::Owned(text.clone()));
        defaults.insert(name.get_ref().to_string(), text);
    }
    defaults
}

/// Walks the document, expanding string values in place.
struct Expander<'a> {
    params: Params,
    locator: &'a Locator,
    /// Errors with the start offset of their value.
    errors: Vec<(usize, JobFileError)>,
    /// The values that referred to parameters, by start offset.
    expansions: HashMap<usize, Expansion>,
}

impl Expander<'_> {
    /// A top-level entry: `[job]`, `[[source]]`…
    fn top_level(&mut self, key: &str, value: &mut Spanned<DeValue<'_>>) {
        match value.get_mut() {
            // `[[source]]`, `[[operator]]`, `[[sink]]`: named by their uid.
            DeValue::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    let name = match item.get_ref() {
                        DeValue::Table(table) => match table.iter().find(|(k, _)| k.get_ref() == "uid") {
                            Some((_, uid)) if uid.get_ref().is_str() => {
                                format!("{key} `{}`", uid.get_ref().as_str().unwrap_or_default())
                            }
                            _ => format!("{key} {}", index + 1),
                        },
                        _ => format!("{key} {}", index + 1),
                    };
                    self.value(&name, item);
                }
            }
            _ => self.value(key, value),
        }
    }

    /// Expands `value`, the field `field`, and all it holds.
    fn value(&mut self, field: &str, value: &mut Spanned<DeValue<'_>>) {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(text) => {
                if let Some(expanded) = self.string(field, text, span) {
                    *text = DeString::Owned(expanded);
                }
            }
            DeValue::Table(table) => {
                for (key, item) in table.iter_mut() {
                    self.value(&format!("{field} → {}", key.get_ref()), item);
                }
            }
            DeValue::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    self.value(&format!("{field} → {}", index + 1), item);
                }
            }
            DeValue::Integer(_) | DeValue::Float(_) | DeValue::Boolean(_) | DeValue::Datetime(_) => {}
        }
    }

    /// The new text of a string value, if it changes: marked if it
    /// referred to parameters.
    fn string(&mut self, field: &str, text: &str, span: Range<usize>) -> Option<String> {
        if !text.contains('$') {
            return None;
        }
        match self.params.expand_value(text) {
            Ok(expanded) if expanded.referenced => {
                let marked = mark(&expanded.text);
                self.expansions.insert(
                    span.start,
                    Expansion {
                        field: field.to_string(),
                        written: text.to_string(),
                        text: expanded.text,
                    },
                );
                Some(marked)
            }
            Ok(expanded) => Some(expanded.text),
            Err(e) => {
                self.errors
                    .push((span.start, self.locator.error(span, field, e.to_string())));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests;
