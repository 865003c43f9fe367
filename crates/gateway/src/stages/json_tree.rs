//! A request body read for a schema's yes or no: a tree that borrows its names and strings
//! from the body (allocating only for text with escapes), with objects as lists of members,
//! checked by the same compiled schema through `jsonschema`'s [`Json`] interface. It answers
//! only "valid": anything else (a body the schema refuses, a repeated name, a blank member
//! the contract counts as missing, or any body it does not read) goes the full way, where
//! the body is read as a `serde_json::Value` and every problem is described. Reading a
//! 1 KiB body so costs a fraction of building a `Value`, whose objects hash every name.
//!
//! It is read by `serde_json`'s own parser, so it accepts exactly what the full way does
//! (the same nesting limit, numbers, escapes and UTF-8 rules).

use jsonschema::json::{Array, Json, Node, NodeIdentity, Object};
use jsonschema::types::JsonType;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};
use std::borrow::Cow;

/// The most members an object may have to be read here (a repeated name is looked for
/// among the members before it); a larger one goes the full way.
const MAX_MEMBERS: usize = 64;

/// The representation, as `jsonschema` names it.
pub(crate) struct Tree;

/// One value of a body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Item<'b> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as `serde_json` reads it.
    Number(Number),
    /// A string.
    String(Cow<'b, str>),
    /// An array.
    Array(Vec<Item<'b>>),
    /// An object's members, in order, each name once.
    Object(Vec<(Cow<'b, str>, Item<'b>)>),
}

/// A body read: its root, and whether a member of an object in it is a blank string.
#[derive(Debug)]
pub(crate) struct Body<'b> {
    /// The root value.
    pub(crate) root: Item<'b>,
    /// Whether an object has a member whose value is a blank string.
    pub(crate) blank: bool,
}

/// Reads `body`; `None` when it is not a JSON text this reads (the full way then says why).
pub(crate) fn read(body: &[u8]) -> Option<Body<'_>> {
    // Checked as UTF-8 once, whole: the parser then need not check each string.
    let text = std::str::from_utf8(body).ok()?;
    let mut blank = false;
    let mut d = serde_json::Deserializer::from_str(text);
    let root = Seed(&mut blank).deserialize(&mut d).ok()?;
    d.end().ok()?;
    Some(Body { root, blank })
}

struct Seed<'s>(&'s mut bool);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Item<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

/// Declines a body this does not read (the full way reads it and says what is wrong).
fn decline<E: serde::de::Error>() -> E {
    E::custom("read the full way")
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Item<'de>, E> {
        Ok(Item::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Item<'de>, E> {
        Ok(Item::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Item<'de>, E> {
        Ok(Item::Number(n.into()))
    }
    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Item<'de>, E> {
        // As the full way reads it (a number it cannot hold becomes null).
        Ok(Number::from_f64(n).map_or(Item::Null, Item::Number))
    }
    fn visit_borrowed_str<E>(self, t: &'de str) -> Result<Item<'de>, E> {
        Ok(Item::String(Cow::Borrowed(t)))
    }
    fn visit_str<E>(self, t: &str) -> Result<Item<'de>, E> {
        Ok(Item::String(Cow::Owned(t.to_owned())))
    }
    fn visit_string<E>(self, t: String) -> Result<Item<'de>, E> {
        Ok(Item::String(Cow::Owned(t)))
    }
    fn visit_unit<E>(self) -> Result<Item<'de>, E> {
        Ok(Item::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item<'de>, A::Error> {
        let mut out = Vec::with_capacity(4);
        while let Some(v) = seq.next_element_seed(Seed(&mut *self.0))? {
            out.push(v);
        }
        Ok(Item::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item<'de>, A::Error> {
        // Room for a typical object's members at once (one allocation, no regrowth).
        let mut out: Vec<(Cow<'de, str>, Item<'de>)> = Vec::with_capacity(8);
        while let Some(k) = map.next_key_seed(Name)? {
            if out.len() >= MAX_MEMBERS || out.iter().any(|(seen, _)| *seen == k) {
                return Err(decline());
            }
            let v = map.next_value_seed(Seed(&mut *self.0))?;
            if let Item::String(s) = &v
                && s.trim().is_empty()
            {
                *self.0 = true;
            }
            out.push((k, v));
        }
        Ok(Item::Object(out))
    }
}

/// A member's name, borrowed from the body where it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E>(self, t: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(t))
    }
    fn visit_str<E>(self, t: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(t.to_owned()))
    }
    fn visit_string<E>(self, t: String) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(t))
    }
}

