//! Describing a statement without running it, and EXPLAIN: the plan as a record and as text.

use super::chunks::Cut;
use super::windows_leg::{time_text, WindowOutcome};
use super::*;

pub(super) fn explain_split(p: &SplitPlan) -> Explain {
    let merge = match &p.shape {
        Shape::Aggregate(a) => format!(
            "merge partial aggregates over {} group key(s), {} partial column(s), {} output(s)",
            a.n_keys,
            a.partials.len(),
            a.outputs.len()
        ),
        Shape::Rows(r) => format!(
            "concatenate rows, sort on {} key(s), limit {:?} offset {}",
            r.order.len(),
            r.limit,
            r.offset
        ),
    };
    Explain {
        class: PlanKind::Split,
        table: Some(p.table.clone()),
        batch_watermark: Some(p.watermark.text()),
        legs: p.legs.iter().map(|l| ExplainLeg::new(l.layer.name(), l.sql.clone())).collect(),
        pruned: p.pruned.iter().map(|l| l.name().to_string()).collect(),
        reason: Some(merge),
        windows: None,
    }
}

/// The plan of a split as it runs and as EXPLAIN shows it: each leg's SQL and the time range
/// it reads (batch from the query's lower bound to W, speed from W to S when the windows
/// answer from S on), the batch leg's pieces when it is cut, and what the windows do.
pub(super) fn explain_run(
    p: &SplitPlan,
    lower: Option<(i64, bool)>,
    cut: Option<&Cut>,
    win: &WindowOutcome,
) -> Explain {
    let mut e = explain_split(p);
    let w = p.watermark.text();
    let lower_text = lower.map(|(l, naive)| time_text(l, naive));
    let s = win.report.as_ref().filter(|r| r.used).and_then(|r| r.from.clone());
    for leg in &mut e.legs {
        match leg.name.as_str() {
            "batch" => (leg.from, leg.to) = (lower_text.clone(), Some(w.clone())),
            "speed" => {
                (leg.from, leg.to) = (Some(w.clone()), s.clone());
                if let Some(bounded) = &win.speed_sql {
                    leg.sql = bounded.clone();
                }
            }
            _ => {}
        }
    }
    if let Some(cut) = cut {
        e.legs.retain(|l| l.name != "batch");
        let n = cut.pieces.len();
        for (i, (piece, sql)) in cut.pieces.iter().enumerate() {
            let mut leg = ExplainLeg::new(&format!("batch piece {}/{n}", i + 1), sql.clone());
            leg.from = Some(time_text(piece.lo.unwrap_or(cut.lower), cut.naive));
            leg.to = Some(piece.hi.map_or_else(|| w.clone(), |h| time_text(h, cut.naive)));
            e.legs.insert(i, leg);
        }
    }
    e.windows = windows_text(win);
    e
}

/// What the windows do for a split, as EXPLAIN says it (None without windows).
fn windows_text(win: &WindowOutcome) -> Option<String> {
    let r = win.report.as_ref()?;
    Some(match (&r.reason, &win.speed_sql) {
        (None, Some(_)) => format!(
            "used: speed leg up to S = {} (H = {}), then {} bucket(s) from Redis",
            r.from.clone().unwrap_or_default(),
            r.high_water_mark.clone().unwrap_or_default(),
            r.buckets
        ),
        (reason, _) => format!(
            "not used{}: {}; the speed leg reads the whole speed table",
            if win.degraded { " (degraded)" } else { "" },
            reason.clone().unwrap_or_default()
        ),
    })
}

pub(super) fn explain_lines(e: &Explain) -> Vec<String> {
    let mut lines = vec![format!("tidemark plan: {}", e.class)];
    if let Some(t) = &e.table {
        lines.push(format!("  logical table: {t}"));
    }
    if let Some(w) = &e.batch_watermark {
        lines.push(format!("  batch watermark: {w}"));
    }
    for l in &e.legs {
        lines.push(format!("  leg {}: {}", l.name, l.sql));
    }
    for p in &e.pruned {
        lines.push(format!("  pruned: {p} leg"));
    }
    if let Some(r) = &e.reason {
        lines.push(format!("  note: {r}"));
    }
    if let Some(w) = &e.windows {
        lines.push(format!("  windows: {w}"));
    }
    lines
}

