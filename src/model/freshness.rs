//! How fresh an answer is and how it was produced, as every frontend reports it.

use serde::Serialize;

/// How a statement was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlanKind {
    /// Split at W into legs over the layers and merged.
    Split,
    /// Sent to the warehouse as written.
    Passthrough,
    /// Answered by tidemark itself (SET, SHOW, catalog probes, ...).
    Local,
}

/// How a leg, or a whole answer, was served by the caches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheStatus {
    /// Served from the cache.
    Hit,
    /// Computed (and cached).
    Miss,
    /// The client asked to bypass caches.
    Bypass,
    /// Some pieces were served from the cache, others computed.
    Partial,
    /// Not cacheable (a speed or pass-through leg).
    None,
}

impl CacheStatus {
    /// An answer's status from its legs': `hit` when every cached leg hit, `miss` when none
    /// did, `partial` otherwise, `bypass` when skipped; None when no leg is cacheable.
    pub fn of_answer(legs: &[LegReport]) -> Option<CacheStatus> {
        let cached: Vec<CacheStatus> =
            legs.iter().map(|l| l.cache).filter(|c| *c != CacheStatus::None).collect();
        let hits = cached.iter().filter(|c| **c == CacheStatus::Hit).count();
        Some(match () {
            _ if cached.is_empty() => return None,
            _ if cached.contains(&CacheStatus::Bypass) => CacheStatus::Bypass,
            _ if hits == cached.len() => CacheStatus::Hit,
            _ if hits == 0 && !cached.contains(&CacheStatus::Partial) => CacheStatus::Miss,
            _ => CacheStatus::Partial,
        })
    }
}

/// Names as they appear in reports, headers and metrics labels.
macro_rules! named {
    ($ty:ty { $($v:ident => $s:literal),* $(,)? }) => {
        impl $ty {
            /// The lower-case name reports use.
            pub fn name(self) -> &'static str {
                match self { $(<$ty>::$v => $s),* }
            }
        }
        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
impl CacheStatus {
    /// A leg's status from its pieces': `hit` when all hit, `miss` when none did, else
    /// `partial`.
    pub fn of_pieces(pieces: &[CacheStatus]) -> CacheStatus {
        match pieces.iter().filter(|s| **s == CacheStatus::Hit).count() {
            0 => CacheStatus::Miss,
            h if h == pieces.len() => CacheStatus::Hit,
            _ => CacheStatus::Partial,
        }
    }
}

named!(PlanKind { Split => "split", Passthrough => "passthrough", Local => "local" });
named!(CacheStatus { Hit => "hit", Miss => "miss", Bypass => "bypass", Partial => "partial", None => "none" });

/// One leg as reported in freshness.
#[derive(Debug, Clone, Serialize)]
pub struct LegReport {
    /// `batch`, `speed` or `warehouse`.
    pub name: String,
    /// Rows the leg returned (None while streaming).
    pub rows: Option<usize>,
    /// Time the leg took in milliseconds.
    pub elapsed_ms: f64,
    /// How the leg caches served it.
    pub cache: CacheStatus,
    /// For a batch leg cut into chunks of a sliding range: each piece's cache status, oldest
    /// first (the pieces' time ranges are in the plan's legs). Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pieces: Vec<CacheStatus>,
}

impl LegReport {
    /// A leg's report without pieces.
    pub fn new(name: &str, rows: Option<usize>, elapsed_ms: f64, cache: CacheStatus) -> Self {
        LegReport { name: name.into(), rows, elapsed_ms, cache, pieces: vec![] }
    }
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
    /// How the statement was answered.
    pub plan: PlanKind,
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
    pub cache: Option<CacheStatus>,
    /// How far the realtime part reaches: through the windows, the end of the newest bucket
    /// holding data; otherwise the high-water mark H when known.
    pub realtime_reaches: Option<String>,
    /// The windows' part (None when the table has no windows).
    pub windows: Option<WindowsReport>,
}

impl Freshness {
    /// The freshness of a statement the pass-through fast path forwarded as it came.
    pub fn forwarded(reason: &str, elapsed_ms: f64) -> Freshness {
        Freshness {
            plan: PlanKind::Passthrough,
            table: None,
            batch_watermark: None,
            realtime_as_of: None,
            legs: vec![LegReport::new("warehouse", None, elapsed_ms, CacheStatus::None)],
            cache: None,
            pruned: vec![],
            degraded: false,
            windows: None,
            reason: Some(reason.to_string()),
            realtime_reaches: None,
        }
    }

    /// The freshness of an answer tidemark made itself, reading no layer.
    pub fn local() -> Freshness {
        Freshness {
            plan: PlanKind::Local,
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
