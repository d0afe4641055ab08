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

pub use crate::table::render_table;

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
