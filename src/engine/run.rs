//! Running a classified statement: the split (plan, legs, chunks, windows, merge, the answer
//! and leg caches) and the pass-through.

use super::explain::explain_run;
use super::*;

/// What a split query runs with besides its SQL.
#[derive(Clone, Copy)]
pub(super) struct SplitCtx<'a> {
    pub(super) params: &'a [Param],
    pub(super) wp: &'a SessionParams,
    pub(super) pins: &'a Pins,
    pub(super) bypass: bool,
    pub(super) text: Option<&'a TextKey>,
}

/// How a session evaluates times: its TimeZone (its own, else the warehouse default).
pub(super) fn time_rules(
    wp: &SessionParams,
    facts: &crate::catalog::Facts,
    dialect: Dialect,
) -> TimeRules {
    let zone = match wp.iter().find(|(k, _)| k == "timezone") {
        Some((_, z)) => z.as_str(),
        None => facts.default_zone.as_str(),
    };
    TimeRules { zone: Zone::named(zone), redshift: dialect == Dialect::Redshift }
}

/// A query result from a cached answer; a hit marks the answer and its legs `hit`.
pub(super) fn answer_result(answer: &Answer, hit: bool) -> QueryResult {
    let mut freshness = answer.freshness.clone();
    if hit {
        freshness.cache = Some(CacheStatus::Hit);
        for l in freshness.legs.iter_mut().filter(|l| l.cache != CacheStatus::None) {
            l.cache = CacheStatus::Hit;
        }
    }
    let batches = answer.batches.clone();
    let stream = stream::iter(batches.into_iter().map(Ok)).boxed();
    let mut r = QueryResult::new(answer.schema.clone(), stream, freshness, Tag::Select);
    r.memo = Some(answer.memo.clone());
    r.explain = answer.explain.clone();
    r
}

impl Engine {
    /// Plans a split query against the current watermark at instant `now_micros` with the
    /// bound `params` (Err(Unsplittable) → passthrough).
    pub(super) async fn plan_split(
        &self,
        sql: &str,
        mut query: sqlparser::ast::Query,
        table: &str,
        (now_micros, params): (i64, &[Param]),
        wp: &SessionParams,
        pins: &Pins,
    ) -> Result<(SplitPlan, Described)> {
        let cfg = self
            .config
            .table(table)
            .ok_or_else(|| Error::internal("unknown logical table"))?
            .clone();
        // as the parser prints it: the same for `q`, `EXPLAIN ANALYZE q` and spacing variants
        let source = query.to_string();
        let facts = self.catalog.facts().await?;
        if sql.contains('\\') && split::backslashes_disagree(self.dialect(), &facts) {
            return Err(Error::unsplittable("backslash read differently by parser and warehouse"));
        }
        let describe_sql = split::describe_form(&query, self.dialect(), &facts);
        let describe = self.describe(describe_sql.as_deref().unwrap_or(sql), wp);
        let described = Cost::timed(Phase::Describe, Box::pin(describe)).await?;
        if let Some(c) = described.columns.iter().find(|c| !supported_type(&c.ty)) {
            return Err(Error::unsplittable(format!(
                "result type {} is served as text",
                c.ty.name()
            )));
        }
        let Some(pinned) = split::substitute_now_counting(&mut query, now_micros, self.dialect())
        else {
            return Err(Error::unsplittable("now() with arguments"));
        };
        split::bind_limits(&mut query, params);
        let watermark = match pins.get(&cfg.name.to_lowercase()) {
            Some(w) => w.clone(),
            None => self.watermarks.snapshot(&cfg.name).await?,
        };
        let columns = self.table_columns(&cfg.batch_table).await?;
        let input = SplitInput {
            query: &query,
            table: &cfg,
            columns: &columns,
            facts: &facts,
            described: &described,
            watermark: &watermark,
            time: time_rules(wp, &facts, self.dialect()),
            union: self.union_wanted(&cfg, &source),
        };
        let mut plan = Cost::time(Phase::Plan, || split::plan(&input))?;
        plan.source = source;
        plan.pinned_now = pinned > 0;
        Ok((plan, described))
    }

