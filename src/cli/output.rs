//! Output: readable tables by default, JSON with `--json`.

use super::Ctx;

/// Prints a one-line message, or the JSON value with `--json`.
pub fn say(ctx: &Ctx, text: &str, json: serde_json::Value) {
    if ctx.json {
        println!("{json}");
    } else {
        println!("{text}");
    }
}

/// Prints `rows` under `headers` as an aligned table ("No Records Found" when empty).
pub fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", render_table(headers, rows));
}

pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "No Records Found\n".to_string();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            let w = widths.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    out.push_str(&line(
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(|s| s.as_str())
            .collect(),
    ));
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tables_say_no_records_found() {
        assert_eq!(render_table(&["a"], &[]), "No Records Found\n");
    }

    #[test]
    fn columns_align() {
        let t = render_table(
            &["id", "name"],
            &[
                vec!["1".into(), "Acme".into()],
                vec!["22".into(), "B".into()],
            ],
        );
        assert_eq!(t, "id  name\n--  ----\n1   Acme\n22  B\n");
    }
}
