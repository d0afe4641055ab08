//! Plain-text tables for reports (pure formatting, no IO): used by the CLI and the summary.
//!
//! Columns are aligned by display width (`unicode-width`), not by `char`s: a CJK character or an
//! emoji takes two columns of a terminal, a combining accent none.

use std::cmp::Ordering;

use unicode_width::UnicodeWidthStr;

/// `rows` under `headers`, columns aligned; "No Records Found" when there are no rows.
pub fn render_table(headers: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "No Records Found\n".to_string();
    }
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.width());
            }
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                let w = widths.get(i).copied().unwrap_or(0);
                s.push_str(&" ".repeat(w.saturating_sub(c.width()) + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(headers);
    let rules: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&line(&rules.iter().map(String::as_str).collect::<Vec<_>>()));
    for r in rows {
        out.push_str(&line(&r.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    out
}

/// Compares as people read numbered things: runs of digits by their value, the rest as text, so
/// that RB-7 comes before RB-10 (a plain string sort puts RB-10 first).
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.chars().next(), b.chars().next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.len() - a.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let db = b.len() - b.trim_start_matches(|c: char| c.is_ascii_digit()).len();
                let (na, nb) = (&a[..da], &b[..db]);
                // Compare the values without parsing (any length): leading zeros off, then the
                // longer number is the larger, then digit by digit; "007" after "7" to be total.
                let (ta, tb) = (na.trim_start_matches('0'), nb.trim_start_matches('0'));
                let o = ta
                    .len()
                    .cmp(&tb.len())
                    .then_with(|| ta.cmp(tb))
                    .then_with(|| na.len().cmp(&nb.len()));
                if o != Ordering::Equal {
                    return o;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(&y);
                }
                a = &a[x.len_utf8()..];
                b = &b[y.len_utf8()..];
            }
        }
    }
}

/// Sorts table rows by one column in natural order (stable: equal keys keep their order).
pub fn sort_rows_naturally(rows: &mut [Vec<String>], column: usize) {
    rows.sort_by(|a, b| {
        natural_cmp(
            a.get(column).map(String::as_str).unwrap_or(""),
            b.get(column).map(String::as_str).unwrap_or(""),
        )
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_characters_align_by_display_width() {
        let t = render_table(
            &["name", "city"],
            &[
                vec!["東京商事".into(), "Tokyo".into()],
                vec!["Café 🍕".into(), "Paris".into()],
                vec!["Acme".into(), "Sydney".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        // Every row's second column starts at the same display column.
        let starts: Vec<usize> = lines
            .iter()
            .map(|l| {
                let second = l.rfind(' ').unwrap() + 1;
                l[..second].width()
            })
            .collect();
        assert!(starts.iter().all(|s| *s == starts[0]), "{t}");
        assert_eq!(lines[0], "name      city");
        assert_eq!(lines[1], "--------  ------");
        assert_eq!(lines[2], "東京商事  Tokyo");
        assert_eq!(lines[3], "Café 🍕   Paris");
    }

    #[test]
    fn invoice_numbers_sort_by_their_number_not_as_strings() {
        let mut v = vec!["RB-10", "RB-7", "RB-100", "RB-9", "RA-20"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["RA-20", "RB-7", "RB-9", "RB-10", "RB-100"]);
        assert_eq!(natural_cmp("RB-007", "RB-7"), Ordering::Greater);
        assert_eq!(natural_cmp("RB-7", "RB-7"), Ordering::Equal);
        assert_eq!(
            natural_cmp("RB-99999999999999999999999", "RB-100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn rows_sort_naturally_by_the_chosen_column() {
        let mut rows = vec![
            vec!["RB-10".to_string(), "b".to_string()],
            vec!["RB-7".to_string(), "a".to_string()],
        ];
        sort_rows_naturally(&mut rows, 0);
        assert_eq!(rows[0][0], "RB-7");
    }
}
