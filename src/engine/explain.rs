//! Describing a statement without running it, and EXPLAIN: the plan as a record and as text.

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
        legs: p
            .legs
            .iter()
            .map(|l| ExplainLeg { name: l.layer.name().into(), sql: l.sql.clone() })
            .collect(),
        pruned: p.pruned.iter().map(|l| l.name().to_string()).collect(),
        reason: Some(merge),
        windows: None,
    }
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
        let passthrough = |reason: String| Explain {
            class: PlanKind::Passthrough,
            table: None,
            batch_watermark: None,
            legs: vec![ExplainLeg { name: "warehouse".into(), sql: sql.to_string() }],
            pruned: vec![],
            reason: Some(reason),
            windows: None,
        };
        match self.classify(sql)? {
            Class::Local(_) => Ok(Explain {
                class: PlanKind::Local,
                table: None,
                batch_watermark: None,
                legs: vec![],
                pruned: vec![],
                reason: Some("answered by tidemark without the warehouse".into()),
                windows: None,
            }),
            Class::Passthrough { reason } => Ok(passthrough(reason)),
            Class::Split { query, table } => {
                let now = chrono::Utc::now().timestamp_micros();
                match self.plan_split(sql, *query, &table, (now, &[]), wp, &Pins::new()).await {
                    Ok((p, _)) => {
                        let mut e = explain_split(&p);
                        if let Some(pieces) = self.batch_cut(&p, &[], false) {
                            let n = pieces.len();
                            e.legs.retain(|l| l.name != "batch");
                            for (i, sql) in pieces.into_iter().enumerate() {
                                let name = format!("batch piece {}/{n}", i + 1);
                                e.legs.insert(i, ExplainLeg { name, sql });
                            }
                        }
                        self.explain_windows(&p, now, &mut e).await;
                        Ok(e)
                    }
                    Err(Error::Unsplittable(reason)) => {
                        let mut e = passthrough(reason);
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
