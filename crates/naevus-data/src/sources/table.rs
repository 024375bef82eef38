//! A label CSV as the source readers see it: its lines checked (length, quoting) before the
//! csv crate reads them, then its header and rows, each row well-formed or a reject.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::csv_limits::{MAX_CSV_LINE_BYTES, read_at_most};
use crate::error::{DataError, excerpt, excerpt_bytes};
use crate::records::Reject;

/// A parsed CSV file: trimmed header names and rows that either parsed into the right
/// number of fields or were turned into rejects.
pub(super) struct Table {
    pub(super) file: PathBuf,
    pub(super) columns: Vec<String>,
    /// Lowercased column name -> position, so "MEL" and "mel" both match.
    pub(super) index: HashMap<String, usize>,
    pub(super) rows: Vec<Result<Row, Reject>>,
}

/// One well-formed data row.
pub(super) struct Row {
    /// 1-based line number in the file (header = line 1).
    pub(super) line: usize,
    pub(super) fields: Vec<String>,
}

/// 1-based line numbers of CSV records from their byte offsets. The csv crate's own line
/// count is off by one after CRLF line ends (as in the official ISIC 2017 files), so the
/// line ends are counted here, skipping line ends a record position may point into.
struct LineIndex<'a> {
    body: &'a [u8],
    /// Offsets of the line ends: "\n", or a "\r" not followed by one (old Mac files).
    ends: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(body: &'a [u8]) -> Self {
        let ends = (0..body.len()).filter(|&i| body[i] == b'\n' || (body[i] == b'\r' && body.get(i + 1) != Some(&b'\n'))).collect();
        Self { body, ends }
    }

    fn line_at(&self, offset: usize) -> usize {
        let mut start = offset.min(self.body.len());
        while start < self.body.len() && matches!(self.body[start], b'\r' | b'\n') {
            start += 1;
        }
        1 + self.ends.partition_point(|&n| n < start)
    }

    /// The bytes of line `line` (1-based), without its line end.
    fn line(&self, line: usize) -> &'a [u8] {
        let start = if line <= 1 { 0 } else { self.ends.get(line - 2).map_or(self.body.len(), |&e| e + 1) };
        let end = self.ends.get(line - 1).copied().unwrap_or(self.body.len()).max(start);
        let text = &self.body[start..end];
        text.strip_suffix(b"\r").unwrap_or(text)
    }
}

/// Longest line a label CSV may have: real rows are well under 1 KB, and a longer "line" is a
/// file that is not a CSV (or whose line ends the reader does not know).
const MAX_LINE_BYTES: usize = MAX_CSV_LINE_BYTES as usize;

/// What a line-by-line look at a CSV's quotes found.
#[derive(Default)]
struct QuoteCheck {
    /// Lines (1-based) with text after a closing quote, and what is wrong: the csv crate
    /// would silently glue that text to the field.
    bad_lines: HashMap<usize, String>,
}

/// Checks every line's quoting before the csv crate sees it. A label CSV has one record per
/// line, so a quote still open at the end of its line is an unterminated quote: the csv crate
/// would read the rest of the file into that one field. That stops the job, naming the line
/// where the quote began; so does a line over `MAX_LINE_BYTES`.
fn check_quotes(file: &Path, lines: &LineIndex) -> Result<QuoteCheck, DataError> {
    let mut check = QuoteCheck::default();
    for line in 1..=lines.ends.len() + 1 {
        let text = lines.line(line);
        if text.len() > MAX_LINE_BYTES {
            return Err(DataError::Csv {
                file: file.to_path_buf(),
                line: line as u64,
                message: format!(
                    "the line is {} bytes long, over the {MAX_LINE_BYTES} bytes a label CSV line may have; is this a CSV file? It starts: \"{}\"",
                    text.len(),
                    excerpt_bytes(text)
                ),
            });
        }
        let (mut field, mut quote_at, mut state) = (1, 0, Quote::FieldStart);
        for (i, &b) in text.iter().enumerate() {
            state = match (state, b) {
                (Quote::FieldStart | Quote::AfterClose, b',') => Quote::FieldStart,
                (Quote::FieldStart, b'"') => {
                    quote_at = i;
                    Quote::Open
                }
                (Quote::FieldStart, _) => Quote::Unquoted,
                (Quote::Unquoted, b',') => Quote::FieldStart,
                // A quote inside an unquoted field is taken literally, by the csv crate too.
                (Quote::Unquoted, _) => Quote::Unquoted,
                (Quote::Open, b'"') => Quote::MaybeClosed,
                (Quote::Open, _) => Quote::Open,
                // Doubled: an escaped quote inside the field.
                (Quote::MaybeClosed, b'"') => Quote::Open,
                (Quote::MaybeClosed, b',') => Quote::FieldStart,
                (Quote::MaybeClosed | Quote::AfterClose, _) => {
                    check.bad_lines.entry(line).or_insert_with(|| {
                        format!(
                            "field {field} has text after its closing quote (at character {}): \"{}\"",
                            i + 1,
                            excerpt_bytes(&text[quote_at..])
                        )
                    });
                    Quote::AfterClose
                }
            };
            if b == b',' && state == Quote::FieldStart {
                field += 1;
            }
        }
        if state == Quote::Open {
            return Err(DataError::Csv {
                file: file.to_path_buf(),
                line: line as u64,
                message: format!(
                    "field {field} opens a quote (at character {}) that is not closed on its line; an unterminated quote would \
                     swallow the rest of the file (and fields spanning lines are not supported): \"{}\"",
                    quote_at + 1,
                    excerpt_bytes(&text[quote_at..])
                ),
            });
        }
    }
    Ok(check)
}

