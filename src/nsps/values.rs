//! How single members of an event are read: the rules serde's derives cannot express alone
//! (text or anything, PortaBilling's one-letter codes, `"Y"`/`"N"`, an object and never a list,
//! one object or a list of them).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};

/// A member read only when it is text: absent or `null`, a string, or any other JSON value
/// (skipped, remembered only as not being text).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Loose {
    #[default]
    Null,
    Text(String),
    Other,
}

impl Loose {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Text(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose::Text(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Loose, E> {
                Ok(Loose::Text(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Loose, E> {
                Ok(Loose::Null)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
                while map.next_entry::<de::IgnoredAny, de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(Loose::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Account billing status: NSPS's words or PortaBilling's one-letter codes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillStatus {
    Open,
    Suspended,
    Inactive,
    Terminated,
    /// A value this version does not know; treated as "not open".
    Other(String),
}

impl BillStatus {
    pub fn parse(text: &str) -> Self {
        let t = text.trim();
        if t.eq_ignore_ascii_case("open") || t.eq_ignore_ascii_case("O") {
            Self::Open
        } else if t.eq_ignore_ascii_case("suspended") || t.eq_ignore_ascii_case("S") {
            Self::Suspended
        } else if t.eq_ignore_ascii_case("inactive") || t.eq_ignore_ascii_case("I") {
            Self::Inactive
        } else if t.eq_ignore_ascii_case("terminated")
            || t.eq_ignore_ascii_case("closed")
            || t.eq_ignore_ascii_case("C")
        {
            Self::Terminated
        } else {
            Self::Other(t.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for BillStatus {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = BillStatus;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<BillStatus, E> {
                Ok(BillStatus::parse(v))
            }
        }
        d.deserialize_str(V)
    }
}

/// `blocked`: a JSON bool, or PortaBilling's `"Y"` / `"N"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blocked(pub bool);

impl Blocked {
    /// The text forms: `Y`/`N`, `yes`/`no`, `true`/`false`, `1`/`0`, in any case.
    pub(crate) fn from_text(text: &str) -> Option<Self> {
        let t = text.trim();
        let is = |word: &str| t.eq_ignore_ascii_case(word);
        if is("y") || is("yes") || is("true") || is("1") {
            Some(Self(true))
        } else if is("n") || is("no") || is("false") || is("0") {
            Some(Self(false))
        } else {
            None
        }
    }
}

impl<'de> Deserialize<'de> for Blocked {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Blocked;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("true, false, \"Y\" or \"N\"")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Blocked, E> {
                Ok(Blocked(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Blocked, E> {
                Blocked::from_text(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Blocked, E> {
                match v {
                    0 => Ok(Blocked(false)),
                    1 => Ok(Blocked(true)),
                    _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object read as `T`. serde's derived structs also accept a JSON array (fields by
/// position); for an event that is never right, so a list where an object belongs is refused.
#[derive(Debug, Default)]
pub struct Obj<T>(pub T);

impl<T> std::ops::Deref for Obj<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A member that NSPS may send as one object or as a list of them.
#[derive(Debug)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    /// The items with the JSON path prefix of each (`""` for a single object, `"[i]"` in a list).
    pub fn items(&self) -> Vec<(Option<usize>, &T)> {
        match self {
            Self::One(t) => vec![(None, t)],
            Self::Many(v) => v.iter().enumerate().map(|(i, t)| (Some(i), t)).collect(),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object or a list of objects")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(OneOrMany::Many(items))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// Keeps a string; any other JSON value counts as absent.
pub(super) fn loose_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Loose::deserialize(d)? {
        Loose::Text(s) => Some(s),
        _ => None,
    })
}
