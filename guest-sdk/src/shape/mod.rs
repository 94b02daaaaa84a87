//! State shapes: what a state's default schema is made of.
//!
//! A stored value decodes only with a type of the same *serde shape*: the
//! same fields in the same order, of the same kinds, the same enum variants.
//! A type name alone does not say that (a struct can change and keep its
//! name), so the default schema of a state is its value type's name plus a
//! fingerprint of its shape:
//!
//! ```text
//! Plate@c4770720      struct Plate { id: u64, tags: Vec<String> }, in any module
//! u32@9af21e7b        a primitive
//! (u64, u64)@e94cb4f0 a tuple
//! ```
//!
//! The shape is traced, not declared: [`trace`] drives the type's own
//! `Deserialize` implementation with a deserializer that invents a value
//! and writes down what it was asked for (the same idea as the
//! `serde-reflection` crate). An enum yields one variant per run, so the
//! tracer runs the type as many times as it takes to reach every variant of
//! every enum in it, steering each run towards the variants not seen yet
//! (`serde-reflection` cannot reach an enum nested in another enum's
//! variant without being handed that enum's type; the SDK only has the
//! state's type). The result is a canonical text ([`Traced::canonical`]),
//! hashed with 64-bit FNV-1a folded to 32 bits: stable across builds,
//! compilers and platforms, since it depends only on names serde sees
//! (containers, fields, variants) and the kinds of values.
//!
//! What is in the fingerprint: container names as serde sees them (after
//! `#[serde(rename)]`), field names and order, variant names and order, and
//! every field's kind (integer width and signedness, string, bytes,
//! sequence, map, option, tuple arity). What is not: the module path of the
//! type, its generic arguments' paths, field attributes that do not change
//! what serde asks for, and anything serde does not see (`#[serde(skip)]`
//! fields).
//!
//! Some types cannot be traced: types whose `Deserialize` needs a
//! self-describing format (`deserialize_any`: `#[serde(flatten)]`,
//! `#[serde(untagged)]`, internally tagged enums, `serde_json::Value`;
//! postcard cannot store those either), types whose `Deserialize` rejects
//! every value the tracer invents (integers are 1, strings empty, so a
//! string that must parse as a date fails), one generic container used with
//! two shapes in one type (`Pair<u32>` and `Pair<String>` are both `Pair`
//! to serde) and containers nested deeper than 256 levels. Their schema is
//! the type name alone, as before shapes were traced.

mod de;

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::de::DeserializeOwned;

/// Runs through one type at most this many times (each run reaches at
/// least one enum variant not seen before).
const MAX_RUNS: usize = 4096;

/// The default schema of a state whose values are `T`s: the type's name
/// without module paths, `@`, and the 8 hex digits of its shape's
/// fingerprint; just the name if the shape cannot be traced.
pub(crate) fn schema<T: DeserializeOwned>() -> String {
    let name = short_type_name(std::any::type_name::<T>());
    match trace::<T>() {
        Ok(traced) => format!("{name}@{:08x}", fingerprint(&traced.canonical())),
        Err(_) => name,
    }
}

/// `std::any::type_name` without module paths: `alloc::vec::Vec<my_crate::Plate>`
/// becomes `Vec<Plate>`. The paths are left out because they are not part
/// of the encoding, and because they change when a crate is renamed, a type
/// moved into a module, or the compiler spells `std` paths otherwise.
pub(crate) fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    // Where the path segment being read starts in `out`.
    let mut segment = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(segment);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                segment = out.len();
            }
        }
    }
    out
}

/// 64-bit FNV-1a of `text`, folded to 32 bits.
pub(crate) fn fingerprint(text: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = text
        .bytes()
        .fold(OFFSET, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(PRIME));
    ((hash >> 32) ^ (hash & 0xffff_ffff)) as u32
}

