//! What each configuration type asks serde for: a deserializer that hands
//! every type a made-up value of the kind it asks for and records the
//! keys, their nesting, their types and which ones serde requires.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, Visitor};

use crate::config::Config;

/// What a type asks serde for.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    /// A struct: a TOML table with these keys, in declaration order.
    Struct {
        /// The Rust type's name (to find its docs).
        name: &'static str,
        /// Its keys.
        fields: Vec<Field>,
    },
    /// `string`, `integer`, `number`, `boolean`.
    Scalar(&'static str),
    /// An `Option`.
    Optional(Box<Shape>),
    /// A sequence (a TOML array, or an array of tables).
    Array(Box<Shape>),
    /// A map with names chosen by the user (a table of tables).
    Map(Box<Shape>),
    /// An enum of unit variants: a string, one of these.
    Enum {
        /// The Rust type's name (to find its variants' docs).
        name: &'static str,
        /// The values, as serde names them.
        variants: &'static [&'static str],
    },
}

/// One key of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The key as written in the file.
    pub key: &'static str,
    /// Its value.
    pub shape: Shape,
    /// Whether serde refuses a table without it.
    pub required: bool,
}

#[derive(Debug)]
struct WalkError {
    message: String,
    /// The key whose absence serde refused.
    missing: Option<String>,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WalkError {}

impl de::Error for WalkError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        let message = message.to_string();
        // A section's own type reaches serde through a type-erased
        // deserializer, which hands its `missing_field` on as text.
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
            .map(str::to_owned);
        WalkError { message, missing }
    }

    fn missing_field(field: &'static str) -> Self {
        WalkError {
            message: format!("missing field `{field}`"),
            missing: Some(field.to_owned()),
        }
    }
}

/// A deserializer that hands every type a made-up value of the kind it
/// asks for, and records what that was in `out`.
struct Walker<'a> {
    /// The dotted path of the value (`providers.static.hosts[]`).
    path: String,
    out: &'a RefCell<Option<Shape>>,
    /// A key left out of the struct at a path, to see whether it is required.
    omit: Option<&'a (String, &'static str)>,
}

