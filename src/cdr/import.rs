//! The streaming import: rows are read one at a time, turned into calls, and written in batched
//! transactions; memory holds one batch whatever the file size. A malformed row is written to the
//! rejects file with its line and reason and never stops the file; a duplicate (same call key) is
//! counted, not stored twice; a call of an unknown user is stored unmatched and reported. A crash
//! mid-file leaves whole batches: running the import again completes it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use serde::Serialize;

use super::mapping::{Column, Mapping, parse_duration, parse_start};
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
    pub rejects_file: Option<String>,
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
    width: Option<usize>,
}

fn index_of(c: &Column, headers: Option<&[String]>, what: &str) -> Result<usize, String> {
    match (c, headers) {
        (Column::Position(p), _) if *p >= 1 => Ok(p - 1),
        (Column::Position(_), _) => Err(format!("column positions start at 1 (the {what} column)")),
        (Column::Name(n), Some(h)) => h
            .iter()
            .position(|x| x.trim().eq_ignore_ascii_case(n))
            .ok_or_else(|| format!("the required column {n:?} ({what}) is not in the header row")),
        (Column::Name(n), None) => Err(format!(
            "the {what} column is named {n:?} but the file has no header row (use a position)"
        )),
    }
}

fn opt_index(
    c: &Option<Column>,
    headers: Option<&[String]>,
    what: &str,
) -> Result<Option<usize>, String> {
    match c {
        None => Ok(None),
        // An optional named column missing from the header is simply absent.
        Some(Column::Name(n))
            if headers.is_some_and(|h| !h.iter().any(|x| x.trim().eq_ignore_ascii_case(n))) =>
        {
            Ok(None)
        }
        Some(c) => index_of(c, headers, what).map(Some),
    }
}

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
    let mut f = File::open(path).map_err(|e| ImportError::Io {
        file: file_name.clone(),
        source: e,
    })?;
    let total_bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = [0u8; 4096];
    let n = f.read(&mut head).map_err(|e| ImportError::Io {
        file: file_name.clone(),
        source: e,
    })?;
    if head[..n].contains(&0) {
        return Err(refuse(
            "it is not a CSV text file (it contains NUL bytes)".into(),
        ));
    }
    drop(f);
    let f = File::open(path).map_err(|e| ImportError::Io {
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
    let idx = Indexes {
        call_id: opt_index(&c.call_id, hs, "call id").map_err(&refuse)?,
        user: index_of(&c.user, hs, "user").map_err(&refuse)?,
        start: index_of(&c.start, hs, "start time").map_err(&refuse)?,
        duration: index_of(&c.duration, hs, "duration").map_err(&refuse)?,
        destination: index_of(&c.destination, hs, "destination").map_err(&refuse)?,
        call_type: opt_index(&c.call_type, hs, "call type").map_err(&refuse)?,
        cost: opt_index(&c.cost, hs, "cost").map_err(&refuse)?,
        direction: opt_index(&c.direction, hs, "direction").map_err(&refuse)?,
        disposition: opt_index(&c.disposition, hs, "disposition").map_err(&refuse)?,
        width: headers.as_ref().map(|h| h.len()),
    };
    let tz: Tz = match &mapping.time.timezone {
        Some(z) => z
            .parse()
            .map_err(|_| refuse(format!("time.timezone {z:?} is not an IANA zone")))?,
        None => opts.tz,
    };
    let users = store.user_map().await?;
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
        skip,
        inbound,
        users,
        plans,
        batch_rows: opts.batch_rows,
        rejects_path,
        bar,
    };
    let parsing = tokio::task::spawn_blocking(move || parser.run(reader, sender));
    let mut imported = 0;
    let mut written = 0;
    let mut failure = None;
    while let Some(batch) = batches.recv().await {
        let started = std::time::Instant::now();
        match store.insert_calls(&batch, opts.tz).await {
            Ok(n) => {
                crate::crash::crash_point("cdr_after_batch");
                imported += n;
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
    report.duplicates = written - imported;
    Ok(report)
}

/// The reading half of an import: rows to calls, batches to the writer, bad rows to the rejects file.
struct Parser {
    idx: Indexes,
    mapping: Mapping,
    tz: Tz,
    skip: Vec<String>,
    inbound: Vec<String>,
    users: HashMap<String, i64>,
    plans: HashMap<i64, (i32, RatePlan)>,
    batch_rows: usize,
    rejects_path: PathBuf,
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
            let line = reader.position().line();
            let more = match reader.read_byte_record(&mut record) {
                Ok(m) => m,
                Err(e) => {
                    report.rows_read += 1;
                    report.rejected += 1;
                    rejects.add(line, &format!("malformed CSV: {e}"), &[])?;
                    continue;
                }
            };
            if !more {
                break;
            }
            report.rows_read += 1;
            let line = record.position().map(|p| p.line()).unwrap_or(line);
            match to_call(&record, &self) {
                Ok(Row::Call(call, unmatched, unrated)) => {
                    report.unmatched += u64::from(unmatched);
                    report.unrated += u64::from(unrated);
                    batch.push(call);
                }
                Ok(Row::Skipped) => report.skipped_by_rule += 1,
                Err(reason) => {
                    let raw: Vec<String> = record
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).to_string())
                        .collect();
                    report.rejected += 1;
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

/// `<file>.rejects.csv`: each bad row with its line and reason, made at the first bad row.
struct Rejects {
    path: PathBuf,
    writer: Option<csv::Writer<File>>,
}

impl Rejects {
    fn io(&self, e: csv::Error) -> ImportError {
        ImportError::Io {
            file: self.path.display().to_string(),
            source: std::io::Error::other(e),
        }
    }

    fn add(&mut self, line: u64, reason: &str, raw: &[String]) -> Result<(), ImportError> {
        if self.writer.is_none() {
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .from_path(&self.path)
                .map_err(|e| self.io(e))?;
            w.write_record(["line", "reason", "row"])
                .map_err(|e| self.io(e))?;
            self.writer = Some(w);
        }
        if let Some(w) = &mut self.writer {
            let written = w.write_record([line.to_string(), reason.to_string(), raw.join(",")]);
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
        users,
        plans,
        ..
    } = p;
    let tz = p.tz;
    if let Some(w) = idx.width
        && r.len() != w
    {
        return Err(format!("expected {w} fields, found {}", r.len()));
    }
    let field = |i: usize, what: &str| -> Result<&str, String> {
        let b = r
            .get(i)
            .ok_or_else(|| format!("the {what} field (column {}) is missing", i + 1))?;
        std::str::from_utf8(b)
            .map(str::trim)
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
    let user = normalise_user_ref(field(idx.user, "user")?);
    if user.is_empty() {
        return Err("the user field is empty".into());
    }
    let started = parse_start(field(idx.start, "start time")?, &m.time.format, tz)?;
    let dur_text = field(idx.duration, "duration")?;
    let duration = parse_duration(dur_text)?;
    let destination = normalise_user_ref(field(idx.destination, "destination")?);
    let call_type = match optional(idx.call_type, "call type")? {
        Some(t) => t.to_ascii_lowercase(),
        None => m.call_type_of(&destination),
    };
    let cost = match optional(idx.cost, "cost")? {
        // A carrier may price to more places than the 6 stored: rounded, not refused.
        Some(c) => Some(
            c.trim_start_matches('$')
                .parse::<rust_decimal::Decimal>()
                .map(|d| Money::new(d).round_stored())
                .map_err(|_| format!("cost {c:?} is not a decimal number"))?,
        ),
        None => None,
    };
    let is_inbound = optional(idx.direction, "direction")?
        .is_some_and(|d| inbound.contains(&d.to_ascii_lowercase()));
    let key = match optional(idx.call_id, "call id")? {
        Some(id) => CallKey::derive(started.timestamp(), &["id", &m.source, id]),
        None => CallKey::derive(
            started.timestamp(),
            &["row", &m.source, &user, &duration.to_string(), &destination],
        ),
    };
    let service = users.get(&user).copied();
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
