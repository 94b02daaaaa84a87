//! The tracing deserializer: drives a type's `Deserialize` with invented
//! values and records what it asks for.
//!
//! One [`Tracer::run`] builds one value of the type. Options hold a value,
//! sequences and maps one element, so every field's shape is seen. A
//! container met again inside itself (a recursive type) is traced
//! *minimally*: options are `None`, sequences and maps empty, and its
//! shape is not recorded again, so a run ends. Each enum visit picks one
//! variant: one not traced yet if there is one; else the variant whose
//! fields lead nearest to an enum with untraced variants (the distances are
//! computed before the run, [`Tracer::distances`]); else a variant that
//! ends the recursion soonest.

use std::collections::{BTreeMap, BTreeSet};

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use super::{Container, Fields, Shape, TraceError};

/// Containers nested deeper than this fail the trace.
const MAX_DEPTH: usize = 256;

/// What the runs over one type have learned.
#[derive(Debug, Default)]
pub(super) struct Tracer {
    /// Every container reached, by serde name.
    containers: BTreeMap<&'static str, Container>,
    /// Containers being traced, outermost first.
    stack: Vec<&'static str>,
    /// Enum variants being traced: (enum, variant index).
    variants: Vec<(&'static str, u32)>,
    /// Per container, how many references away the nearest enum with an
    /// untraced variant is, as of the start of the run.
    distance: BTreeMap<&'static str, usize>,
    /// Whether this run traced a variant not traced before.
    progressed: bool,
}

impl Tracer {
    /// Builds one value of `T` and returns the shape of `T`.
    pub(super) fn run<T: DeserializeOwned>(&mut self) -> Result<Shape, TraceError> {
        self.distance = self.distances();
        self.progressed = false;
        self.stack.clear();
        self.variants.clear();
        let mut root = Shape::Unknown;
        T::deserialize(Tracing {
            tracer: self,
            shape: &mut root,
            minimal: false,
        })?;
        Ok(root)
    }

    /// Whether the last run traced a variant not traced before.
    pub(super) fn progressed(&self) -> bool {
        self.progressed
    }

    /// The containers traced.
    pub(super) fn into_containers(self) -> BTreeMap<&'static str, Container> {
        self.containers
    }

