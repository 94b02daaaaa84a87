use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{fingerprint, schema, short_type_name, trace};

/// The canonical text of `T`'s shape.
fn canonical<T: DeserializeOwned>() -> String {
    trace::<T>().expect("the type traces").canonical()
}

/// The fingerprint part of `T`'s schema.
fn digest<T: DeserializeOwned>() -> String {
    let schema = schema::<T>();
    let (_, digest) = schema.split_once('@').expect("a traced schema");
    digest.to_owned()
}

mod v1 {
    use serde::Deserialize;

    /// The old shape, kept under its name in another module.
    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub id: u64,
        pub tags: Vec<String>,
    }
}

mod elsewhere {
    use serde::Deserialize;

    /// The same shape as [`super::v1::Plate`], at another path.
    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub id: u64,
        pub tags: Vec<String>,
    }
}

mod changed_type {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub id: u32,
        pub tags: Vec<String>,
    }
}

mod added_field {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub id: u64,
        pub tags: Vec<String>,
        pub seen: u64,
    }
}

mod renamed_field {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub number: u64,
        pub tags: Vec<String>,
    }
}

mod reordered {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct Plate {
        pub tags: Vec<String>,
        pub id: u64,
    }
}

#[test]
fn the_schema_is_the_short_type_name_and_an_8_digit_fingerprint() {
    assert_eq!(canonical::<v1::Plate>(), "Plate;Plate=struct{id:u64,tags:seq<str>};");
    assert_eq!(
        schema::<v1::Plate>(),
        format!("Plate@{:08x}", fingerprint("Plate;Plate=struct{id:u64,tags:seq<str>};"))
    );
    assert_eq!(canonical::<u32>(), "u32;");
    assert_eq!(canonical::<(u64, u64)>(), "(u64,u64);");
    assert_eq!(canonical::<Vec<Option<i64>>>(), "seq<option<i64>>;");
    assert_eq!(
        schema::<Vec<String>>(),
        format!("Vec<String>@{:08x}", fingerprint("seq<str>;"))
    );
}

#[test]
fn fingerprints_are_stable() {
    // Golden values (FNV-1a checked against an independent implementation):
    // a change here changes the schema of every savepoint written before it,
    // and restores then ask for migrations.
    assert_eq!(fingerprint(""), 0xcbf2_9ce4 ^ 0x8422_2325);
    assert_eq!(schema::<u32>(), "u32@9af21e7b");
    assert_eq!(schema::<(u64, u64)>(), "(u64, u64)@e94cb4f0");
    assert_eq!(schema::<v1::Plate>(), "Plate@c4770720");
}

#[test]
fn the_same_shape_has_the_same_schema_whatever_the_module_path() {
    assert_eq!(schema::<v1::Plate>(), schema::<elsewhere::Plate>());
    assert_eq!(crate::schema_of::<v1::Plate>(), crate::schema_of::<elsewhere::Plate>());
}

#[test]
fn a_changed_field_type_an_added_a_renamed_or_a_moved_field_changes_the_fingerprint() {
    let old = digest::<v1::Plate>();
    let changed = [
        digest::<changed_type::Plate>(),
        digest::<added_field::Plate>(),
        digest::<renamed_field::Plate>(),
        digest::<reordered::Plate>(),
    ];
    for (i, new) in changed.iter().enumerate() {
        assert_ne!(*new, old, "change {i}");
        for other in &changed[i + 1..] {
            assert_ne!(new, other);
        }
    }
    assert!(schema::<added_field::Plate>().starts_with("Plate@"));
}

mod events_v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Payload {
        A,
        B(u32),
        C { x: String },
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Event {
        Start,
        Data(Payload),
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct State {
        pub last: Event,
    }
}

mod events_v2 {
    use serde::Deserialize;