impl Item<'_> {
    /// The same value as a `serde_json::Value` (for the validator's cold paths: errors,
    /// `const`, `enum`, `uniqueItems`).
    fn value(&self) -> Value {
        match self {
            Item::Null => Value::Null,
            Item::Bool(b) => Value::Bool(*b),
            Item::Number(n) => Value::Number(n.clone()),
            Item::String(s) => Value::String(s.to_string()),
            Item::Array(a) => Value::Array(a.iter().map(Item::value).collect()),
            Item::Object(m) => {
                Value::Object(m.iter().map(|(k, v)| (k.to_string(), v.value())).collect())
            }
        }
    }
}

impl Json for Tree {
    type Node<'a> = &'a Item<'a>;
    type PreparedKey = String;
    type StringBuffer = ();

    fn prepare_key(key: &str) -> String {
        key.to_owned()
    }

    fn with_string_node<T>((): &mut (), string: &str, f: impl FnOnce(Self::Node<'_>) -> T) -> T {
        f(&Item::String(Cow::Borrowed(string)))
    }
}

impl<'a> Node<'a, Tree> for &'a Item<'a> {
    type Object = &'a [(Cow<'a, str>, Item<'a>)];
    type Array = &'a [Item<'a>];
    type Number = &'a Number;

    fn as_object(&self) -> Option<Self::Object> {
        match self {
            Item::Object(m) => Some(m),
            _ => None,
        }
    }

    fn as_array(&self) -> Option<Self::Array> {
        match self {
            Item::Array(a) => Some(a),
            _ => None,
        }
    }

    fn as_string(&self) -> Option<Cow<'a, str>> {
        match self {
            Item::String(s) => Some(Cow::Borrowed(&**s)),
            _ => None,
        }
    }

    fn as_number(&self) -> Option<&'a Number> {
        match self {
            Item::Number(n) => Some(n),
            _ => None,
        }
    }

    fn as_boolean(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self, Item::Null)
    }

    fn json_type(&self) -> JsonType {
        match self {
            Item::Null => JsonType::Null,
            Item::Bool(_) => JsonType::Boolean,
            Item::Number(_) => JsonType::Number,
            Item::String(_) => JsonType::String,
            Item::Array(_) => JsonType::Array,
            Item::Object(_) => JsonType::Object,
        }
    }

    fn string_length_within(&self, min: u64, max: u64) -> Option<bool> {
        let Item::String(s) = self else {
            return None;
        };
        // A character takes one to four bytes: the byte length often decides it.
        let bytes = s.len() as u64;
        if bytes < min || bytes.div_ceil(4) > max {
            return Some(false);
        }
        if min <= bytes.div_ceil(4) && bytes <= max {
            return Some(true);
        }
        Some((min..=max).contains(&(s.chars().count() as u64)))
    }

    fn to_value(&self) -> Cow<'a, Value> {
        Cow::Owned(self.value())
    }

    fn identity(&self) -> Option<NodeIdentity> {
        Some(NodeIdentity::new(
            std::ptr::from_ref::<Item<'a>>(*self) as usize
        ))
    }
}

impl<'a> Object<'a, Tree> for &'a [(Cow<'a, str>, Item<'a>)] {
    type Node = &'a Item<'a>;
    type MemberName = &'a str;
    type MembersIter = std::iter::Map<
        std::slice::Iter<'a, (Cow<'a, str>, Item<'a>)>,
        fn(&'a (Cow<'a, str>, Item<'a>)) -> (&'a str, &'a Item<'a>),
    >;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn get(&self, key: &String) -> Option<&'a Item<'a>> {
        self.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn members(&self) -> Self::MembersIter {
        self.iter().map(|(k, v)| (&**k, v))
    }
}

impl<'a> Array<'a, Tree> for &'a [Item<'a>] {
    type Node = &'a Item<'a>;
    type ElementsIter = std::slice::Iter<'a, Item<'a>>;

    fn len(&self) -> usize {
        <[_]>::len(self)
    }

