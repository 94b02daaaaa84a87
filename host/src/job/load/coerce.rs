//! Typed parameters: a string value that held a `${name}` reference takes
//! the type its field needs, so that `follow = "${follow}"` with
//! `--param follow=true` is the boolean `true` and `batch_size = "${n}"` a
//! number.
//!
//! TOML types a value by its syntax, and a reference can only be written
//! as a string; the type a field needs is known only to serde, while the
//! job's typed structs deserialize. So [`super::document`] marks each string
//! it expanded (with [`MARK`], a noncharacter no job file holds), and
//! [`Coercing`] wraps toml's deserializer: where a field asks for a boolean
//! or a number and finds a marked string, it parses the string; everywhere
//! else it removes the mark and passes the string on. Unmarked strings are
//! never coerced: `follow = "true"` is refused as TOML refuses it.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// Precedes the text of every string value expanded from parameters.
pub(super) const MARK: char = '\u{FDD0}';

/// `text` marked as expanded from parameters.
pub(super) fn mark(text: &str) -> String {
    let mut marked = String::with_capacity(text.len() + MARK.len_utf8());
    marked.push(MARK);
    marked.push_str(text);
    marked
}

/// What a field asks the deserializer for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Bool,
    Integer,
    Float,
    /// A string, an enum variant, a table…: a marked string passes as text.
    Text,
}

/// A deserializer that coerces marked strings to the type asked for.
pub(super) struct Coercing<D>(pub(super) D);

macro_rules! forward {
    ($($method:ident => $want:expr),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Coerce { inner: visitor, want: $want })
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Coercing<D> {
    type Error = D::Error;

    forward! {
        deserialize_any => Want::Text,
        deserialize_bool => Want::Bool,
        deserialize_i8 => Want::Integer,
        deserialize_i16 => Want::Integer,
        deserialize_i32 => Want::Integer,
        deserialize_i64 => Want::Integer,
        deserialize_i128 => Want::Integer,
        deserialize_u8 => Want::Integer,
        deserialize_u16 => Want::Integer,
        deserialize_u32 => Want::Integer,
        deserialize_u64 => Want::Integer,
        deserialize_u128 => Want::Integer,
        deserialize_f32 => Want::Float,
        deserialize_f64 => Want::Float,
        deserialize_char => Want::Text,
        deserialize_str => Want::Text,
        deserialize_string => Want::Text,
        deserialize_bytes => Want::Text,
        deserialize_byte_buf => Want::Text,
        deserialize_option => Want::Text,
        deserialize_unit => Want::Text,
        deserialize_seq => Want::Text,
        deserialize_map => Want::Text,
        deserialize_identifier => Want::Text,
        deserialize_ignored_any => Want::Text,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Coerce::text(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Coerce::text(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Coerce::text(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Coerce::text(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Coerce::text(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Coerce::text(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor that turns marked strings into what its field wants.
struct Coerce<V> {
    inner: V,
    want: Want,
}

impl<V> Coerce<V> {
    fn text(inner: V) -> Self {
        Self {
            inner,
            want: Want::Text,
        }
    }
}

impl<'de, V: Visitor<'de>> Coerce<V> {
    /// A marked string where a boolean or a number is wanted.
    fn typed<E: de::Error>(self, text: &str) -> Result<V::Value, E> {
        match self.want {
            Want::Bool => match text {
                "true" => self.inner.visit_bool(true),
                "false" => self.inner.visit_bool(false),
                _ => Err(E::custom("not a boolean (true or false)")),
            },
            Want::Integer => match (text.parse::<i64>(), text.parse::<u64>()) {
                (Ok(n), _) => self.inner.visit_i64(n),
                (_, Ok(n)) => self.inner.visit_u64(n),
                _ => Err(E::custom("not an integer")),
            },
            Want::Float => match text.parse::<f64>() {
                Ok(x) => self.inner.visit_f64(x),
                Err(_) => Err(E::custom("not a number")),
            },
            Want::Text => self.inner.visit_str(text),
        }
    }
}

macro_rules! pass {
    ($($method:ident($ty:ty)),* $(,)?) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Coerce<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    pass! {
        visit_bool(bool),
        visit_i8(i8), visit_i16(i16), visit_i32(i32), visit_i64(i64), visit_i128(i128),
        visit_u8(u8), visit_u16(u16), visit_u32(u32), visit_u64(u64), visit_u128(u128),
        visit_f32(f32), visit_f64(f64), visit_char(char),
        visit_bytes(&[u8]), visit_borrowed_bytes(&'de [u8]), visit_byte_buf(Vec<u8>),
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        match v.strip_prefix(MARK) {
            Some(text) => self.typed(text),
            None => self.inner.visit_str(v),
        }
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        match v.strip_prefix(MARK) {
            Some(text) if self.want == Want::Text => self.inner.visit_borrowed_str(text),
            Some(text) => self.typed(text),
            None => self.inner.visit_borrowed_str(v),
        }
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        match v.strip_prefix(MARK) {
            Some(text) if self.want == Want::Text => self.inner.visit_string(text.to_owned()),
            Some(text) => self.typed(text),
            None => self.inner.visit_string(v),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(Coercing(deserializer))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, deserializer: D) -> Result<V::Value, D::Error> {
        self.inner.visit_newtype_struct(Coercing(deserializer))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.inner.visit_seq(Access(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Access(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Access(data))
    }
}

/// Tables, arrays and enums whose elements deserialize through [`Coercing`].
struct Access<A>(A);

/// A seed that deserializes through [`Coercing`].
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Coercing(deserializer))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(value, variant)| (value, Access(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Coerce::text(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Coerce::text(visitor))
    }
}