impl<'a> Walker<'a> {
    fn child(&self, path: String, out: &'a RefCell<Option<Shape>>) -> Walker<'a> {
        Walker {
            path,
            out,
            omit: self.omit,
        }
    }

    fn set(&self, shape: Shape) {
        *self.out.borrow_mut() = Some(shape);
    }

    /// Runs `f` with a walker for a value inside this one, and returns
    /// what it recorded.
    fn nested<T>(
        &self,
        path: String,
        f: impl FnOnce(Walker<'_>) -> Result<T, WalkError>,
    ) -> Result<(T, Shape), WalkError> {
        let slot = RefCell::new(None);
        let value = f(self.child(path, &slot))?;
        let shape = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        Ok((value, shape))
    }
}

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

macro_rules! scalar {
    ($($method:ident => $kind:literal, $visit:ident($($value:expr)?);)*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
            self.set(Shape::Scalar($kind));
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = WalkError;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, WalkError> {
        Err(de::Error::custom(format!(
            "`{}`: a type the reference cannot describe (it takes any value)",
            self.path
        )))
    }

    scalar! {
        deserialize_bool => "boolean", visit_bool(false);
        deserialize_i8 => "integer", visit_i64(1);
        deserialize_i16 => "integer", visit_i64(1);
        deserialize_i32 => "integer", visit_i64(1);
        deserialize_i64 => "integer", visit_i64(1);
        deserialize_u8 => "integer", visit_u64(1);
        deserialize_u16 => "integer", visit_u64(1);
        deserialize_u32 => "integer", visit_u64(1);
        deserialize_u64 => "integer", visit_u64(1);
        deserialize_f32 => "number", visit_f64(1.0);
        deserialize_f64 => "number", visit_f64(1.0);
        deserialize_char => "string", visit_char('x');
        deserialize_str => "string", visit_str("x");
        deserialize_string => "string", visit_str("x");
        deserialize_bytes => "bytes", visit_bytes(b"x");
        deserialize_byte_buf => "bytes", visit_bytes(b"x");
        deserialize_unit => "unit", visit_unit();
        deserialize_identifier => "string", visit_str("x");
        deserialize_ignored_any => "unit", visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let (value, inner) = self.nested(self.path.clone(), |w| visitor.visit_some(w))?;
        self.set(Shape::Optional(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let slot = RefCell::new(None);
        let value = visitor.visit_seq(OneElement {
            walker: self.child(format!("{}[]", self.path), &slot),
            done: false,
        })?;
        let inner = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        self.set(Shape::Array(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, WalkError> {
        let slot = RefCell::new(None);
        let value = visitor.visit_map(OneEntry {
            walker: self.child(join(&self.path, "NAME"), &slot),
            state: 0,
        })?;
        let inner = slot.into_inner().unwrap_or(Shape::Scalar("value"));
        self.set(Shape::Map(Box::new(inner)));
        Ok(value)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        let keys: Vec<&'static str> = fields
            .iter()
            .copied()
            .filter(|key| self.omit != Some(&(self.path.clone(), *key)))
            .collect();
        let recorded = RefCell::new(Vec::new());
        let value = visitor.visit_map(Fields {
            walker: &self,
            keys,
            next: 0,
            recorded: &recorded,
        })?;
        self.set(Shape::Struct {
            name,
            fields: recorded.into_inner(),
        });
        Ok(value)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, WalkError> {
        self.set(Shape::Enum { name, variants });
        let first = variants.first().copied().unwrap_or_default();
        visitor.visit_enum(first.into_deserializer())
    }
}

struct OneElement<'a> {
    walker: Walker<'a>,
    done: bool,
}

impl<'de> de::SeqAccess<'de> for OneElement<'_> {
    type Error = WalkError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, WalkError> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        let walker = self.walker.child(self.walker.path.clone(), self.walker.out);
        seed.deserialize(walker).map(Some)
    }
}

struct OneEntry<'a> {
    walker: Walker<'a>,
    state: u8,
}

impl<'de> de::MapAccess<'de> for OneEntry<'_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        if self.state > 0 {
            return Ok(None);
        }
        self.state = 1;
        seed.deserialize("NAME".into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, WalkError> {
        let walker = self.walker.child(self.walker.path.clone(), self.walker.out);
        seed.deserialize(walker)
    }
}

struct Fields<'a, 'w> {
    walker: &'a Walker<'w>,
    keys: Vec<&'static str>,
    next: usize,
    recorded: &'a RefCell<Vec<Field>>,
}

impl<'de> de::MapAccess<'de> for Fields<'_, '_> {
    type Error = WalkError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, WalkError> {
        let Some(key) = self.keys.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize((*key).into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, WalkError> {
        let key = self.keys[self.next];
        self.next += 1;
        let (value, shape) = self
            .walker
            .nested(join(&self.walker.path, key), |w| seed.deserialize(w))?;
        self.recorded.borrow_mut().push(Field {
            key,
            shape,
            required: false,
        });
        Ok(value)
    }
}

/// Walks [`Config`] with `omit` left out.
fn walk(omit: Option<&(String, &'static str)>) -> Result<Shape, WalkError> {
    let slot = RefCell::new(None);
    let walker = Walker {
        path: String::new(),
        out: &slot,
        omit,
    };
    <Config as serde::Deserialize>::deserialize(walker)?;
    Ok(slot.into_inner().unwrap_or(Shape::Scalar("value")))
}

/// The shape of `btrfsqa.toml`, with required keys marked.
pub(super) fn config_shape() -> Result<Shape, String> {
    let mut shape = walk(None).map_err(|e| e.to_string())?;
    mark_required(&mut shape, "")?;
    Ok(shape)
}

fn mark_required(shape: &mut Shape, path: &str) -> Result<(), String> {
    match shape {
        Shape::Struct { fields, .. } => {
            for field in fields {
                let omit = (path.to_owned(), field.key);
                field.required = match walk(Some(&omit)) {
                    Ok(_) => false,
                    Err(err) if err.missing.as_deref() == Some(field.key) => true,
                    Err(err) => return Err(format!("`{}`: {err}", join(path, field.key))),
                };
                mark_required(&mut field.shape, &join(path, field.key))?;
            }
        }
        Shape::Optional(inner) => mark_required(inner, path)?,
        Shape::Array(inner) => mark_required(inner, &format!("{path}[]"))?,
        Shape::Map(inner) => mark_required(inner, &join(path, "NAME"))?,
        Shape::Scalar(_) | Shape::Enum { .. } => {}
    }
    Ok(())
}