    pub(super) async fn split(
        &self,
        sql: &str,
        query: sqlparser::ast::Query,
        table: &str,
        ctx: &SplitCtx<'_>,
    ) -> Result<QueryResult> {
        let SplitCtx { params, wp, pins, bypass, text } = *ctx;
        let now = chrono::Utc::now().timestamp_micros();
        let planned = self.plan_split(sql, query, table, (now, params), wp, pins).await;
        let (plan, described) = match planned {
            Ok(p) => p,
            Err(Error::Unsplittable(reason)) => {
                return self.passthrough(sql, params, reason, Some(table), wp).await
            }
            Err(e) => return Err(e),
        };
        let cacheable = match &plan.shape {
            Shape::Aggregate(_) => true,
            Shape::Rows(r) => r.limit.is_some(),
        };
        let epoch = self.legs.epoch(now).filter(|_| cacheable && !bypass);
        let outcome = match epoch {
            Some(epoch) => {
                let key = AnswerKey {
                    sql: sql.to_string(),
                    params: params.to_vec(),
                    session: wp.clone(),
                    watermark: plan.watermark.text(),
                    epoch,
                };
                let run = self.cached_split((key, text), &plan, &described, params, now, wp);
                Box::pin(run).await
            }
            None => Box::pin(self.run_split(&plan, &described, params, now, wp, bypass)).await,
        };
        match outcome {
            Err(Error::Unsplittable(reason)) => {
                tracing::debug!(%reason, "split merge gave up; passing through");
                self.passthrough(sql, params, reason, Some(table), wp).await
            }
            Err(Error::Warehouse { sqlstate, message }) if !sqlstate.starts_with("57") => {
                tracing::warn!(%sqlstate, %message, "a split leg failed; passing the query through");
                self.passthrough(sql, params, format!("leg failed: {message}"), Some(table), wp)
                    .await
            }
            other => other,
        }
    }

    /// A split answer from the whole-answer cache, or computed once for everyone asking.
    pub(super) async fn cached_split(
        &self,
        (key, text): (AnswerKey, Option<&TextKey>),
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let load = || async {
            let r = Box::pin(self.run_split(plan, described, params, now, wp, false)).await?;
            let batches: Vec<RecordBatch> = r.stream.try_collect().await?;
            Ok(Answer {
                schema: r.schema,
                batches,
                freshness: r.freshness,
                memo: Default::default(),
                explain: r.explain,
            })
        };
        let (answer, hit) = self.legs.answer_or_load(key, load).await?;
        if let Some(t) = text {
            self.legs.remember_text(t.clone(), answer.clone()).await;
        }
        Ok(answer_result(&answer, hit))
    }

