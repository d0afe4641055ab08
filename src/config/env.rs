//! `REBILL_<SECTION>__<KEY>` environment overrides, laid over the file's TOML tree before it is
//! read into types. A value gets the type its key's default has, a section the file leaves out
//! starts from its defaults (so `REBILL_XERO__TAX_RATES__OUTPUT=12.5` changes one rate and keeps
//! the others), and an error in an overridden key is blamed on the variable, not the file.

use crate::settings::ConfigError;

/// Tables whose keys are names of the user's (tax types), not fields: a variable keeps their case.
const FREE_FORM_TABLES: &[&[&str]] = &[&["xero", "tax_rates"]];

/// The keys the environment set, with the variable that set each.
#[derive(Debug, Default)]
pub struct Overrides(Vec<(String, String)>);

impl Overrides {
    /// The variable that set `key`, a key inside it, or the table holding it.
    pub fn variable_for(&self, key: &str) -> Option<&str> {
        let key = key.to_ascii_lowercase();
        self.0
            .iter()
            .find(|(path, _)| {
                let path = path.to_ascii_lowercase();
                path == key
                    || key.starts_with(&format!("{path}."))
                    || path.starts_with(&format!("{key}."))
            })
            .map(|(_, var)| var.as_str())
    }
}

/// Lays every `REBILL_…` variable of `env` over `tree`.
pub fn apply(
    tree: &mut toml::Table,
    defaults: &toml::Table,
    env: &[(String, String)],
) -> Result<Overrides, ConfigError> {
    let mut overrides = Overrides::default();
    for (name, raw) in env {
        let Some(rest) = name.strip_prefix("REBILL_") else {
            continue;
        };
        if rest.starts_with("TEST_") {
            continue; // the test suite's own variables
        }
        let words: Vec<&str> = rest.split("__").collect();
        if words.len() < 2 || words.iter().any(|p| p.is_empty()) {
            continue;
        }
        let path = key_path(tree, defaults, &words);
        let value = coerce(defaults, &path, raw);
        set_path(tree, defaults, &path, value).map_err(|reason| ConfigError {
            source_name: name.clone(),
            key: path.join("."),
            reason,
        })?;
        overrides.0.push((path.join("."), name.clone()));
    }
    Ok(overrides)
}

/// The keys a variable names: each word as the file or the defaults spell it (case aside), inside
/// a free-form table as the variable spells it, else in lower case.
fn key_path(tree: &toml::Table, defaults: &toml::Table, words: &[&str]) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    let (mut in_tree, mut in_defaults) = (Some(tree), Some(defaults));
    for word in words {
        let known = [in_tree, in_defaults]
            .into_iter()
            .flatten()
            .find_map(|t| t.keys().find(|k| k.eq_ignore_ascii_case(word)).cloned());
        let free_form = FREE_FORM_TABLES.iter().any(|t| {
            t.len() == path.len() && t.iter().zip(&path).all(|(a, b)| a.eq_ignore_ascii_case(b))
        });
        let key = known.unwrap_or_else(|| {
            if free_form {
                word.to_string()
            } else {
                word.to_ascii_lowercase()
            }
        });
        in_tree = in_tree.and_then(|t| t.get(&key)).and_then(|v| v.as_table());
        in_defaults = in_defaults
            .and_then(|t| t.get(&key))
            .and_then(|v| v.as_table());
        path.push(key);
    }
    path
}

/// Environment values are text; give them the type the key's default has, so that
/// `REBILL_INVOICES__AUTO_SEND=false` is a boolean and `REBILL_XERO__TENANT_ID=123` stays text.
fn coerce(defaults: &toml::Table, path: &[String], raw: &str) -> toml::Value {
    let node = lookup(defaults, path);
    let parsed = || {
        toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
    };
    match node {
        Some(toml::Value::String(_)) => toml::Value::String(raw.to_string()),
        Some(_) => parsed().unwrap_or_else(|| toml::Value::String(raw.to_string())),
        None => match parsed() {
            Some(
                v @ (toml::Value::Boolean(_) | toml::Value::Integer(_) | toml::Value::Array(_)),
            ) => v,
            _ => toml::Value::String(raw.to_string()),
        },
    }
}

fn lookup<'a>(table: &'a toml::Table, path: &[String]) -> Option<&'a toml::Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    if rest.is_empty() {
        Some(v)
    } else {
        lookup(v.as_table()?, rest)
    }
}

/// Sets `path` in `tree`; a table on the way that the file leaves out starts as its default.
fn set_path(
    tree: &mut toml::Table,
    defaults: &toml::Table,
    path: &[String],
    value: toml::Value,
) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty key")?;
    let mut t = tree;
    for (i, p) in parents.iter().enumerate() {
        t = t
            .entry(p.clone())
            .or_insert_with(|| match lookup(defaults, &path[..=i]) {
                Some(v @ toml::Value::Table(_)) => v.clone(),
                _ => toml::Value::Table(toml::Table::new()),
            })
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a section"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}