    /// Per container, how many references away the nearest enum with an
    /// untraced variant is (0: the container is such an enum); containers
    /// that lead to none are left out.
    pub(super) fn distances(&self) -> BTreeMap<&'static str, usize> {
        let mut distance = BTreeMap::new();
        for (name, container) in &self.containers {
            if let Container::Enum(variants) = container
                && variants.iter().any(|(_, fields)| fields.is_none())
            {
                distance.insert(*name, 0);
            }
        }
        let references: Vec<(&'static str, BTreeSet<&'static str>)> = self
            .containers
            .iter()
            .map(|(name, container)| (*name, container_references(container)))
            .collect();
        // Relax until nothing changes (each round settles one more level).
        loop {
            let mut changed = false;
            for (name, refs) in &references {
                let Some(nearest) = refs.iter().filter_map(|r| distance.get(r)).min() else {
                    continue;
                };
                let through = nearest + 1;
                if distance.get(name).is_none_or(|d| through < *d) {
                    distance.insert(*name, through);
                    changed = true;
                }
            }
            if !changed {
                return distance;
            }
        }
    }

    /// Registers enum `name` with `variants`, checking it has not been seen
    /// with other variants.
    fn register_enum(&mut self, name: &'static str, variants: &'static [&'static str]) -> Result<(), TraceError> {
        match self.containers.get(name) {
            None => {
                let slots = variants.iter().map(|variant| (*variant, None)).collect();
                self.containers.insert(name, Container::Enum(slots));
                Ok(())
            }
            Some(Container::Enum(known))
                if known.len() == variants.len() && known.iter().zip(variants).all(|((a, _), b)| a == b) =>
            {
                Ok(())
            }
            Some(_) => Err(TraceError::Conflict(name)),
        }
    }

    /// The variant of enum `name` to build (see the module docs).
    fn choose(&self, name: &'static str, minimal: bool) -> u32 {
        let Some(Container::Enum(variants)) = self.containers.get(name) else {
            return 0;
        };
        let busy = |i: usize| self.variants.contains(&(name, index(i)));
        let traced = || {
            variants
                .iter()
                .enumerate()
                .filter_map(|(i, (_, fields))| fields.as_ref().map(|f| (i, fields_references(f))))
        };
        let untraced = variants
            .iter()
            .enumerate()
            .position(|(i, (_, fields))| fields.is_none() && !busy(i));
        if !minimal {
            if let Some(i) = untraced {
                return index(i);
            }
            let nearest = traced()
                .filter_map(|(i, refs)| {
                    let d = refs
                        .iter()
                        .filter(|r| !self.stack.contains(r))
                        .filter_map(|r| self.distance.get(r))
                        .min()?;
                    Some((*d, i))
                })
                .min();
            if let Some((_, i)) = nearest {
                return index(i);
            }
        }
        if let Some((i, _)) = traced().find(|(_, refs)| refs.is_empty()) {
            return index(i);
        }
        if let Some(i) = untraced {
            return index(i);
        }
        traced()
            .find(|(i, refs)| !busy(*i) && refs.iter().all(|r| !self.stack.contains(r)))
            .map_or(0, |(i, _)| index(i))
    }

    /// Records the fields of struct `name`.
    fn record_struct(&mut self, name: &'static str, fields: Fields) -> Result<(), TraceError> {
        match self.containers.get(name) {
            None => {
                self.containers.insert(name, Container::Struct(fields));
                Ok(())
            }
            Some(Container::Struct(known)) if *known == fields => Ok(()),
            Some(_) => Err(TraceError::Conflict(name)),
        }
    }

    /// Records the fields of variant `variant` of enum `name`.
    fn record_variant(&mut self, name: &'static str, variant: u32, fields: Fields) -> Result<(), TraceError> {
        let Some(Container::Enum(variants)) = self.containers.get_mut(name) else {
            return Err(TraceError::Conflict(name));
        };
        let Some((_, slot)) = variants.get_mut(variant as usize) else {
            return Err(TraceError::Conflict(name));
        };
        match slot {
            None => {
                *slot = Some(fields);
                self.progressed = true;
                Ok(())
            }
            Some(known) if *known == fields => Ok(()),
            Some(_) => Err(TraceError::Conflict(name)),
        }
    }

    /// Traces struct `name`: `build` builds it (minimally if the flag says
    /// so) and returns its fields.
    fn structure<R>(
        &mut self,
        name: &'static str,
        minimal: bool,
        build: impl FnOnce(&mut Self, bool) -> Result<(R, Fields), TraceError>,
    ) -> Result<R, TraceError> {
        let recursive = minimal || self.stack.contains(&name);
        if self.stack.len() >= MAX_DEPTH {
            return Err(TraceError::TooDeep);
        }
        self.stack.push(name);
        let built = build(self, recursive);
        self.stack.pop();
        let (value, fields) = built?;
        if !recursive {
            self.record_struct(name, fields)?;
        }
        Ok(value)
    }
}

/// A variant index as serde spells it.
fn index(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}

/// The containers `shape` names.
fn shape_references(shape: &Shape, out: &mut BTreeSet<&'static str>) {
    match shape {
        Shape::Unknown | Shape::Primitive(_) => {}
        Shape::Named(name) => {
            out.insert(name);
        }
        Shape::Option(inner) | Shape::Seq(inner) => shape_references(inner, out),
        Shape::Map(key, value) => {
            shape_references(key, out);
            shape_references(value, out);
        }
        Shape::Tuple(items) => items.iter().for_each(|item| shape_references(item, out)),
    }
}

/// The containers `fields` name.
fn fields_references(fields: &Fields) -> BTreeSet<&'static str> {
    let mut out = BTreeSet::new();
    match fields {
        Fields::Unit => {}
        Fields::Newtype(inner) => shape_references(inner, &mut out),
        Fields::Tuple(items) => items.iter().for_each(|item| shape_references(item, &mut out)),
        Fields::Struct(named) => named.iter().for_each(|(_, shape)| shape_references(shape, &mut out)),
    }
    out
}

/// The containers `container` names (an enum: in its traced variants).
fn container_references(container: &Container) -> BTreeSet<&'static str> {
    match container {
        Container::Struct(fields) => fields_references(fields),
        Container::Enum(variants) => variants
            .iter()
            .filter_map(|(_, fields)| fields.as_ref())
            .flat_map(fields_references)
            .collect(),
    }
}

