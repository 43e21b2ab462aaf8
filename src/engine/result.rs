//! What a statement answers: the result stream with its freshness, tag and notices.

use super::*;

/// The answer to one statement: a stream of Arrow batches plus its freshness.
pub struct QueryResult {
    /// Result schema (fields carry `pg_type` metadata).
    pub schema: SchemaRef,
    /// Record batches as they are produced.
    pub stream: BoxStream<'static, Result<RecordBatch>>,
    /// Freshness of this answer.
    pub freshness: Freshness,
    /// Command tag (`SELECT`, `SET`, `BEGIN`, ...).
    pub tag: Tag,
    /// For answers from the answer cache: encodings frontends made of it before.
    pub memo: Option<Arc<crate::cache::Memo>>,
    /// Warnings and notices for the client (pgwire sends them as NoticeResponse).
    pub notices: Vec<Notice>,
    /// For `COPY ... TO STDOUT`: how the rows are to be written.
    pub copy: Option<crate::plan::copy::CopyOptions>,
    /// How the statement changed the transaction block.
    pub txn: TxnChange,
    /// The plan as it ran (legs with their SQL and time ranges), shared with the answer cache
    /// and the statement's record in the engine's recent statements.
    pub explain: Option<Arc<Explain>>,
    /// The statement's id in the recent statements (`GET /v1/recent/{id}`); 0 until
    /// [`Engine::execute`] gives it one.
    pub id: u64,
}

/// How a statement changes the client's transaction block (pgwire's ReadyForQuery status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxnChange {
    /// No change.
    #[default]
    None,
    /// A block began (BEGIN).
    Began,
    /// The block ended (COMMIT, ROLLBACK).
    Ended,
    /// The block is usable again after an error (ROLLBACK TO SAVEPOINT).
    Resumed,
}

impl QueryResult {
    /// The answer with the plan it ran with.
    pub fn with_explain(mut self, explain: Explain) -> QueryResult {
        self.explain = Some(Arc::new(explain));
        self
    }

    /// An answer with nothing but its rows, freshness and tag.
    pub fn new(
        schema: SchemaRef,
        stream: BoxStream<'static, Result<RecordBatch>>,
        freshness: Freshness,
        tag: Tag,
    ) -> QueryResult {
        QueryResult {
            schema,
            stream,
            freshness,
            tag,
            memo: None,
            notices: vec![],
            copy: None,
            txn: TxnChange::None,
            explain: None,
            id: 0,
        }
    }
}

/// A logical table as `GET /v1/tables` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    /// Logical name.
    pub name: String,
    /// Time column.
    pub time_column: String,
    /// Batch table.
    pub batch_table: String,
    /// Speed table.
    pub speed_table: String,
    /// Columns with warehouse types.
    pub columns: Vec<ColumnInfo>,
    /// Current batch watermark.
    pub batch_watermark: Option<String>,
}

pub(super) fn empty(tag: Tag) -> QueryResult {
    let schema = Arc::new(arrow_schema::Schema::empty());
    QueryResult::new(schema, stream::empty().boxed(), Freshness::local(), tag)
}

/// A local answer of text columns (`columns`) and rows of text or NULL.
pub(super) fn text_rows(
    columns: &[String],
    rows: Vec<Vec<Option<String>>>,
    tag: Tag,
) -> Result<QueryResult> {
    let cols: Vec<Column> = columns.iter().map(|c| Column::new(c.clone(), Type::TEXT)).collect();
    let schema = schema_for(&cols);
    let rows = rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v.map_or(Value::Null, Value::Text)).collect())
        .collect();
    let batch = batch_from_rows(&schema, &cols, rows)?;
    let stream = stream::once(async { Ok(batch) }).boxed();
    Ok(QueryResult::new(schema, stream, Freshness::local(), tag))
}

pub(super) fn text_result(column: &str, lines: Vec<String>, tag: Tag) -> Result<QueryResult> {
    let rows = lines.into_iter().map(|l| vec![Some(l)]).collect();
    text_rows(&[column.to_string()], rows, tag)
}
