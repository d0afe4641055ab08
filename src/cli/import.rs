//! Reading import files (CSV with a header row, or a JSON array of objects) into records that
//! remember their line, so that each bad row can be reported by file and line.

use std::path::Path;

use anyhow::bail;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::store::Upsert;

/// One record of an import file: its line number and its fields.
pub struct Record {
    pub line: u64,
    pub fields: Map<String, Value>,
}

/// Reads `path` as JSON when it starts with `[` (after whitespace), else as CSV with headers.
/// A column (or JSON key) not in `known` refuses the file, naming it, unless `allow_extra`: a
/// misspelt `monthly_price` must not import every price as zero. An `external_ref` that appears
/// on more than one row makes each of those rows an error naming the others: which one is right
/// is not ours to guess, and importing both would update and audit the entry on every run.
pub fn read_records(path: &Path, known: &[&str], allow_extra: bool) -> anyhow::Result<Vec<Record>> {
    let mut records = read_any(path)?;
    if !allow_extra {
        for r in &records {
            if let Some(k) = r
                .fields
                .keys()
                .find(|k| !k.starts_with("__") && !known.contains(&k.as_str()))
            {
                bail!(
                    "{}:{}: unknown column {k:?} (known: {}); nothing was imported. Fix its name, or pass --allow-extra-columns to ignore it",
                    path.display(),
                    r.line,
                    known.join(", ")
                );
            }
        }
    }
    let mut lines_of: std::collections::HashMap<String, Vec<u64>> = Default::default();
    for r in &records {
        if let Some(key) = Fields(&r.fields).str("external_ref") {
            lines_of.entry(key).or_default().push(r.line);
        }
    }
    for r in &mut records {
        let Some(key) = Fields(&r.fields).str("external_ref") else {
            continue;
        };
        let lines = &lines_of[&key];
        if lines.len() > 1 && Fields(&r.fields).error().is_none() {
            let others: Vec<String> = lines
                .iter()
                .filter(|l| **l != r.line)
                .map(u64::to_string)
                .collect();
            r.fields.insert(
                "__error".into(),
                Value::String(format!(
                    "external_ref {key:?} is also on line {}: keep one row per entry (none of them was imported)",
                    others.join(", ")
                )),
            );
        }
    }
    Ok(records)
}

fn read_any(path: &Path) -> anyhow::Result<Vec<Record>> {
    let bytes =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{}: not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('[') {
        read_json(path, text)
    } else {
        read_csv(path, text)
    }
}

fn read_csv(path: &Path, text: &str) -> anyhow::Result<Vec<Record>> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| anyhow::anyhow!("{}: cannot read the header row: {e}", path.display()))?
        .iter()
        .map(|h| h.to_ascii_lowercase().replace([' ', '-'], "_"))
        .collect();
    if let Some(i) = headers.iter().position(|h| h.is_empty()) {
        bail!(
            "{}:1: column {} of the header row has no name; nothing was imported",
            path.display(),
            i + 1
        );
    }
    let mut out = Vec::new();
    for row in reader.records() {
        let row = match row {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map(|p| line_at(text, p)).unwrap_or(0);
                let mut fields = Map::new();
                fields.insert(
                    "__error".into(),
                    Value::String(format!("malformed CSV row: {e}")),
                );
                out.push(Record { line, fields });
                continue;
            }
        };
        let line = row.position().map(|p| line_at(text, p)).unwrap_or(0);
        let mut fields = Map::new();
        if row.iter().any(|v| v.contains('\0')) {
            fields.insert(
                "__error".into(),
                Value::String("the row contains a NUL byte".into()),
            );
            out.push(Record { line, fields });
            continue;
        }
        for (h, v) in headers.iter().zip(row.iter()) {
            if !v.is_empty() {
                fields.insert(h.clone(), Value::String(v.to_string()));
            }
        }
        out.push(Record { line, fields });
    }
    Ok(out)
}

/// The line a CSV record starts on. The reader counts lines at the start of a record, before the
/// `\n` of a CRLF line ending (and of blank lines) in front of it: each such `\n` is one more.
fn line_at(text: &str, p: &csv::Position) -> u64 {
    let ahead = text.as_bytes().get(p.byte() as usize..).unwrap_or_default();
    let skipped = ahead
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|b| **b == b'\n')
        .count();
    p.line() + skipped as u64
}

fn read_json(path: &Path, text: &str) -> anyhow::Result<Vec<Record>> {
    let values: Vec<Value> = serde_json::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "{}:{}: not a JSON array of objects: {e}",
            path.display(),
            e.line()
        )
    })?;
    let lines = element_lines(text);
    Ok(values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line = lines.get(i).copied().unwrap_or(0);
            match v {
                Value::Object(fields) => Record { line, fields },
                other => {
                    let mut fields = Map::new();
                    fields.insert(
                        "__error".into(),
                        Value::String(format!("expected an object, found {other}")),
                    );
                    Record { line, fields }
                }
            }
        })
        .collect())
}