    pub(super) async fn run_split(
        &self,
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
        bypass: bool,
    ) -> Result<QueryResult> {
        if let Shape::Rows(spec) = &plan.shape {
            if spec.limit.is_none() {
                return self.stream_legs(plan, described, params, now, wp);
            }
        }
        if let Some(union) = plan.union.as_deref() {
            return self.run_union(plan, union, described, (params, now, wp)).await;
        }
        let mut win = match &plan.shape {
            Shape::Aggregate(_) => self.window_leg(plan, params, now, bypass).await,
            Shape::Rows(_) => Default::default(),
        };
        let cut = self.batch_cut(plan, params, bypass);
        let explain = explain_run(plan, self.lower_time_bound(plan, params), cut.as_ref(), &win);
        let speed_sql = win.speed_sql.take();
        let legs = plan.legs.iter().map(|leg| async {
            let started = Instant::now();
            if let (split::Layer::Batch, Some(cut)) = (leg.layer, &cut) {
                let (rows, pieces) = self.run_pieces(cut, described, params, wp).await?;
                let status = CacheStatus::of_pieces(&pieces);
                return Ok(((rows, now), status, pieces, started.elapsed()));
            }
            let sql = match (&speed_sql, leg.layer) {
                (Some(bounded), split::Layer::Speed) => bounded.clone(),
                _ => leg.sql.clone(),
            };
            let key = LegKey { sql: sql.clone(), params: params.to_vec(), session: wp.clone() };
            let fetch = || async {
                self.metrics.leg(leg.layer.name());
                self.warehouse.fetch(&sql, &described.params, params, wp).await.map(|f| f.rows)
            };
            let load = || async {
                match self.shared_for(leg.layer, bypass) {
                    Some(sh) => {
                        self.fleet_leg(sh, &Self::leg_identity(&sql, params, wp), fetch).await
                    }
                    None => fetch().await.map(|r| (r, false)),
                }
            };
            let (rows, status) = self.legs.get_or_load(leg.layer, key, bypass, load).await?;
            Ok::<_, Error>((rows, status, vec![], started.elapsed()))
        });
        let results =
            Cost::timed(Phase::Legs, Box::pin(futures::future::try_join_all(legs))).await?;
        let mut reports = Vec::new();
        let mut rows = Vec::new();
        let mut realtime_at = now;
        for (leg, ((r, read_at), status, pieces, elapsed)) in plan.legs.iter().zip(results) {
            if leg.layer == split::Layer::Speed {
                realtime_at = read_at; // a cached speed leg is as fresh as when it was read
            }
            let ms = elapsed.as_secs_f64() * 1000.0;
            let mut report = LegReport::new(leg.layer.name(), Some(r.len()), ms, status);
            report.pieces = pieces;
            reports.push(report);
            rows.push(Arc::unwrap_or_clone(r));
        }
        if let (Some(r), Some(report)) = (win.rows.take(), win.leg.take()) {
            rows.push(r);
            reports.push(report);
        }
        if matches!(plan.shape, Shape::Aggregate(_)) {
            self.merge_sizes.record(&plan.source, rows.iter().map(Vec::len).sum());
        }
        let ctx = MergeCtx {
            dialect: self.dialect(),
            text_bytewise: plan.text.order_bytewise,
            text_keys: plan.text.keys_bytewise,
        };
        let merged = Cost::time(Phase::Merge, || match &plan.shape {
            Shape::Aggregate(spec) => merge_aggregate(spec, rows, ctx),
            Shape::Rows(spec) => merge_rows(spec, rows, ctx),
        })?;
        let schema = schema_for(&described.columns);
        let batch = batch_from_rows(&schema, &described.columns, merged)?;
        let mut freshness = self.split_freshness(plan, reports, realtime_at);
        freshness.degraded = win.degraded;
        freshness.realtime_reaches = win.reaches;
        freshness.windows = win.report;
        let stream = stream::once(async { Ok(batch) }).boxed();
        Ok(QueryResult::new(schema, stream, freshness, Tag::Select).with_explain(explain))
    }

    /// Streams unbounded, unsorted row legs one after the other; each leg starts when the
    /// previous one is drained, so nothing is held in memory.
    pub(super) fn stream_legs(
        &self,
        plan: &SplitPlan,
        described: &Described,
        params: &[Param],
        now: i64,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let reports = plan
            .legs
            .iter()
            .map(|l| LegReport::new(l.layer.name(), None, 0.0, CacheStatus::None))
            .collect();
        let schema = schema_for(&described.columns);
        let (target, wh) = (schema.clone(), self.warehouse.clone());
        let (types, params, wp) = (described.params.clone(), params.to_vec(), wp.clone());
        let sqls: Vec<String> = plan.legs.iter().map(|l| l.sql.clone()).collect();
        let stream =
            stream::iter(sqls)
                .then(move |sql| {
                    let (wh, types, params, wp) =
                        (wh.clone(), types.clone(), params.clone(), wp.clone());
                    async move {
                        wh.stream(&sql, &types, &params, &wp, BATCH_ROWS).await.map(|(_, s)| s)
                    }
                })
                .try_flatten()
                .map(move |b| {
                    b.and_then(|b| Ok(RecordBatch::try_new(target.clone(), b.columns().to_vec())?))
                })
                .boxed();
        let freshness = self.split_freshness(plan, reports, now);
        let explain = explain_run(plan, None, None, &Default::default());
        Ok(QueryResult::new(schema, stream, freshness, Tag::Select).with_explain(explain))
    }