/// The shape of an unnamed value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Not traced (a branch cut short by recursion).
    Unknown,
    /// A primitive: `bool`, `u8`, `str`, `bytes`, ... (its text).
    Primitive(&'static str),
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence (`Vec`, sets, ...).
    Seq(Box<Shape>),
    /// A map.
    Map(Box<Shape>, Box<Shape>),
    /// A tuple or an array.
    Tuple(Vec<Shape>),
    /// A named container (struct or enum), by its serde name.
    Named(&'static str),
}

/// The shape of the payload of a struct or of an enum variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fields {
    /// `struct A;`, `enum E { A }`.
    Unit,
    /// `struct A(T);`, `enum E { A(T) }`.
    Newtype(Shape),
    /// `struct A(T, U);`, `enum E { A(T, U) }`.
    Tuple(Vec<Shape>),
    /// `struct A { a: T }`, `enum E { A { a: T } }`.
    Struct(Vec<(&'static str, Shape)>),
}

/// The shape of a named container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Container {
    /// A struct.
    Struct(Fields),
    /// An enum: its variants by index, each with its payload once traced.
    Enum(Vec<(&'static str, Option<Fields>)>),
}

/// The traced shape of a type: the root and every container it holds.
#[derive(Debug, Default)]
pub(crate) struct Traced {
    /// The shape of the type itself.
    pub(crate) root: Option<Shape>,
    /// Every container reached, by serde name.
    pub(crate) containers: BTreeMap<&'static str, Container>,
}

/// Why a type's shape could not be traced.
#[derive(Debug)]
pub(crate) enum TraceError {
    /// The type asked for something only a self-describing format has.
    Unsupported(&'static str),
    /// The type's `Deserialize` refused the invented value.
    Refused(String),
    /// One container name with two shapes (a generic container used twice).
    Conflict(&'static str),
    /// Containers nested too deep.
    TooDeep,
    /// Variants left that no run could reach.
    Unreachable,
}

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unsupported(what) => write!(f, "{what} is not supported"),
            Self::Refused(reason) => write!(f, "the type refused a traced value: {reason}"),
            Self::Conflict(name) => write!(f, "container `{name}` has two shapes"),
            Self::TooDeep => f.write_str("containers are nested too deep"),
            Self::Unreachable => f.write_str("some enum variants could not be reached"),
        }
    }
}

impl std::error::Error for TraceError {}

impl serde::de::Error for TraceError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Refused(msg.to_string())
    }
}

/// Traces the shape of `T`, every variant of every enum in it.
pub(crate) fn trace<T: DeserializeOwned>() -> Result<Traced, TraceError> {
    let mut tracer = de::Tracer::default();
    for _ in 0..MAX_RUNS {
        let root = tracer.run::<T>()?;
        let distance = tracer.distances();
        if !distance.values().any(|d| *d == 0) {
            return Ok(Traced {
                root: Some(root),
                containers: tracer.into_containers(),
            });
        }
        if !tracer.progressed() {
            return Err(TraceError::Unreachable);
        }
    }
    Err(TraceError::Unreachable)
}

impl Traced {
    /// The canonical text of the shape: the root, then every container in
    /// name order, e.g. `Plate;Plate=struct{id:u64,tags:seq<str>};`.
    pub(crate) fn canonical(&self) -> String {
        let mut out = String::new();
        if let Some(root) = &self.root {
            write_shape(&mut out, root);
        }
        out.push(';');
        for (name, container) in &self.containers {
            out.push_str(name);
            out.push('=');
            match container {
                Container::Struct(fields) => {
                    out.push_str("struct");
                    write_fields(&mut out, fields);
                }
                Container::Enum(variants) => {
                    out.push_str("enum{");
                    for (i, (variant, fields)) in variants.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(variant);
                        match fields {
                            Some(fields) => write_fields(&mut out, fields),
                            None => out.push('?'),
                        }
                    }
                    out.push('}');
                }
            }
            out.push(';');
        }
        out
    }
}

fn write_shape(out: &mut String, shape: &Shape) {
    match shape {
        Shape::Unknown => out.push('?'),
        Shape::Primitive(name) | Shape::Named(name) => out.push_str(name),
        Shape::Option(inner) => write_wrapped(out, "option", &[inner]),
        Shape::Seq(inner) => write_wrapped(out, "seq", &[inner]),
        Shape::Map(key, value) => write_wrapped(out, "map", &[key, value]),
        Shape::Tuple(items) => write_list(out, '(', items.iter(), ')'),
    }
}

fn write_wrapped(out: &mut String, name: &str, inner: &[&Shape]) {
    out.push_str(name);
    write_list(out, '<', inner.iter().copied(), '>');
}

fn write_list<'a>(out: &mut String, open: char, items: impl Iterator<Item = &'a Shape>, close: char) {
    out.push(open);
    for (i, item) in items.enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_shape(out, item);
    }
    out.push(close);
}

fn write_fields(out: &mut String, fields: &Fields) {
    match fields {
        Fields::Unit => {}
        Fields::Newtype(inner) => write_list(out, '(', std::iter::once(inner), ')'),
        Fields::Tuple(items) => {
            // `A(T, U)` differs from `A((T, U))`: mark the arity.
            let _ = write!(out, "#{}", items.len());
            write_list(out, '(', items.iter(), ')');
        }
        Fields::Struct(named) => {
            out.push('{');
            for (i, (field, shape)) in named.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(field);
                out.push(':');
                write_shape(out, shape);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests;