/// The line on which each element of a top-level JSON array starts.
fn element_lines(text: &str) -> Vec<u64> {
    let (mut depth, mut line, mut in_str, mut esc) = (0i32, 1u64, false, false);
    let mut expecting = false;
    let mut out = Vec::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        if depth == 1 && expecting && !c.is_whitespace() && c != ']' {
            out.push(line);
            expecting = false;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                depth += 1;
                if depth == 1 {
                    expecting = true;
                }
            }
            ']' | '}' => depth -= 1,
            ',' if depth == 1 => expecting = true,
            _ => {}
        }
    }
    out
}

/// Typed access to a record's fields, with errors that name the field.
pub struct Fields<'a>(pub &'a Map<String, Value>);

impl Fields<'_> {
    pub fn str(&self, key: &str) -> Option<String> {
        match self.0.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
            // A number as its exact decimal text: 1e2 is "100", and no digit is lost to f64.
            Some(Value::Number(n)) => Some(
                crate::http::json::decimal(n)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|_| n.to_string()),
            ),
            _ => None,
        }
    }

    pub fn required(&self, key: &str) -> Result<String, String> {
        self.str(key).ok_or_else(|| format!("`{key}` is missing"))
    }

    pub fn bool(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(default),
                "true" | "yes" | "y" | "1" | "enabled" => Ok(true),
                "false" | "no" | "n" | "0" | "disabled" => Ok(false),
                other => Err(format!("`{key}`: {other:?} is not yes/no")),
            },
            Some(other) => Err(format!("`{key}`: {other} is not yes/no")),
        }
    }

    pub fn error(&self) -> Option<String> {
        self.str("__error")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_lines(text: &str) -> Vec<u64> {
        read_csv(Path::new("x.csv"), text)
            .unwrap()
            .iter()
            .map(|r| r.line)
            .collect()
    }

    #[test]
    fn crlf_rows_are_reported_on_their_own_lines() {
        assert_eq!(csv_lines("a,b\n1,2\n3,4\n"), [2, 3]);
        assert_eq!(csv_lines("a,b\r\n1,2\r\n3,4\r\n"), [2, 3]);
        assert_eq!(csv_lines("a,b\r\n1,2\r\n\r\n3,4\r\n"), [2, 4]);
        assert_eq!(csv_lines("a,b\r\n\"x\r\ny\",2\r\n3,4\r\n"), [2, 4]);
    }

    #[test]
    fn json_elements_know_their_lines() {
        let text = "[\n  {\"a\": \"x,]\"},\n  {\"b\": [1, 2]}\n,\n{}]";
        assert_eq!(element_lines(text), vec![2, 3, 5]);
    }

    #[test]
    fn a_json_number_field_reads_as_its_exact_decimal_text() {
        let row: Map<String, Value> = serde_json::from_str(
            r#"{"monthly_price": 1e2, "monthly_cost": 12345678901234567.89, "postcode": 2000}"#,
        )
        .unwrap();
        let f = Fields(&row);
        assert_eq!(f.str("monthly_price").as_deref(), Some("100"));
        assert_eq!(
            f.str("monthly_cost").as_deref(),
            Some("12345678901234567.89")
        );
        assert_eq!(f.str("postcode").as_deref(), Some("2000"));
    }
}

/// Counts of an idempotent import, and each bad row with its file and line.
#[derive(Default, serde::Serialize)]
pub struct ImportReport {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub rejected: Vec<String>,
}

impl ImportReport {
    pub fn record(&mut self, path: &std::path::Path, line: u64, outcome: Result<Upsert, String>) {
        match outcome {
            Ok(Upsert::Created) => self.created += 1,
            Ok(Upsert::Updated) => self.updated += 1,
            Ok(Upsert::Unchanged) => self.unchanged += 1,
            Err(e) => self
                .rejected
                .push(format!("{}:{line}: {e}", path.display())),
        }
    }

    /// Prints the report; fails (non-zero exit) when any row was rejected.
    pub fn finish(self, ctx: &Ctx, what: &str) -> anyhow::Result<()> {
        if ctx.json {
            println!("{}", json!(self));
        } else {
            for r in &self.rejected {
                eprintln!("rejected: {r}");
            }
            println!(
                "{what}: {} created, {} updated, {} unchanged, {} rejected",
                self.created,
                self.updated,
                self.unchanged,
                self.rejected.len()
            );
        }
        if !self.rejected.is_empty() {
            bail!(
                "{} row(s) rejected; the other rows were imported",
                self.rejected.len()
            );
        }
        Ok(())
    }
}