/// A deserializer for one value: writes the value's shape to `shape`.
struct Tracing<'t> {
    tracer: &'t mut Tracer,
    shape: &'t mut Shape,
    /// Build the smallest value (inside a recursive container).
    minimal: bool,
}

/// The elements of a sequence, tuple or struct: one shape each.
struct Elements<'t> {
    tracer: &'t mut Tracer,
    shapes: std::slice::IterMut<'t, Shape>,
    minimal: bool,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = TraceError;

    fn next_element_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, TraceError> {
        let Some(shape) = self.shapes.next() else {
            return Ok(None);
        };
        seed.deserialize(Tracing {
            tracer: self.tracer,
            shape,
            minimal: self.minimal,
        })
        .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.shapes.len())
    }
}

/// A map of one entry (none when minimal).
struct Entry<'t> {
    tracer: &'t mut Tracer,
    key: Option<&'t mut Shape>,
    value: Option<&'t mut Shape>,
}

impl<'de> de::MapAccess<'de> for Entry<'_> {
    type Error = TraceError;

    fn next_key_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<Option<S::Value>, TraceError> {
        let Some(shape) = self.key.take() else {
            return Ok(None);
        };
        seed.deserialize(Tracing {
            tracer: self.tracer,
            shape,
            minimal: false,
        })
        .map(Some)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, TraceError> {
        let shape = self
            .value
            .take()
            .ok_or(TraceError::Unsupported("a map value without a key"))?;
        seed.deserialize(Tracing {
            tracer: self.tracer,
            shape,
            minimal: false,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        Some(usize::from(self.key.is_some()))
    }
}

/// The variant of an enum being built.
struct Variant<'t> {
    tracer: &'t mut Tracer,
    index: u32,
    fields: &'t mut Option<Fields>,
    minimal: bool,
}

impl<'de> de::EnumAccess<'de> for Variant<'_> {
    type Error = TraceError;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), TraceError> {
        let tag = seed.deserialize(IntoDeserializer::<TraceError>::into_deserializer(self.index))?;
        Ok((tag, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = TraceError;

    fn unit_variant(self) -> Result<(), TraceError> {
        *self.fields = Some(Fields::Unit);
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, TraceError> {
        let mut inner = Shape::Unknown;
        let value = seed.deserialize(Tracing {
            tracer: self.tracer,
            shape: &mut inner,
            minimal: self.minimal,
        })?;
        *self.fields = Some(Fields::Newtype(inner));
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, TraceError> {
        let mut shapes = vec![Shape::Unknown; len];
        let value = visitor.visit_seq(Elements {
            tracer: self.tracer,
            shapes: shapes.iter_mut(),
            minimal: self.minimal,
        })?;
        *self.fields = Some(Fields::Tuple(shapes));
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        let mut shapes = vec![Shape::Unknown; fields.len()];
        let value = visitor.visit_seq(Elements {
            tracer: self.tracer,
            shapes: shapes.iter_mut(),
            minimal: self.minimal,
        })?;
        *self.fields = Some(Fields::Struct(fields.iter().copied().zip(shapes).collect()));
        Ok(value)
    }
}

/// A primitive: its shape and the value the tracer invents for it (non-zero
/// numbers, so that `NonZero*` types trace too).
macro_rules! primitives {
    ($($method:ident => $name:literal, $visit:ident($($value:expr)?);)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
            *self.shape = Shape::Primitive($name);
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Tracing<'_> {
    type Error = TraceError;

    primitives! {
        deserialize_bool => "bool", visit_bool(false);
        deserialize_i8 => "i8", visit_i8(1);
        deserialize_i16 => "i16", visit_i16(1);
        deserialize_i32 => "i32", visit_i32(1);
        deserialize_i64 => "i64", visit_i64(1);
        deserialize_i128 => "i128", visit_i128(1);
        deserialize_u8 => "u8", visit_u8(1);
        deserialize_u16 => "u16", visit_u16(1);
        deserialize_u32 => "u32", visit_u32(1);
        deserialize_u64 => "u64", visit_u64(1);
        deserialize_u128 => "u128", visit_u128(1);
        deserialize_f32 => "f32", visit_f32(1.0);
        deserialize_f64 => "f64", visit_f64(1.0);
        deserialize_char => "char", visit_char('a');
        deserialize_str => "str", visit_str("");
        deserialize_string => "str", visit_string(String::new());
        deserialize_bytes => "bytes", visit_bytes(&[]);
        deserialize_byte_buf => "bytes", visit_byte_buf(Vec::new());
        deserialize_unit => "unit", visit_unit();
    }

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError::Unsupported("a type that needs a self-describing format"))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError::Unsupported(
            "a field or variant name outside a struct or enum",
        ))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, TraceError> {
        Err(TraceError::Unsupported("an ignored value"))
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let mut inner = Shape::Unknown;
        let value = if self.minimal {
            visitor.visit_none()?
        } else {
            visitor.visit_some(Tracing {
                tracer: self.tracer,
                shape: &mut inner,
                minimal: false,
            })?
        };
        *self.shape = Shape::Option(Box::new(inner));
        Ok(value)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let mut element = vec![Shape::Unknown; usize::from(!self.minimal)];
        let value = visitor.visit_seq(Elements {
            tracer: self.tracer,
            shapes: element.iter_mut(),
            minimal: false,
        })?;
        *self.shape = Shape::Seq(Box::new(element.pop().unwrap_or(Shape::Unknown)));
        Ok(value)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, TraceError> {
        let mut key = Shape::Unknown;
        let mut value = Shape::Unknown;
        let entry = if self.minimal {
            Entry {
                tracer: self.tracer,
                key: None,
                value: None,
            }
        } else {
            Entry {
                tracer: self.tracer,
                key: Some(&mut key),
                value: Some(&mut value),
            }
        };
        let map = visitor.visit_map(entry)?;
        *self.shape = Shape::Map(Box::new(key), Box::new(value));
        Ok(map)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, TraceError> {
        let mut shapes = vec![Shape::Unknown; len];
        let value = visitor.visit_seq(Elements {
            tracer: self.tracer,
            shapes: shapes.iter_mut(),
            minimal: self.minimal,
        })?;
        *self.shape = Shape::Tuple(shapes);
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, TraceError> {
        *self.shape = Shape::Named(name);
        self.tracer
            .structure(name, self.minimal, |_, _| Ok((visitor.visit_unit()?, Fields::Unit)))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        *self.shape = Shape::Named(name);
        self.tracer.structure(name, self.minimal, |tracer, minimal| {
            let mut inner = Shape::Unknown;
            let value = visitor.visit_newtype_struct(Tracing {
                tracer,
                shape: &mut inner,
                minimal,
            })?;
            Ok((value, Fields::Newtype(inner)))
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        *self.shape = Shape::Named(name);
        self.tracer.structure(name, self.minimal, |tracer, minimal| {
            let mut shapes = vec![Shape::Unknown; len];
            let value = visitor.visit_seq(Elements {
                tracer,
                shapes: shapes.iter_mut(),
                minimal,
            })?;
            Ok((value, Fields::Tuple(shapes)))
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        *self.shape = Shape::Named(name);
        self.tracer.structure(name, self.minimal, |tracer, minimal| {
            let mut shapes = vec![Shape::Unknown; fields.len()];
            let value = visitor.visit_seq(Elements {
                tracer,
                shapes: shapes.iter_mut(),
                minimal,
            })?;
            Ok((value, Fields::Struct(fields.iter().copied().zip(shapes).collect())))
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, TraceError> {
        *self.shape = Shape::Named(name);
        if variants.is_empty() {
            return Err(TraceError::Unsupported("an enum without variants"));
        }
        let tracer = self.tracer;
        tracer.register_enum(name, variants)?;
        let minimal = self.minimal || tracer.stack.contains(&name);
        if tracer.stack.len() >= MAX_DEPTH {
            return Err(TraceError::TooDeep);
        }
        let index = tracer.choose(name, minimal);
        tracer.stack.push(name);
        tracer.variants.push((name, index));
        let mut fields = None;
        let built = visitor.visit_enum(Variant {
            tracer: &mut *tracer,
            index,
            fields: &mut fields,
            minimal,
        });
        tracer.stack.pop();
        tracer.variants.pop();
        let value = built?;
        if !minimal && let Some(fields) = fields {
            tracer.record_variant(name, index, fields)?;
        }
        Ok(value)
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}
