//! The one CSV writer of every CSV the product writes (the summary, the rejects file, Xero's import
//! file): the `csv` crate quotes each field that needs it (a call type `Mobile, Telstra` stays one
//! field), and every cell goes through `domain::text::spreadsheet_safe`, so a cell a spreadsheet
//! would run as a formula (`=HYPERLINK(…)`, `+…`, `-…`, `@…`, a leading tab or CR) is shown as text,
//! while plain numbers (`-12.50`) stay numbers.

use std::io::Write;

use crate::domain::text::spreadsheet_safe;

pub struct CsvOut<W: Write> {
    inner: csv::Writer<W>,
}

impl<W: Write> CsvOut<W> {
    pub fn new(out: W) -> CsvOut<W> {
        CsvOut {
            inner: csv::WriterBuilder::new().flexible(true).from_writer(out),
        }
    }

    /// Writes one row, each cell made safe and quoted as needed.
    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.inner.write_record(
            cells
                .into_iter()
                .map(|c| spreadsheet_safe(c.as_ref()).into_owned()),
        )
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }

    /// Flushes and hands back the underlying writer.
    pub fn into_inner(self) -> Result<W, csv::Error> {
        self.inner
            .into_inner()
            .map_err(|e| csv::Error::from(e.into_error()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_formulas_neutralised() {
        let mut w = CsvOut::new(Vec::new());
        w.row([
            "Mobile, Telstra",
            "=1+1",
            "-3.50",
            "say \"hi\"",
            "line\nbreak",
        ])
        .unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "\"Mobile, Telstra\",'=1+1,-3.50,\"say \"\"hi\"\"\",\"line\nbreak\"\n"
        );
        let back: Vec<String> =
            csv::Reader::from_reader(format!("h1,h2,h3,h4,h5\n{text}").as_bytes())
                .records()
                .next()
                .unwrap()
                .unwrap()
                .iter()
                .map(String::from)
                .collect();
        assert_eq!(
            back,
            [
                "Mobile, Telstra",
                "'=1+1",
                "-3.50",
                "say \"hi\"",
                "line\nbreak"
            ]
        );
    }
}