    pub(super) fn split_freshness(
        &self,
        plan: &SplitPlan,
        legs: Vec<LegReport>,
        now: i64,
    ) -> Freshness {
        let speed_ran = plan.legs.iter().any(|l| l.layer == split::Layer::Speed);
        Freshness {
            plan: PlanKind::Split,
            table: Some(plan.table.clone()),
            batch_watermark: Some(plan.watermark.text()),
            realtime_as_of: speed_ran.then(|| format!("{}+00", timestamp_text(now))),
            cache: CacheStatus::of_answer(&legs),
            legs,
            pruned: plan.pruned.iter().map(|l| l.name().to_string()).collect(),
            degraded: false,
            reason: None,
            realtime_reaches: None,
            windows: self.windows_not_used(&plan.table, "not an aggregate"),
        }
    }

    /// A windows report saying why they were not used, for tables that have windows.
    pub(super) fn windows_not_used(&self, table: &str, why: &str) -> Option<WindowsReport> {
        let has = self.config.table(table).is_some_and(|t| t.windows.is_some());
        has.then(|| WindowsReport {
            used: false,
            high_water_mark: None,
            from: None,
            buckets: 0,
            reason: Some(why.to_string()),
        })
    }

    pub(super) async fn passthrough(
        &self,
        sql: &str,
        params: &[Param],
        reason: String,
        table: Option<&str>,
        wp: &SessionParams,
    ) -> Result<QueryResult> {
        let started = Instant::now();
        let w = table.and_then(|t| self.watermarks.cached(t).map(|w| (t, w)));
        let inlined = match &w {
            Some((t, w)) => self.inline_passthrough(sql, t, w).await,
            None => None,
        };
        let text = inlined.as_deref().unwrap_or(sql);
        let (schema, stream) = self.warehouse.stream(text, &[], params, wp, BATCH_ROWS).await?;
        let w = w.map(|(_, w)| w.text());
        let freshness = Freshness {
            plan: PlanKind::Passthrough,
            table: table.map(str::to_string),
            batch_watermark: w,
            realtime_as_of: table
                .map(|_| format!("{}+00", timestamp_text(chrono::Utc::now().timestamp_micros()))),
            legs: vec![LegReport::new(
                "warehouse",
                None,
                started.elapsed().as_secs_f64() * 1000.0,
                CacheStatus::None,
            )],
            cache: None,
            pruned: vec![],
            degraded: false,
            windows: table.and_then(|t| {
                self.windows_not_used(t, "the query is passed through to the warehouse")
            }),
            reason: Some(reason),
            realtime_reaches: None,
        };
        let tag = Tag::of_word(sql.split_whitespace().next().unwrap_or("SELECT"));
        let mut explain = Explain::passthrough(text, freshness.reason.clone().unwrap_or_default());
        (explain.table, explain.batch_watermark) =
            (freshness.table.clone(), freshness.batch_watermark.clone());
        Ok(QueryResult::new(schema, stream, freshness, tag).with_explain(explain))
    }

    /// The pass-through text of a query on logical table `table`: each reference to the view
    /// replaced by the union of the layers at `w` (see `plan::inline`), or None to keep the view.
    async fn inline_passthrough(
        &self,
        sql: &str,
        table: &str,
        w: &crate::watermark::Watermark,
    ) -> Option<String> {
        use crate::plan::sqlcheck;
        let Ok(Class::Split { query, .. }) = self.classify(sql) else { return None };
        let cfg = self.config.table(table)?;
        let cols = self.table_columns(&cfg.batch_table).await.ok()?;
        let cols: Vec<String> = cols.into_iter().map(|c| c.name).collect();
        let sides = sqlcheck::sides_of_w(cfg, &w.literal().ok()?, Default::default());
        let union = sqlcheck::union_of_layers(&cols, &sides);
        crate::plan::inline::inline_union(sql, &query, cfg, &union)
    }
}
