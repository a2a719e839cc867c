//! Test: every field the configuration schema accepts is documented in the example
//! config, `configs/verigated.toml`, as a `key = ...` line (commented out or not) under
//! its `[section]` header.
//!
//! The fields are read from the schema itself, not from a list kept by hand: a
//! deserializer that answers each request with a placeholder records the field names
//! serde asks it for (`deserialize_struct` names them all) and walks into nested tables.
//! A field whose placeholder value its type refuses (a custom check) is still recorded;
//! the walk restarts without it, so one refusal does not hide the fields after it.

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

/// What the walk found: each field's dotted path (`app.standalone.command`) and whether
/// its value is a table (documented by a `[section]` header) or a value.
#[derive(Default)]
struct Found {
    fields: BTreeMap<String, bool>,
    /// Fields whose placeholder was refused: not offered again.
    skip: BTreeSet<String>,
    /// The field being walked when an error came back.
    failed: Option<String>,
}

#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Refused {}
impl de::Error for Refused {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Refused(msg.to_string())
    }
}

/// Answers every request with a placeholder, recording struct fields under `path`.
struct Walker<'a> {
    path: String,
    found: &'a RefCell<Found>,
}

impl Walker<'_> {
    fn mark_table(&self) {
        if let Some(is_table) = self.found.borrow_mut().fields.get_mut(&self.path) {
            *is_table = true;
        }
    }
}

macro_rules! placeholder {
    ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
            v.$visit($value)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Walker<'_> {
    type Error = Refused;

    placeholder! {
        deserialize_any => visit_str("x"),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i8(0),
        deserialize_i16 => visit_i16(0),
        deserialize_i32 => visit_i32(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u8(0),
        deserialize_u16 => visit_u16(0),
        deserialize_u32 => visit_u32(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f32(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str("x"),
        deserialize_string => visit_str("x"),
        deserialize_bytes => visit_str("x"),
        deserialize_byte_buf => visit_str("x"),
        deserialize_identifier => visit_str("x"),
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        v.visit_unit()
    }
    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        v.visit_unit()
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        v.visit_some(self)
    }
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Refused> {
        v.visit_unit()
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, Refused> {
        v.visit_newtype_struct(self)
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        v.visit_seq(OneElement { walker: Some(self) })
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, Refused> {
        self.deserialize_seq(v)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, Refused> {
        self.deserialize_seq(v)
    }
    /// A map with free keys (e.g. `env`): a value, not a table of fields.
    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Refused> {
        v.visit_map(de::value::MapDeserializer::new(std::iter::empty::<(
            &str,
            &str,
        )>()))
        .map_err(|e: de::value::Error| Refused(e.to_string()))
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Refused> {
        self.mark_table();
        let prefix = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}.", self.path)
        };
        let mut offered = Vec::new();
        {
            let mut found = self.found.borrow_mut();
            for field in fields {
                let path = format!("{prefix}{field}");
                found.fields.entry(path.clone()).or_insert(false);
                if !found.skip.contains(&path) {
                    offered.push((*field, path));
                }
            }
        }
        v.visit_map(Fields {
            offered: offered.into_iter(),
            current: None,
            found: self.found,
        })
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Refused> {
        let first = variants.first().copied().unwrap_or("x");
        v.visit_enum(first.into_deserializer())
            .map_err(|e: de::value::Error| Refused(e.to_string()))
    }
}

struct OneElement<'a> {
    walker: Option<Walker<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Refused;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Refused> {
        match self.walker.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}

struct Fields<'a> {
    offered: std::vec::IntoIter<(&'static str, String)>,
    current: Option<String>,
    found: &'a RefCell<Found>,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Refused;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Refused> {
        match self.offered.next() {
            Some((name, path)) => {
                self.current = Some(path);
                seed.deserialize(name.into_deserializer())
                    .map(Some)
                    .map_err(|e: de::value::Error| Refused(e.to_string()))
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Refused> {
        let path = self.current.clone().unwrap_or_default();
        let walker = Walker {
            path: path.clone(),
            found: self.found,
        };
        seed.deserialize(walker).inspect_err(|_| {
            let mut found = self.found.borrow_mut();
            // The innermost field fails first; outer ones only pass the error on.
            if found.failed.is_none() {
                found.failed = Some(path);
            }
        })
    }
}

/// Every field `T` accepts, with whether it is a table.
fn schema_fields<T: for<'de> Deserialize<'de>>() -> BTreeMap<String, bool> {
    let found = RefCell::new(Found::default());
    loop {
        let walker = Walker {
            path: String::new(),
            found: &found,
        };
        // A missing (skipped) field or a refused placeholder ends the walk with an error;
        // the fields seen so far are recorded either way.
        let _ = T::deserialize(walker);
        let mut f = found.borrow_mut();
        match f.failed.take() {
            Some(path) if !f.skip.contains(&path) => {
                f.skip.insert(path);
            }
            _ => break,
        }
    }
    found.into_inner().fields
}

/// The `[section]` headers and `key =` lines of the example (commented out or not), as
/// dotted paths: `gateway.listen`, `app.standalone`, `route.sni`.
fn documented(example: &str) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    let mut section = String::new();
    for line in example.lines() {
        let line = line.trim_start_matches('#').trim();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            if let Some(end) = name.find(']') {
                section = name[..end].trim().to_string();
                paths.insert(section.clone());
                continue;
            }
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            paths.insert(if section.is_empty() {
                key.to_string()
            } else {
                format!("{section}.{key}")
            });
        }
    }
    paths
}

#[test]
fn the_example_config_documents_every_field_the_schema_accepts() {
    let example_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/verigated.toml");
    let example = std::fs::read_to_string(example_path).expect("configs/verigated.toml");
    let fields = schema_fields::<super::RawConfig>();
    // The walk itself works: it reaches the top sections and a nested table.
    for known in ["gateway", "gateway.domain", "route.sni", "app.service_type"] {
        assert!(fields.contains_key(known), "the schema walk missed {known}");
    }
    let documented = documented(&example);
    let missing: Vec<String> = fields
        .iter()
        .filter(|(path, _)| !documented.contains(*path))
        .map(|(path, is_table)| match (is_table, path.rsplit_once('.')) {
            (true, _) => format!("`[{path}]` (a section header, even commented out)"),
            (false, Some((section, key))) => format!("`{key} = ...` under `[{section}]`"),
            (false, None) => format!("`{path} = ...` at the top"),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "configs/verigated.toml must document every field the configuration accepts \
         (a `key = value` line, commented out if optional, with a comment saying what it \
         does); missing:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_documented_scan_reads_sections_and_commented_keys() {
    let example = "[gateway]\nlisten = []\n# [app]\n# service_type = \"systemd\"\n\
                   # prose mentions x = y\n[[route]]\nsni = \"a\"\n";
    let d = documented(example);
    for path in [
        "gateway",
        "gateway.listen",
        "app",
        "app.service_type",
        "route.sni",
    ] {
        assert!(d.contains(path), "{path} not seen in {d:?}");
    }
    assert!(!d.iter().any(|p| p.contains("prose")), "{d:?}");
}
