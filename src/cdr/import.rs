//! The streaming import: rows are read one at a time, turned into calls, and written in batched
//! transactions; memory holds one batch whatever the file size. A malformed row is written to the
//! rejects file with its line and reason and never stops the file; a duplicate (same call key) is
//! counted, not stored twice; a call of an unknown user is stored unmatched and reported. A crash
//! mid-file leaves whole batches: running the import again completes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};

use super::csv_out::CsvOut;
use crate::domain::text::{Country, e164};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Serialize;

use super::mapping::{CallTypeBy, Column, Mapping, parse_duration, parse_start};
use crate::domain::Money;
use crate::domain::rating::{CallForRating, Direction, RatePlan, rate_call};
use crate::domain::service::normalise_user_ref;
use crate::store::calls::{CallKey, NewCall};
use crate::store::{Store, StoreError};

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ImportReport {
    pub file: String,
    pub rows_read: u64,
    pub imported: u64,
    pub duplicates: u64,
    pub skipped_by_rule: u64,
    pub rejected: u64,
    pub unmatched: u64,
    pub unrated: u64,
    /// Calls another source already holds (same user, start second and duration): left out, so
    /// that importing the PBX's file and the carrier's file of the same calls bills them once.
    pub second_source: u64,
    pub rejects_file: Option<String>,
    /// Why the file counts as failed (too many rejected rows), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

impl ImportReport {
    /// Marks the file failed when every row was rejected, or more than `max_share` of its rows
    /// were: a wrong delimiter or time format must not pass as a quiet month.
    pub fn judge(&mut self, max_share: f64) {
        if self.rejected == 0 {
            return;
        }
        let calls = self.rows_read - self.rejected - self.skipped_by_rule;
        let share = self.rejected as f64 / self.rows_read.max(1) as f64;
        if calls == 0 {
            self.failed = Some(format!(
                "every row of {} was rejected ({} rows; see {})",
                self.file,
                self.rejected,
                self.rejects_file.as_deref().unwrap_or("the rejects file")
            ));
        } else if share > max_share {
            self.failed = Some(format!(
                "{} of {} rows of {} were rejected ({:.1} %, more than cdr.max_reject_share {:.1} %; see {})",
                self.rejected,
                self.rows_read,
                self.file,
                share * 100.0,
                max_share * 100.0,
                self.rejects_file.as_deref().unwrap_or("the rejects file")
            ));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}: {reason}; nothing was imported from it")]
    Refused { file: String, reason: String },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct ImportOptions {
    pub tz: Tz,
    /// How national numbers become E.164 before a CDR's user is matched (`cdr.country`).
    pub country: Country,
    pub batch_rows: usize,
    /// Show a progress bar (only when stderr is a terminal).
    pub progress: bool,
}

struct Indexes {
    call_id: Option<usize>,
    user: usize,
    start: usize,
    duration: usize,
    destination: usize,
    call_type: Option<usize>,
    cost: Option<usize>,
    direction: Option<usize>,
    disposition: Option<usize>,
    /// Fields every row must have: the header's width, or (without a header) the highest mapped
    /// position.
    width: usize,
    /// Whether a row must have exactly `width` fields (with a header) or at least (without).
    exact: bool,
}

/// Where the mapping's `key` (e.g. `columns.direction`) is in the file. A column the mapping names
/// must be there, optional or not: a misspelt `direction` would otherwise bill free inbound calls,
/// a misspelt `cost` drop every wholesale cost, without a word.
fn index_of(c: &Column, headers: Option<&[String]>, key: &str) -> Result<usize, String> {
    match (c, headers) {
        (Column::Position(p), Some(h)) if *p >= 1 && *p <= h.len() => Ok(p - 1),
        (Column::Position(p), Some(h)) if *p >= 1 => Err(format!(
            "the mapping's `{key}` = {p} is beyond the header row's {} columns",
            h.len()
        )),
        (Column::Position(p), None) if *p >= 1 => Ok(p - 1),
        (Column::Position(_), _) => Err(format!(
            "the mapping's `{key}`: column positions start at 1"
        )),
        (Column::Name(n), Some(h)) => h
            .iter()
            .position(|x| x.trim().eq_ignore_ascii_case(n.trim()))
            .ok_or_else(|| {
                format!(
                    "the mapping's `{key}` = {n:?} is not a column of the header row (it has {})",
                    h.join(", ")
                )
            }),
        (Column::Name(n), None) => Err(format!(
            "the mapping's `{key}` = {n:?} names a column, but the file has no header row (has_header = false: use a position)"
        )),
    }
}

/// An optional column: absent when the mapping does not name it, or (for the standard mapping
/// only, which no one wrote) when the header row does not have it.
fn opt_index(
    c: &Option<Column>,
    headers: Option<&[String]>,
    key: &str,
    lenient: bool,
) -> Result<Option<usize>, String> {
    match c.as_ref().map(|c| index_of(c, headers, key)) {
        Some(Err(_)) if lenient => Ok(None),
        other => other.transpose(),
    }
}

/// A field longer than this is not a CDR field (a runaway quote, a binary blob): its row is rejected.
pub const MAX_FIELD_BYTES: usize = 64 * 1024;
/// The most one call may cost (or be priced at): anything more is a broken field, and sums of
/// such values could overflow a month's total.
const MAX_CALL_AMOUNT: i64 = 1_000_000;

/// Imports one file. The rejects (if any) go to `<file>.rejects.csv` beside `rejects_dir`'s copy or
/// the file itself.
pub async fn import_file(
    store: &Store,
    mapping: &Mapping,
    path: &Path,
    rejects_dir: Option<&Path>,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    let file_name = path.display().to_string();
    let refuse = |reason: String| ImportError::Refused {
        file: file_name.clone(),
        reason,
    };
    let f = File::open(path).map_err(|e| ImportError::Io {
        file: file_name.clone(),
        source: e,
    })?;
    let total_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    // A second handle reads a rejected row's raw text (rare) without disturbing the parser.
    let raw = File::open(path).map_err(|e| ImportError::Io {
        file: file_name.clone(),
        source: e,
    })?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(mapping.has_header)
        .delimiter(
            u8::try_from(mapping.delimiter)
                .map_err(|_| refuse("the delimiter must be one ASCII character".into()))?,
        )
        .flexible(true)
        .from_reader(BufReader::with_capacity(1 << 20, f));
    let headers: Option<Vec<String>> = if mapping.has_header {
        let h = reader
            .byte_headers()
            .map_err(|e| refuse(format!("cannot read the header row: {e}")))?;
        if h.as_slice().contains(&0) {
            // UTF-16 text, or not text at all.
            return Err(refuse(
                "it is not a CSV text file (its header row contains NUL bytes)".into(),
            ));
        }
        Some(
            h.iter()
                .map(|b| {
                    String::from_utf8_lossy(b)
                        .trim_start_matches('\u{feff}')
                        .to_string()
                })
                .collect(),
        )
    } else {
        None
    };
    let hs = headers.as_deref();
    let c = &mapping.columns;
    let mut idx = Indexes {
        call_id: opt_index(&c.call_id, hs, "columns.call_id", mapping.standard).map_err(&refuse)?,
        user: index_of(&c.user, hs, "columns.user").map_err(&refuse)?,
        start: index_of(&c.start, hs, "columns.start").map_err(&refuse)?,
        duration: index_of(&c.duration, hs, "columns.duration").map_err(&refuse)?,
        destination: index_of(&c.destination, hs, "columns.destination").map_err(&refuse)?,
        call_type: opt_index(&c.call_type, hs, "columns.call_type", mapping.standard)
            .map_err(&refuse)?,
        cost: opt_index(&c.cost, hs, "columns.cost", mapping.standard).map_err(&refuse)?,
        direction: opt_index(&c.direction, hs, "columns.direction", mapping.standard)
            .map_err(&refuse)?,
        disposition: opt_index(&c.disposition, hs, "columns.disposition", mapping.standard)
            .map_err(&refuse)?,
        width: 0,
        exact: headers.is_some(),
    };
    idx.width = match &headers {
        Some(h) => h.len(),
        // Without a header, optional columns past a short row's end are absent (Asterisk leaves
        // out uniqueid unless configured to write it).
        None => [idx.user, idx.start, idx.duration, idx.destination]
            .into_iter()
            .max()
            .map_or(0, |i| i + 1),
    };
    let tz: Tz = match &mapping.time.timezone {
        Some(z) => z
            .parse()
            .map_err(|_| refuse(format!("time.timezone {z:?} is not an IANA zone")))?,
        None => opts.tz,
    };
    // The catalogue's users by their E.164 form: a CDR's `+61 2 9000 1000` finds `0290001000`.
    let users = store.user_numbers(opts.country).await?;
    let plans = store.rate_plans().await?;
    let skip: Vec<String> = mapping
        .skip_dispositions
        .iter()
        .map(|s| s.trim().to_ascii_uppercase())
        .collect();
    let inbound: Vec<String> = mapping
        .inbound_values
        .iter()
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();

    let bar = (opts.progress && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(total_bytes);
        b.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let rejects_path: PathBuf = {
        let name = format!(
            "{}.rejects.csv",
            path.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        );
        rejects_dir
            .map(|d| d.join(&name))
            .unwrap_or_else(|| path.with_file_name(&name))
    };

    // Parsing (and rating) runs on a thread of its own while the previous batch is written: on two
    // cores the file is read while the database works. At most two parsed batches wait, so memory
    // stays flat whatever the file size.
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Vec<NewCall>>(1);
    let parser = Parser {
        idx,
        mapping: mapping.clone(),
        tz,
        country: opts.country,
        skip,
        inbound,
        users,
        memo: Default::default(),
        plans,
        batch_rows: opts.batch_rows,
        rejects_path,
        path: path.to_path_buf(),
        raw,
        bar,
    };
    let parsing = tokio::task::spawn_blocking(move || parser.run(reader, sender));
    let mut imported = 0;
    let mut written = 0;
    let mut second_source = 0;
    let mut failure = None;
    // Every batch on one connection: its page cache is grown once (see `CallWriter`).
    let mut writer = store.call_writer().await?;
    while let Some(batch) = batches.recv().await {
        let started = std::time::Instant::now();
        match writer
            .insert_calls_from(&batch, opts.tz, Some(&mapping.source))
            .await
        {
            Ok(n) => {
                crate::crash::crash_point("cdr_after_batch");
                imported += n.new;
                second_source += n.second_source;
                written += batch.len() as u64;
                tracing::debug!(
                    rows = batch.len(),
                    ms = started.elapsed().as_millis() as u64,
                    "batch written"
                );
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    // On a failed write the parser stops at its next batch (the channel is closed).
    drop(batches);
    drop(writer);
    let parsed = parsing.await.map_err(|e| ImportError::Io {
        file: file_name.clone(),
        source: std::io::Error::other(e),
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    let mut report = parsed?;
    report.file = file_name;
    report.imported = imported;
    report.second_source = second_source;
    report.duplicates = written - imported - second_source;
    if second_source > 0 {
        tracing::warn!(file = %report.file, calls = second_source, source = %mapping.source, "calls already imported from another source were left out (same user, start second and duration)");
    }
    Ok(report)
}

/// A written user's stored form when not the same as written, and its service.
type StoredUser = (Option<String>, Option<i64>);

/// The reading half of an import: rows to calls, batches to the writer, bad rows to the rejects file.
struct Parser {
    idx: Indexes,
    mapping: Mapping,
    tz: Tz,
    country: Country,
    skip: Vec<String>,
    inbound: Vec<String>,
    /// E.164 form → (the catalogue's user reference, its service).
    users: HashMap<String, (String, i64)>,
    /// Written user → (its stored form when not the same, its service).
    memo: std::cell::RefCell<HashMap<String, StoredUser>>,
    plans: HashMap<i64, (i32, RatePlan)>,
    batch_rows: usize,
    rejects_path: PathBuf,
    /// The file being imported, and a second handle on it for rejected rows' raw text.
    path: PathBuf,
    raw: File,
    bar: Option<indicatif::ProgressBar>,
}

impl Parser {
    /// Reads the file to its end; returns the counts (all but imported and duplicates, which the
    /// writer knows). Stops early, without error, when the writer has gone.
    fn run(
        self,
        mut reader: csv::Reader<BufReader<File>>,
        sender: tokio::sync::mpsc::Sender<Vec<NewCall>>,
    ) -> Result<ImportReport, ImportError> {
        let mut report = ImportReport::default();
        let mut rejects = Rejects {
            path: self.rejects_path.clone(),
            writer: None,
        };
        let mut batch: Vec<NewCall> = Vec::with_capacity(self.batch_rows);
        let mut record = csv::ByteRecord::new();
        loop {
            let from = reader.position().clone();
            let more = match reader.read_byte_record(&mut record) {
                Ok(m) => m,
                Err(e) => {
                    report.rows_read += 1;
                    report.rejected += 1;
                    let to = reader.position().byte();
                    let (line, raw) = self.raw_row(&from, to)?;
                    rejects.add(line, &format!("malformed CSV: {e}"), &raw)?;
                    continue;
                }
            };
            if !more {
                break;
            }
            report.rows_read += 1;
            match to_call(&record, &self) {
                Ok(Row::Call(call, unmatched, unrated)) => {
                    report.unmatched += u64::from(unmatched);
                    report.unrated += u64::from(unrated);
                    batch.push(call);
                }
                Ok(Row::Skipped) => report.skipped_by_rule += 1,
                Err(reason) => {
                    report.rejected += 1;
                    let to = reader.position().byte();
                    let (line, raw) = self.raw_row(&from, to)?;
                    rejects.add(line, &reason, &raw)?;
                }
            }
            if batch.len() >= self.batch_rows {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(self.batch_rows));
                if sender.blocking_send(full).is_err() {
                    return Ok(report);
                }
                if let Some(b) = &self.bar {
                    b.set_position(reader.position().byte());
                    b.set_message(format!("{} rows", report.rows_read));
                }
            }
        }
        if !batch.is_empty() && sender.blocking_send(batch).is_err() {
            return Ok(report);
        }
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        report.rejects_file = rejects.finish()?;
        Ok(report)
    }
}

impl Parser {
    /// The user a CDR's (punctuation-free) user field stands for, and its service: the
    /// catalogue's own reference when its E.164 form matches, else the E.164 form. Remembered per
    /// written form (a file repeats a few thousand users millions of times).
    fn user_of(&self, written: String) -> (String, Option<i64>) {
        let mut memo = self.memo.borrow_mut();
        if let Some((stored, service)) = memo.get(&written) {
            return (stored.clone().unwrap_or(written), *service);
        }
        let number = e164(&written, self.country);
        let (stored, service) = match self.users.get(&number) {
            Some((r, s)) => (r.clone(), Some(*s)),
            None => (number, None),
        };
        if memo.len() >= 100_000 {
            memo.clear();
        }
        let differs = (stored != written).then(|| stored.clone());
        memo.insert(written, (differs, service));
        (stored, service)
    }

    /// A rejected row's line and its text exactly as read (without its line ending). The CSV
    /// reader counts lines at the start of a record, before the `\n` of a CRLF ending or a blank
    /// line before it: each such `\n` skipped here is one line more.
    fn raw_row(&self, from: &csv::Position, to: u64) -> Result<(u64, String), ImportError> {
        use std::io::{Seek, SeekFrom};
        let io = |e: std::io::Error| ImportError::Io {
            file: self.path.display().to_string(),
            source: e,
        };
        let len = to.saturating_sub(from.byte());
        // A runaway row is kept in part: enough to see what went wrong.
        let keep = len.min(2 * MAX_FIELD_BYTES as u64);
        let mut buf = vec![0u8; keep as usize];
        let mut f = &self.raw;
        f.seek(SeekFrom::Start(from.byte())).map_err(io)?;
        f.read_exact(&mut buf).map_err(io)?;
        let mut line = from.line();
        let mut start = 0;
        while let Some(&b) = buf.get(start) {
            match b {
                b'\n' => line += 1,
                b'\r' => {}
                _ => break,
            }
            start += 1;
        }
        let mut end = buf.len();
        while end > start && matches!(buf[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        let mut text = String::from_utf8_lossy(&buf[start..end]).into_owned();
        if keep < len {
            text.push_str(&format!("… ({len} bytes in all)"));
        }
        Ok((line, text))
    }
}

/// `<file>.rejects.csv`: each bad row's line, reason and text exactly as read (`line,reason,raw`),
/// made at the first bad row; fix the `raw` text and import those rows again under the file's
/// header row.
struct Rejects {
    path: PathBuf,
    writer: Option<CsvOut<File>>,
}

impl Rejects {
    fn io(&self, e: csv::Error) -> ImportError {
        ImportError::Io {
            file: self.path.display().to_string(),
            source: std::io::Error::other(e),
        }
    }

    fn add(&mut self, line: u64, reason: &str, raw: &str) -> Result<(), ImportError> {
        if self.writer.is_none() {
            let f = File::create(&self.path).map_err(|e| ImportError::Io {
                file: self.path.display().to_string(),
                source: e,
            })?;
            let mut w = CsvOut::new(f);
            w.row(["line", "reason", "raw"]).map_err(|e| self.io(e))?;
            self.writer = Some(w);
        }
        if let Some(w) = &mut self.writer {
            let written = w.row([line.to_string().as_str(), reason, raw]);
            written.map_err(|e| self.io(e))?;
        }
        Ok(())
    }

    /// Flushes the file; its path when there was a bad row.
    fn finish(self) -> Result<Option<String>, ImportError> {
        let Some(mut w) = self.writer else {
            return Ok(None);
        };
        w.flush().map_err(|e| ImportError::Io {
            file: self.path.display().to_string(),
            source: e,
        })?;
        Ok(Some(self.path.display().to_string()))
    }
}

enum Row {
    Call(NewCall, bool, bool),
    Skipped,
}

/// One CSV row as a call (matched and rated), a row skipped by rule, or the reason it is bad.
fn to_call(r: &csv::ByteRecord, p: &Parser) -> Result<Row, String> {
    let Parser {
        idx,
        mapping: m,
        skip,
        inbound,
        plans,
        ..
    } = p;
    let tz = p.tz;
    if idx.exact && r.len() != idx.width {
        return Err(format!("expected {} fields, found {}", idx.width, r.len()));
    }
    if r.len() < idx.width {
        return Err(format!(
            "expected at least {} fields (the mapping's highest position), found {}",
            idx.width,
            r.len()
        ));
    }
    // One scan of the whole row (the usual case: nothing found); per field only for the reason.
    let bytes = r.as_slice();
    if bytes.len() > MAX_FIELD_BYTES || bytes.iter().any(|&b| b == 0 || b == b'\n' || b == b'\r') {
        for (i, f) in r.iter().enumerate() {
            if f.contains(&0) {
                return Err(format!("field {} contains a NUL byte", i + 1));
            }
            if f.len() > MAX_FIELD_BYTES {
                return Err(format!(
                    "field {} is {} bytes long, more than {} KiB",
                    i + 1,
                    f.len(),
                    MAX_FIELD_BYTES / 1024
                ));
            }
            if f.contains(&b'\n') || f.contains(&b'\r') {
                // Only a quoted field can hold one: a quote left open swallows the lines after it.
                return Err(format!(
                    "field {} spans lines (a missing closing quote?)",
                    i + 1
                ));
            }
        }
    }
    let field = |i: usize, what: &str| -> Result<&str, String> {
        let b = r
            .get(i)
            .ok_or_else(|| format!("the {what} field (column {}) is missing", i + 1))?;
        std::str::from_utf8(b)
            // A BOM before a headerless file's first field is not part of it.
            .map(|s| s.trim_start_matches('\u{feff}').trim())
            .map_err(|_| format!("the {what} field is not UTF-8 text"))
    };
    let optional = |i: Option<usize>, what: &str| -> Result<Option<&str>, String> {
        match i {
            Some(i) if i < r.len() => field(i, what).map(|s| Some(s).filter(|s| !s.is_empty())),
            _ => Ok(None),
        }
    };
    if let Some(d) = optional(idx.disposition, "disposition")?
        && skip.iter().any(|s| s == &d.to_ascii_uppercase())
    {
        return Ok(Row::Skipped);
    }
    let written_user = normalise_user_ref(field(idx.user, "user")?);
    if written_user.is_empty() {
        return Err("the user field is empty".into());
    }
    let started = parse_start(field(idx.start, "start time")?, &m.time.format, tz)?;
    let dur_text = field(idx.duration, "duration")?;
    let duration = parse_duration(dur_text)?;
    let destination = normalise_user_ref(field(idx.destination, "destination")?);
    let call_type = match optional(idx.call_type, "call type")? {
        Some(t) if m.call_type_by == CallTypeBy::Column => t.to_ascii_lowercase(),
        _ => m.call_type_of(&destination, p.country),
    };
    let cost = match optional(idx.cost, "cost")? {
        // A carrier may price to more places than the 6 stored: rounded, not refused.
        Some(c) => {
            let d = c
                .trim_start_matches('$')
                .parse::<rust_decimal::Decimal>()
                .map_err(|_| format!("cost {c:?} is not a decimal number"))?;
            if d.abs() > rust_decimal::Decimal::from(MAX_CALL_AMOUNT) {
                return Err(format!(
                    "cost {c:?} is more than any call costs ({MAX_CALL_AMOUNT})"
                ));
            }
            Some(Money::new(d).round_stored())
        }
        None => None,
    };
    let is_inbound = optional(idx.direction, "direction")?
        .is_some_and(|d| inbound.contains(&d.to_ascii_lowercase()));
    // The key reads the user as written (punctuation aside), as it always has: a file imported
    // before numbers were matched in E.164 form adds nothing when imported again.
    let key = match optional(idx.call_id, "call id")? {
        Some(id) => CallKey::derive(started.timestamp(), &["id", &m.source, id]),
        None => CallKey::derive(
            started.timestamp(),
            &[
                "row",
                &m.source,
                &written_user,
                &duration.to_string(),
                &destination,
            ],
        ),
    };
    // A matched call carries the catalogue's own reference (the summary lists calls by it); an
    // unmatched one its E.164 form, which `cdr unmatched` lists and `cdr rerate` matches later.
    let (user, service) = p.user_of(written_user);
    let (price, version) = match service.and_then(|s| plans.get(&s)) {
        Some((v, plan)) => {
            let call = CallForRating {
                duration_secs: duration as u32,
                call_type: &call_type,
                direction: if is_inbound {
                    Direction::Inbound
                } else {
                    Direction::Outbound
                },
                user_ref: &user,
                cost,
            };
            match rate_call(plan, &call) {
                Ok(p) if p.amount().abs() > rust_decimal::Decimal::from(MAX_CALL_AMOUNT) => {
                    return Err(format!(
                        "the plan prices this call at {p}, more than any call costs ({MAX_CALL_AMOUNT})"
                    ));
                }
                Ok(p) => (
                    Some(p.round_stored().to_micros().map_err(|e| e.to_string())?),
                    Some(*v),
                ),
                Err(_) => (None, None),
            }
        }
        None => (None, None),
    };
    let unrated = service.is_some() && price.is_none();
    Ok(Row::Call(
        NewCall {
            key,
            service_id: service,
            user_ref: user,
            started_at: started.timestamp(),
            duration_secs: duration as i32,
            destination,
            call_type,
            inbound: is_inbound,
            cost_micros: cost
                .map(|c| c.round_stored().to_micros())
                .transpose()
                .map_err(|e| e.to_string())?,
            price_micros: price,
            plan_version: version,
        },
        service.is_none(),
        unrated,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: u64, rejected: u64, skipped: u64) -> ImportReport {
        ImportReport {
            file: "pbx.csv".into(),
            rows_read: rows,
            rejected,
            skipped_by_rule: skipped,
            ..ImportReport::default()
        }
    }

    #[test]
    fn a_file_fails_when_every_row_or_more_than_the_share_is_rejected() {
        for (rows, rejected, skipped, fails) in [
            (0, 0, 0, false),   // empty: a quiet day, not a failure
            (10, 0, 10, false), // all skipped by rule (unanswered)
            (5, 5, 0, true),    // every row rejected
            (6, 5, 1, true),    // no call left
            (100, 5, 0, false), // 5 %: allowed
            (100, 6, 0, true),  // 6 %
        ] {
            let mut r = report(rows, rejected, skipped);
            r.judge(0.05);
            assert_eq!(
                r.failed.is_some(),
                fails,
                "{rows} rows, {rejected} rejected"
            );
        }
    }
}