    fn elements(&self) -> Self::ElementsIter {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(schema: &Value, body: &str) -> (Option<bool>, bool) {
        let full = jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let tree = jsonschema::options_for::<Tree>()
            .should_validate_formats(true)
            .build(schema)
            .unwrap();
        let fast = read(body.as_bytes()).map(|b| tree.is_valid(&b.root));
        let value: Value = serde_json::from_str(body).unwrap();
        (fast, full.is_valid(&value))
    }

    #[test]
    fn the_tree_and_the_value_agree_on_what_a_schema_accepts() {
        let schema = json!({
            "type": "object",
            "required": ["name", "ports"],
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "minLength": 2, "maxLength": 5},
                "note": {"type": "string", "minLength": 2, "maxLength": 3},
                "owner": {"type": "string", "format": "email"},
                "kind": {"enum": ["sensor", "gateway"]},
                "level": {"type": "integer", "minimum": 0, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMaximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "ports": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "required": ["number"],
                    "properties": {"number": {"type": "integer"}, "label": {"const": "http"}},
                }},
                "extra": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
                "map": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
            }
        });
        for body in [
            r#"{"name":"abc","ports":[{"number":1}]}"#,
            r#"{"name":"a\u00e9c","ports":[{"number":1,"label":"http"}],"owner":"a@b.example"}"#,
            r#"{"name":"abcdef","ports":[{"number":1}]}"#,
            r#"{"name":"abc","ports":[]}"#,
            r#"{"name":"abc","ports":[{"number":1.5}]}"#,
            r#"{"name":"abc","ports":[{"number":1,"label":"https"}]}"#,
            r#"{"name":"abc","ports":[{"number":1}],"owner":"not an address"}"#,
            r#"{"name":"abc","ports":[{"number":1}],"kind":"sensor","level":10,"ratio":0.5}"#,
            r#"{"name":"abc","ports":[{"number":1}],"level":11}"#,
            r#"{"name":"abc","ports":[{"number":1}],"ratio":1}"#,
            r#"{"name":"abc","ports":[{"number":1}],"tags":["a","b"]}"#,
            r#"{"name":"abc","ports":[{"number":1}],"tags":["a","a"]}"#,
            r#"{"name":"abc","ports":[{"number":1}],"extra":null}"#,
            r#"{"name":"abc","ports":[{"number":1}],"extra":1}"#,
            r#"{"name":"abc","ports":[{"number":1}],"map":{"ok":1}}"#,
            r#"{"name":"abc","ports":[{"number":1}],"map":{"NO":1}}"#,
            r#"{"name":"abc","ports":[{"number":1}],"unknown":1}"#,
            r#"{"ports":[{"number":1}]}"#,
            r#"{"name":"abc","ports":[{"number":1}],"note":"éé"}"#,
            r#"{"name":"abc","ports":[{"number":1}],"note":"ééé"}"#,
            r#"{"name":"abc","ports":[{"number":1}],"note":"éééé"}"#,
            r#"{"name":"abc","ports":[{"number":1}],"note":"é"}"#,
            r#"{"name":"abc","ports":[{"number":1}],"note":"abcd"}"#,
            r#"[1,2]"#,
            r#""text""#,
        ] {
            let (fast, full) = both(&schema, body);
            assert_eq!(fast, Some(full), "{body}");
        }
    }

    #[test]
    fn what_the_tree_does_not_read_goes_the_full_way() {
        // A repeated name, an object past the member limit, and text that is not JSON.
        assert!(read(br#"{"a":1,"a":2}"#).is_none());
        let big: String = format!(
            "{{{}}}",
            (0..=MAX_MEMBERS)
                .map(|i| format!("\"k{i}\":{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(read(big.as_bytes()).is_none());
        assert!(read(b"{\"a\":1").is_none());
        assert!(read(b"{\"a\":\"\xff\"}").is_none());
        assert!(read(b"{\"a\":1} x").is_none());
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(read(deep.as_bytes()).is_none());
        // Names and strings with escapes are read, and blank members noted.
        let b = read(br#"{"n\u00e9":"x\"y","e":" "}"#).unwrap();
        assert!(b.blank);
        assert_eq!(
            b.root.value(),
            json!({"n\u{e9}": "x\"y", "e": " "}),
            "the same value as serde_json reads"
        );
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-20i64..20).prop_map(Value::from),
            (-2.0f64..2.0).prop_map(Value::from),
            prop::sample::select(vec![
                "",
                " ",
                "ab",
                "abcdef",
                "a@b.example",
                "é\"x",
                "http",
                "sensor"
            ])
            .prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        prop::sample::select(vec![
                            "name", "owner", "kind", "level", "ratio", "tags", "ports", "number",
                            "label", "extra", "map", "x"
                        ]),
                        inner
                    ),
                    0..6
                )
                .prop_map(|m| Value::Object(
                    m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
                )),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Whatever the body, the quick way says yes exactly when the full way finds nothing.
        #[test]
        fn the_tree_never_accepts_what_the_value_refuses(v in arb_json()) {
            let schema = json!({
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 2, "maxLength": 5},
                    "owner": {"type": "string", "format": "email"},
                    "kind": {"enum": ["sensor", "gateway"]},
                    "level": {"type": "integer", "minimum": 0},
                    "ratio": {"type": "number", "exclusiveMaximum": 1},
                    "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                    "ports": {"type": "array", "items": {"type": "object", "required": ["number"],
                        "properties": {"number": {"type": "integer"}, "label": {"const": "http"}}}},
                    "extra": {"oneOf": [{"type": "null"}, {"type": "boolean"}]},
                    "map": {"type": "object", "additionalProperties": {"type": "string"}},
                }
            });
            let body = serde_json::to_string(&v).unwrap();
            let (fast, full) = both(&schema, &body);
            proptest::prop_assert_eq!(fast, Some(full), "{}", body);
        }
    }
}
