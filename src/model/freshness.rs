//! How fresh an answer is and how it was produced, as every frontend reports it.

use serde::Serialize;

/// One leg as reported in freshness.
#[derive(Debug, Clone, Serialize)]
pub struct LegReport {
    /// `batch`, `speed` or `warehouse`.
    pub name: String,
    /// Rows the leg returned (None while streaming).
    pub rows: Option<usize>,
    /// Time the leg took in milliseconds.
    pub elapsed_ms: f64,
    /// Cache status: `miss` (no cache yet), `hit` later.
    pub cache: String,
}

/// What the Redis windows contributed to an answer.
#[derive(Debug, Clone, Serialize)]
pub struct WindowsReport {
    /// True when the window leg answered the part from `from` on.
    pub used: bool,
    /// The speed-table loader's high-water mark H, when read.
    pub high_water_mark: Option<String>,
    /// S: the speed leg read `time < S` and the windows every bucket from S on.
    pub from: Option<String>,
    /// Buckets read.
    pub buckets: usize,
    /// Why the windows were not used.
    pub reason: Option<String>,
}

/// How fresh an answer is, and how it was produced.
#[derive(Debug, Clone, Serialize)]
pub struct Freshness {
    /// `split`, `passthrough` or `local`.
    pub plan: String,
    /// Logical table involved, if any.
    pub table: Option<String>,
    /// Batch watermark W used (batch rows are those with time < W).
    pub batch_watermark: Option<String>,
    /// Instant the realtime part was read (UTC); None when no speed data was read.
    pub realtime_as_of: Option<String>,
    /// Legs that ran.
    pub legs: Vec<LegReport>,
    /// Legs removed by time pruning.
    pub pruned: Vec<String>,
    /// True when a layer was unavailable and the answer is less fresh than usual.
    pub degraded: bool,
    /// Why a query was passed through instead of split.
    pub reason: Option<String>,
    /// Cache status of the answer: `hit` (every leg), `partial` (some legs, e.g. the batch
    /// leg hit and the realtime part fresh), `miss`, `bypass`; None when nothing is cached.
    pub cache: Option<String>,
    /// How far the realtime part reaches: through the windows, the end of the newest bucket
    /// holding data; otherwise the high-water mark H when known.
    pub realtime_reaches: Option<String>,
    /// The windows' part (None when the table has no windows).
    pub windows: Option<WindowsReport>,
}

impl Freshness {
    /// The freshness of an answer tidemark made itself, reading no layer.
    pub fn local() -> Freshness {
        Freshness {
            plan: "local".into(),
            table: None,
            batch_watermark: None,
            realtime_as_of: None,
            legs: vec![],
            pruned: vec![],
            degraded: false,
            reason: None,
            cache: None,
            realtime_reaches: None,
            windows: None,
        }
    }
}
