//! The tables of the dashboard as plain data: columns, rows with a stable key, and the view
//! state of one table (selection by key, scroll, text filter, sort column, drill-down).

use std::cmp::Ordering;

/// One cell's value: numbers sort as numbers, the rest as text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Int(u64),
    /// A signed count (pages held: pinned less unpinned).
    Signed(i128),
    /// Nanoseconds, shown in microseconds.
    Us(u64),
    /// Nanoseconds, shown in seconds.
    Secs(u64),
    /// Per second.
    Rate(f64),
    Text(String),
    /// Not known (no such figure in this snapshot).
    None,
}

impl Value {
    /// The text of the cell.
    pub fn text(&self) -> String {
        match self {
            Value::Int(n) => n.to_string(),
            Value::Signed(n) => format!("{n:+}"),
            Value::Us(ns) => format!("{:.1}", *ns as f64 / 1e3),
            Value::Secs(ns) => format!("{:.1} s", *ns as f64 / 1e9),
            Value::Rate(r) => format!("{r:.0}"),
            Value::Text(s) => s.clone(),
            Value::None => "-".into(),
        }
    }

    fn number(&self) -> Option<f64> {
        match *self {
            Value::Int(n) | Value::Us(n) | Value::Secs(n) => Some(n as f64),
            Value::Signed(n) => Some(n as f64),
            Value::Rate(r) => Some(r),
            Value::Text(_) | Value::None => None,
        }
    }

    /// Sort order: numbers largest first, text alphabetically, unknown values last.
    pub fn order(&self, other: &Value) -> Ordering {
        match (self.number(), other.number(), self, other) {
            (Some(a), Some(b), ..) => b.total_cmp(&a),
            (_, _, Value::Text(a), Value::Text(b)) => a.cmp(b),
            (_, _, Value::None, Value::None) => Ordering::Equal,
            (_, _, Value::None, _) => Ordering::Greater,
            (_, _, _, Value::None) => Ordering::Less,
            // A number before text: a column holds one kind, this does not happen.
            (Some(_), None, ..) => Ordering::Less,
            _ => Ordering::Greater,
        }
    }
}

/// How a row is emphasised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Tone {
    #[default]
    Normal,
    /// Something to look at (a leak, a missing probe).
    Bad,
    /// Uncertain (an unverifiable figure).
    Doubtful,
}

/// A column: its title, the width it wants, and whether it goes first when the terminal is
/// narrow (lower `keep` goes first).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub title: String,
    pub width: u16,
    pub keep: u8,
    /// Takes the room left (the widest text column).
    pub fill: bool,
}

impl Column {
    pub fn new(title: &str, width: u16, keep: u8) -> Column {
        Column { title: title.into(), width, keep, fill: false }
    }

    pub fn fill(title: &str, width: u16, keep: u8) -> Column {
        Column { fill: true, ..Column::new(title, width, keep) }
    }
}

/// One row: what identifies it across snapshots, its cells, and the lines its drill-down shows.
#[derive(Clone, Debug, PartialEq)]
pub struct TableRow {
    pub key: String,
    pub cells: Vec<Value>,
    pub detail: Vec<String>,
    pub tone: Tone,
    /// Histograms of the row (latency buckets), each named: cumulative, last interval.
    pub series: Vec<(&'static str, Vec<u64>)>,
}

impl TableRow {
    pub fn new(key: String, cells: Vec<Value>, detail: Vec<String>) -> TableRow {
        TableRow { key, cells, detail, tone: Tone::Normal, series: Vec::new() }
    }

    pub fn tone(self, tone: Tone) -> TableRow {
        TableRow { tone, ..self }
    }
}

impl TableRow {
    /// Whether a cell holds `filter` (lower case), whatever the case.
    fn matches(&self, filter: &str) -> bool {
        self.cells.iter().any(|c| c.text().to_lowercase().contains(filter))
    }
}

/// A table's rows as the snapshot gives them, with the lines said above it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TableData {
    pub columns: Vec<Column>,
    pub rows: Vec<TableRow>,
    /// Said above the table (a verdict, rows not listed).
    pub notes: Vec<(String, Tone)>,
    /// Said instead of the rows when there are none.
    pub empty: &'static str,
    /// The column sorted by when `s` was never pressed (None: the snapshot's order).
    pub default_sort: Option<usize>,
    /// What the snapshot's order is ("most pinned first").
    pub given_order: &'static str,
}

/// The view state of one table; it outlives the snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableView {
    /// The selected row's key: the selection follows its row when rows move.
    pub selected: Option<String>,
    /// The selected row's place among the rows shown (kept when its row is gone).
    pub index: usize,
    /// The first row shown.
    pub offset: usize,
    pub filter: String,
    /// Sorted by this column; None: as `TableData::default_sort` says.
    pub sort: Option<SortBy>,
    /// The drill-down of the selected row is open, scrolled this far.
    pub detail: Option<usize>,
}

/// The sort column chosen with `s`: a column, or the snapshot's own order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortBy {
    Given,
    Column(usize),
}

impl TableView {
    /// The sort in effect.
    pub fn sort_by(&self, data: &TableData) -> SortBy {
        self.sort.unwrap_or(data.default_sort.map_or(SortBy::Given, SortBy::Column))
    }

    /// The next sort: each column in turn, then the snapshot's order.
    pub fn cycle_sort(&mut self, data: &TableData) {
        let next = match self.sort_by(data) {
            SortBy::Given => 0,
            SortBy::Column(c) => c + 1,
        };
        self.sort = Some(if next < data.columns.len() { SortBy::Column(next) } else { SortBy::Given });
    }

    /// The rows shown: filtered, then sorted (stable, so equal rows keep the snapshot's order).
    pub fn shown<'a>(&self, data: &'a TableData) -> Vec<&'a TableRow> {
        let filter = self.filter.to_lowercase();
        let mut rows: Vec<&TableRow> = data.rows.iter().filter(|r| filter.is_empty() || r.matches(&filter)).collect();
        if let SortBy::Column(c) = self.sort_by(data) {
            rows.sort_by(|a, b| match (a.cells.get(c), b.cells.get(c)) {
                (Some(x), Some(y)) => x.order(y),
                _ => Ordering::Equal,
            });
        }
        rows
    }

    /// After the rows changed: the selection follows its key, or stays at its place (clamped)
    /// when its row is gone; the first row is selected when nothing was.
    pub fn reselect(&mut self, data: &TableData, page: usize) {
        let rows = self.shown(data);
        if rows.is_empty() {
            (self.index, self.offset, self.detail) = (0, 0, None);
            return;
        }
        let found = self.selected.as_ref().and_then(|k| rows.iter().position(|r| &r.key == k));
        self.index = found.unwrap_or(self.index.min(rows.len() - 1));
        self.selected = Some(rows[self.index].key.clone());
        self.scroll_into_view(page);
    }

    /// Moves the selection by `by` rows (negative: up), within the rows shown.
    pub fn step(&mut self, data: &TableData, by: isize, page: usize) {
        let rows = self.shown(data);
        if rows.is_empty() {
            return;
        }
        let last = rows.len() - 1;
        self.index = self.index.saturating_add_signed(by).min(last);
        self.selected = Some(rows[self.index].key.clone());
        self.scroll_into_view(page);
    }

    fn scroll_into_view(&mut self, page: usize) {
        let page = page.max(1);
        if self.index < self.offset {
            self.offset = self.index;
        } else if self.index >= self.offset + page {
            self.offset = self.index + 1 - page;
        }
    }
}