/// Where `check_quotes` is within a field.
#[derive(Clone, Copy, PartialEq)]
enum Quote {
    FieldStart,
    Unquoted,
    Open,
    /// Just after a quote inside a quoted field: its end, or the first of a doubled quote.
    MaybeClosed,
    /// Text after a closing quote (an error), up to the next comma.
    AfterClose,
}

impl Table {
    pub(super) fn read(file: &Path) -> Result<Table, DataError> {
        let bytes = read_at_most(file)?;
        // Spreadsheet exports often start with a UTF-8 byte order mark.
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let lines = LineIndex::new(body);
        let quotes = check_quotes(file, &lines)?;
        // `flexible` so a row with the wrong number of fields is ours to reject, not a hard error.
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(body);
        let path_str = file.display().to_string();
        let mut records = reader.byte_records();
        let csv_error = |line: u64, message: String| DataError::Csv { file: file.to_path_buf(), line, message };

        let header = match records.next() {
            None => return Err(csv_error(1, "the file is empty; expected a header row".into())),
            Some(Err(e)) => return Err(csv_error(1, e.to_string())),
            Some(Ok(h)) => h,
        };
        let header_line = header.position().map_or(1, |p| lines.line_at(p.byte() as usize)) as u64;
        if let Some(reason) = quotes.bad_lines.get(&(header_line as usize)) {
            return Err(csv_error(header_line, format!("malformed header: {reason}")));
        }
        let mut columns = Vec::with_capacity(header.len());
        for (i, raw) in header.iter().enumerate() {
            let name = std::str::from_utf8(raw)
                .map_err(|_| csv_error(header_line, format!("header field {} is not valid UTF-8", i + 1)))?;
            columns.push(name.trim().to_string());
        }
        let mut index = HashMap::new();
        for (i, name) in columns.iter().enumerate() {
            // A repeated name would leave it to chance which of the two columns is read.
            if let Some(first) = index.insert(name.to_lowercase(), i)
                && !name.is_empty()
            {
                return Err(csv_error(
                    header_line,
                    format!("the header names column \"{}\" twice (fields {} and {}); each column may appear once", excerpt(name), first + 1, i + 1),
                ));
            }
        }

        let mut rows = Vec::new();
        // A data row with as many fields as the header, and the first one without.
        let (mut any_fits, mut first_misfit) = (false, None);
        for result in records {
            let record = match result {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map(|p| lines.line_at(p.byte() as usize));
                    rows.push(Err(Reject { row: line, path: path_str.clone(), reason: format!("malformed CSV: {e}") }));
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| lines.line_at(p.byte() as usize));
            if record.len() == columns.len() {
                any_fits = true;
            } else {
                first_misfit.get_or_insert((line, record.len()));
            }
            let reject = |reason: String| Err(Reject { row: Some(line), path: path_str.clone(), reason });
            if let Some(reason) = quotes.bad_lines.get(&line) {
                rows.push(reject(format!("malformed CSV row: {reason}")));
                continue;
            }
            if record.len() != columns.len() {
                rows.push(reject(format!("malformed CSV row: expected {} fields, found {}", columns.len(), record.len())));
                continue;
            }
            let mut fields = Vec::with_capacity(record.len());
            let mut bad_utf8 = None;
            for (i, raw) in record.iter().enumerate() {
                match std::str::from_utf8(raw) {
                    Ok(s) => fields.push(s.trim().to_string()),
                    Err(_) => {
                        bad_utf8 = Some(i);
                        break;
                    }
                }
            }
            match bad_utf8 {
                Some(i) => rows.push(reject(format!("column \"{}\": value is not valid UTF-8", excerpt(&columns[i])))),
                None => rows.push(Ok(Row { line, fields })),
            }
        }
        // When no row fits the header, the header is what is wrong (or the file is not this
        // format): one error, rather than every row rejected.
        if let (false, Some((line, found))) = (any_fits, first_misfit) {
            return Err(csv_error(
                header_line,
                format!(
                    "the header has {} fields but no data row does (line {line} has {found}); check the header and the delimiter",
                    columns.len()
                ),
            ));
        }
        Ok(Table { file: file.to_path_buf(), columns, index, rows })
    }

    /// Position of a required column, or the MissingColumn error.
    pub(super) fn col(&self, name: &str) -> Result<Col, DataError> {
        self.opt_col(name).ok_or_else(|| DataError::MissingColumn {
            file: self.file.clone(),
            column: name.to_string(),
            found: self.columns.clone(),
        })
    }

    /// Position of an optional column.
    pub(super) fn opt_col(&self, name: &str) -> Option<Col> {
        self.index.get(&name.to_lowercase()).map(|&i| Col { index: i, name: self.columns[i].clone() })
    }

    pub(super) fn path_str(&self) -> String {
        self.file.display().to_string()
    }
}

/// A located column: its position and its name as written in the header.
pub(super) struct Col {
    pub(super) index: usize,
    pub(super) name: String,
}

impl Row {
    /// The trimmed value of an optional column; None when absent or empty.
    pub(super) fn opt(&self, col: &Option<Col>) -> Option<&str> {
        col.as_ref().and_then(|c| self.value(c))
    }

    /// The trimmed value; None when empty.
    pub(super) fn value(&self, col: &Col) -> Option<&str> {
        self.fields.get(col.index).map(|s| s.as_str()).filter(|s| !s.is_empty())
    }

    /// The value of a required column, or a reject reason naming the column.
    pub(super) fn required(&self, col: &Col) -> Result<&str, String> {
        self.value(col).ok_or_else(|| format!("column \"{}\": expected a value, found an empty field", col.name))
    }
}
