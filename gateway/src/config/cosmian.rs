//! A Cosmian VM `agent.toml` given where `verigated.toml` is expected: instead of only
//! refusing its unknown fields, name the verigated equivalent of each key it holds, with
//! its value, so that an operator moving over can write the new file from the old one
//! (`docs/coming-from-cosmian-vm.md` has the same table).
//!
//! Only looked at once the file failed to parse as `verigated.toml`, so a valid
//! configuration never pays for it.

use std::fmt;

/// One key of the `agent.toml` and what it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Equivalent {
    /// `section.key` as written in the `agent.toml`.
    pub key: String,
    /// Its value, as TOML (strings quoted and escaped).
    pub value: String,
    /// What to write in `verigated.toml` instead, or why nothing is needed.
    pub equivalent: String,
}

impl fmt::Display for Equivalent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {} -> {}", self.key, self.value, self.equivalent)
    }
}

/// What verigated needs that an `agent.toml` has no key for.
pub const ALSO_NEEDED: &str = "also needed: [gateway] domain (the VM's DNS name, which its \
    own certificate names) and one [[route]] per name the VM serves; every key is documented \
    in configs/verigated.toml";

/// The equivalents of `text`'s keys when it is a Cosmian VM `agent.toml` (an `[agent]`
/// table and no `[gateway]`); `None` otherwise, or when it is not TOML at all.
pub fn recognize(text: &str) -> Option<Vec<Equivalent>> {
    let doc: toml::Table = text.parse().ok()?;
    if doc.contains_key("gateway") || !doc.get("agent").is_some_and(toml::Value::is_table) {
        return None;
    }
    let mut out = Vec::new();
    for (section, value) in &doc {
        let Some(table) = value.as_table() else {
            out.push(unknown(&key_text(section), value));
            continue;
        };
        for (key, value) in table {
            let full = format!("{}.{}", key_text(section), key_text(key));
            let equivalent = match (section.as_str(), key.as_str()) {
                ("agent", _) => agent_key(key, value, table),
                ("app", "service_type") => Some(format!(
                    "[app] service_type = {value} (systemd, supervisor or standalone)"
                )),
                ("app", "service_name" | "app_storage") => {
                    Some(format!("[app] {key} = {value} (same meaning)"))
                }
                _ => None,
            };
            out.push(match equivalent {
                Some(equivalent) => Equivalent {
                    key: full,
                    value: value.to_string(),
                    equivalent,
                },
                None => unknown(&full, value),
            });
        }
    }
    Some(out)
}

/// A key as TOML writes it: bare when it can be, else quoted and escaped (a key may hold
/// any character, control sequences included).
fn key_text(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_string()
    } else {
        toml::Value::String(key.to_string()).to_string()
    }
}

fn unknown(key: &str, value: &toml::Value) -> Equivalent {
    Equivalent {
        key: key.to_string(),
        value: value.to_string(),
        equivalent: "no verigate equivalent known; see docs/coming-from-cosmian-vm.md".into(),
    }
}

/// The equivalent of `[agent] key = value`; `agent` is the whole table (host and port
/// become one `listen` address).
fn agent_key(key: &str, value: &toml::Value, agent: &toml::Table) -> Option<String> {
    let text = |v: &toml::Value| match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let listen = || {
        let host = agent
            .get("host")
            .map_or_else(|| "0.0.0.0".to_string(), text);
        let port = agent.get("port").map_or_else(|| "443".to_string(), text);
        let address = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        format!(
            "[gateway] listen = [{}] (verigated usually owns port 443 and routes the other \
             names by SNI)",
            toml::Value::String(address)
        )
    };
    Some(match key {
        "host" | "port" => listen(),
        "ssl_certificate" | "ssl_private_key" => format!(
            "[gateway] {key} = {value} (a relative path is under data_dir; without both \
             files verigated makes its own)"
        ),
        "tpm_device" => format!(
            "[attestation] tpm = {} (or \"auto\")",
            toml::Value::String(format!("device:{}", text(value)))
        ),
        "data_storage" => format!(
            "[gateway] data_dir = {value}, encrypted with `verigated storage init` (and \
             [storage])"
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`recognize`] maps `text` to, as lines.
    fn lines(text: &str) -> Vec<String> {
        recognize(text)
            .expect("an agent.toml")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn only_an_agent_file_is_recognized() {
        assert_eq!(
            recognize("[gateway]\ndomain = \"a\"\n[agent]\nhost = \"x\""),
            None
        );
        assert_eq!(recognize("[app]\nservice_type = \"systemd\""), None);
        assert_eq!(recognize("agent = 1"), None);
        assert_eq!(recognize("not toml ["), None);
        assert_eq!(recognize(""), None);
    }

    #[test]
    fn host_and_port_become_one_listen_address() {
        let l = lines("[agent]\nhost = \"::\"\nport = 5555\n");
        assert_eq!(l.len(), 2);
        assert!(
            l[0].starts_with("agent.host = \"::\" -> [gateway] listen = [\"[::]:5555\"]"),
            "{l:?}"
        );
        assert!(
            l[1].starts_with("agent.port = 5555 -> [gateway] listen = [\"[::]:5555\"]"),
            "{l:?}"
        );
        // A port alone keeps every address.
        let l = lines("[agent]\nport = 5555\n");
        assert!(l[0].contains("listen = [\"0.0.0.0:5555\"]"), "{l:?}");
    }

    #[test]
    fn odd_values_and_unknown_keys_are_named_not_refused() {
        let l = lines(
            "top = 1\n[agent]\ntpm_device = 7\nport = \"x\\u001b[2J\"\nextra = true\n\
             [[app]]\nservice_name = \"a\"\n[other]\nk = \"v\"\n",
        );
        let joined = l.join("\n");
        assert!(
            joined.contains("agent.tpm_device = 7 -> [attestation] tpm = \"device:7\""),
            "{joined}"
        );
        assert!(
            joined.contains("agent.extra = true -> no verigate equivalent"),
            "{joined}"
        );
        assert!(
            joined.contains("other.k = \"v\" -> no verigate equivalent"),
            "{joined}"
        );
        assert!(
            joined.contains("top = 1 -> no verigate equivalent"),
            "{joined}"
        );
        assert!(joined.contains("app = "), "{joined}");
        let l = lines("[agent]\n\"k\\u001b[2J\" = 1\n");
        assert!(
            l[0].starts_with("agent.\"k\\u001B[2J\" = 1 -> no verigate"),
            "{l:?}"
        );
        // A control character in a value is printed escaped, never raw.
        assert!(!joined.contains('\u{1b}'), "{joined:?}");
    }
}