    /// `C`'s field changed type: only reached through `Event::Data`.
    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Payload {
        A,
        B(u32),
        C { x: u64 },
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Event {
        Start,
        Data(Payload),
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct State {
        pub last: Event,
    }
}

mod events_v3 {
    use serde::Deserialize;

    /// A variant added.
    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Payload {
        A,
        B(u32),
        C { x: String },
        D,
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub enum Event {
        Start,
        Data(Payload),
    }

    #[derive(Deserialize)]
    #[expect(dead_code, reason = "only traced")]
    pub struct State {
        pub last: Event,
    }
}

#[test]
fn every_variant_of_an_enum_nested_in_another_variant_is_traced() {
    assert_eq!(
        canonical::<events_v1::State>(),
        "State;Event=enum{Start,Data(Payload)};Payload=enum{A,B(u32),C{x:str}};State=struct{last:Event};"
    );
    let v1 = digest::<events_v1::State>();
    assert_ne!(digest::<events_v2::State>(), v1);
    assert_ne!(digest::<events_v3::State>(), v1);
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Tree {
    value: u32,
    children: Vec<Tree>,
    parent: Option<Box<Tree>>,
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
enum List {
    Cons(u32, Box<List>),
    Nil,
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
enum Expr {
    Neg(Box<Expr>),
    Add(Box<Expr>, Box<Expr>),
    Call { function: Function, args: Vec<Expr> },
    Literal(i64),
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
enum Function {
    Abs,
    Max(Box<Expr>),
    Min,
}

#[test]
fn recursive_types_trace() {
    assert_eq!(
        canonical::<Tree>(),
        "Tree;Tree=struct{value:u32,children:seq<Tree>,parent:option<Tree>};"
    );
    assert_eq!(canonical::<List>(), "List;List=enum{Cons#2(u32,List),Nil};");
    assert_eq!(
        canonical::<Expr>(),
        "Expr;Expr=enum{Neg(Expr),Add#2(Expr,Expr),Call{function:Function,args:seq<Expr>},Literal(i64)};\
         Function=enum{Abs,Max(Expr),Min};"
    );
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Everything {
    flag: bool,
    small: (i8, i16, i32, i128, u8, u16, u128),
    real: (f32, f64),
    letter: char,
    bytes: serde_bytes_like::Bytes,
    counts: HashMap<String, u64>,
    sorted: BTreeMap<u32, Vec<u8>>,
    nonzero: NonZeroU32,
    array: [u16; 3],
    unit: (),
    marker: Marker,
    id: Id,
    pair: Pair,
}

#[derive(Deserialize)]
struct Marker;

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Id(u64);

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Pair(u8, u8);

/// A byte buffer that asks serde for bytes (as `serde_bytes` does).
mod serde_bytes_like {
    use serde::de::{Deserialize, Deserializer, Visitor};

    pub struct Bytes;

    impl<'de> Deserialize<'de> for Bytes {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Any;
            impl Visitor<'_> for Any {
                type Value = Bytes;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_byte_buf<E>(self, _v: Vec<u8>) -> Result<Bytes, E> {
                    Ok(Bytes)
                }
            }
            deserializer.deserialize_byte_buf(Any)
        }
    }
}

#[test]
fn every_kind_of_value_has_its_own_text() {
    assert_eq!(
        canonical::<Everything>(),
        "Everything;Everything=struct{flag:bool,small:(i8,i16,i32,i128,u8,u16,u128),real:(f32,f64),\
         letter:char,bytes:bytes,counts:map<str,u64>,sorted:map<u32,seq<u8>>,nonzero:u32,array:(u16,u16,u16),\
         unit:unit,marker:Marker,id:Id,pair:Pair};Id=struct(u64);Marker=struct;Pair=struct#2(u8,u8);"
    );
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Flattened {
    #[serde(flatten)]
    inner: Id2,
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Id2 {
    id: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
#[expect(dead_code, reason = "only traced")]
enum Untagged {
    Number(u64),
    Text(String),
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct Generic<T> {
    value: T,
}

#[derive(Deserialize)]
#[expect(dead_code, reason = "only traced")]
struct TwoGenerics {
    a: Generic<u32>,
    b: Generic<String>,
}

#[test]
fn untraceable_types_fall_back_to_their_name() {
    assert_eq!(schema::<Flattened>(), "Flattened");
    assert_eq!(schema::<Untagged>(), "Untagged");
    assert_eq!(schema::<serde_json::Value>(), "Value");
    assert_eq!(schema::<TwoGenerics>(), "TwoGenerics");
    // One instance of a generic container traces.
    assert!(schema::<Generic<u32>>().starts_with("Generic<u32>@"));
    assert_ne!(digest::<Generic<u32>>(), digest::<Generic<i32>>());
}

#[test]
fn module_paths_are_left_out_of_type_names() {
    assert_eq!(short_type_name("counter_v1::Plate"), "Plate");
    assert_eq!(short_type_name("alloc::vec::Vec<alloc::string::String>"), "Vec<String>");
    assert_eq!(
        short_type_name("std::collections::hash::map::HashMap<u32, core::option::Option<a::b::C>>"),
        "HashMap<u32, Option<C>>"
    );
    assert_eq!(short_type_name("(u64, u64)"), "(u64, u64)");
    assert_eq!(short_type_name("[my_crate::Point; 3]"), "[Point; 3]");
    assert_eq!(short_type_name("u32"), "u32");
}
