//! `TIDEPOOL_…` environment overrides applied to the parsed TOML tree before typing.
//!
//! `TIDEPOOL_SERVER__PG_LISTEN=0.0.0.0:6432` sets `server.pg_listen`; `__` separates path segments and
//! a numeric segment indexes an array (`TIDEPOOL_DATABASES__0__URL`). Values are read as TOML when
//! they parse as a TOML scalar, otherwise as strings.

use super::ConfigError;

pub(super) fn apply_overrides(root: &mut toml::Value, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    for (key, raw) in env {
        let Some(path) = key.strip_prefix("TIDEPOOL_") else { continue };
        if !path.contains("__") {
            continue; // e.g. TIDEPOOL_CONFIG, TIDEPOOL_LOG: read by the CLI, not the tree
        }
        let segments: Vec<String> = path.split("__").map(|s| s.to_ascii_lowercase()).collect();
        set_path(root, &segments, parse_scalar(&raw)).map_err(|e| ConfigError::Parse(format!("{key}: {e}")))?;
    }
    Ok(())
}

fn parse_scalar(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}")).ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

fn set_path(node: &mut toml::Value, path: &[String], value: toml::Value) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        *node = value;
        return Ok(());
    };
    match node {
        toml::Value::Table(t) => {
            let child = t.entry(head.clone()).or_insert_with(|| {
                if rest.first().is_some_and(|s| s.parse::<usize>().is_ok()) {
                    toml::Value::Array(vec![])
                } else {
                    toml::Value::Table(Default::default())
                }
            });
            set_path(child, rest, value)
        }
        toml::Value::Array(a) => {
            let i: usize = head.parse().map_err(|_| format!("{head:?} is not an array index"))?;
            if i == a.len() {
                a.push(toml::Value::Table(Default::default()));
            }
            let child = a.get_mut(i).ok_or_else(|| format!("index {i} is past the end of the array"))?;
            set_path(child, rest, value)
        }
        _ => Err(format!("{head:?} is not a table")),
    }
}