impl Engine {
    /// Parameter types and result columns of a statement, without running it (what the
    /// extended protocol's Describe needs). Writes and what `user` may not read are refused.
    pub async fn describe_statement(
        &self,
        sql: &str,
        wp: &SessionParams,
        user: &str,
    ) -> Result<Described> {
        let search_path = wp.iter().find(|(k, _)| k == "search_path").map(|(_, v)| v.as_str());
        self.authorize(sql, user, search_path).await?;
        let text =
            |name: &str| Described { columns: vec![Column::new(name, Type::TEXT)], params: vec![] };
        match self.classify(sql)? {
            Class::Local(Local::Show(name)) if name.starts_with("tidemark.") => Ok(text(&name)),
            Class::Local(Local::Show(name)) => {
                match self.describe(&format!("SHOW {name}"), wp).await {
                    // a custom parameter the session may have set (`SET myapp.x = ...`)
                    Err(e) if e.sqlstate() == "42704" && name.contains('.') => Ok(text(&name)),
                    other => other,
                }
            }
            Class::Local(Local::Settings(calls)) => Ok(Described {
                columns: calls
                    .iter()
                    .map(|(name, _)| Column::new(name.clone(), Type::TEXT))
                    .collect(),
                params: vec![],
            }),
            Class::Local(Local::Explain { .. }) => Ok(text("QUERY PLAN")),
            Class::Local(_) => Ok(Described { columns: vec![], params: vec![] }),
            Class::Split { query, .. } => {
                let facts = self.catalog.facts().await?;
                let form = split::describe_form(&query, self.dialect(), &facts);
                self.describe(form.as_deref().unwrap_or(sql), wp).await
            }
            Class::Passthrough { .. } => self.describe(sql, wp).await,
        }
    }

    /// The lambda plan of a statement: class, W, each leg's SQL and what was pruned.
    pub async fn explain(&self, sql: &str, wp: &SessionParams) -> Result<Explain> {
        match self.classify(sql)? {
            Class::Local(_) => Ok(Explain::local()),
            Class::Passthrough { reason } => Ok(Explain::passthrough(sql, reason)),
            Class::Split { query, table } => {
                let now = chrono::Utc::now().timestamp_micros();
                match self.plan_split(sql, *query, &table, (now, &[]), wp, &Pins::new()).await {
                    Ok((p, _)) => {
                        let win = match &p.shape {
                            Shape::Aggregate(_) => self.window_leg(&p, &[], now, false).await,
                            Shape::Rows(_) => self.window_leg_unfit(&p).await,
                        };
                        let lower = self.lower_time_bound(&p, &[]);
                        let cut = self.batch_cut(&p, &[], false);
                        Ok(explain_run(&p, lower, cut.as_ref(), &win))
                    }
                    Err(Error::Unsplittable(reason)) => {
                        let mut e = Explain::passthrough(sql, reason);
                        e.table = Some(table.clone());
                        e.batch_watermark = self.watermarks.cached(&table).map(|w| w.text());
                        Ok(e)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }
}

impl Engine {
    /// The ANALYZE part of `EXPLAIN (ANALYZE)`: runs `sql` as the session would and reports
    /// the rows and time of the whole answer and of each leg, with its cache status.
    pub(super) async fn analyze(
        &self,
        sql: &str,
        params: &[Param],
        session: &Session,
    ) -> Result<Vec<String>> {
        let started = Instant::now();
        // rows are counted and dropped as they stream: an analyzed answer is never held
        let run = async {
            let result = self.inner_query(sql, params, session).await?;
            let count = |n: usize, b: RecordBatch| async move { Ok(n + b.num_rows()) };
            Ok::<_, Error>((result.stream.try_fold(0, count).await?, result.freshness))
        };
        let (run, trips) = Cost::counting(Box::pin(run)).await;
        let (rows, f) = run?;
        let took = started.elapsed().as_secs_f64() * 1000.0;
        let mut lines = vec![
            format!("actual: {rows} row(s) in {took:.3} ms, answered as {}", f.plan),
            format!("  warehouse round trips: {trips}"),
            format!("  phases: {}", trips.phases()),
        ];
        if let Some(c) = f.cache {
            lines.push(format!("  answer cache: {c}"));
        }
        for leg in &f.legs {
            let rows = leg.rows.map_or("rows streamed".to_string(), |r| format!("{r} row(s)"));
            lines.push(format!(
                "  {} leg: {rows} in {:.3} ms, cache {}",
                leg.name, leg.elapsed_ms, leg.cache
            ));
        }
        if let Some(w) = f.windows.as_ref().filter(|w| w.used) {
            lines.push(format!("  windows: {} bucket(s) read", w.buckets));
        }
        Ok(lines)
    }
}
