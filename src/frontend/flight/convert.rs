//! Between the engine's model and Flight SQL's messages: parameters, pinned watermarks,
//! freshness, schemas, SQL and XDBC info, tokens.

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{Any, Nullable, Searchable, SqlInfo, XdbcDataType};
use arrow_flight::{FlightDescriptor, FlightEndpoint, FlightInfo, IpcMessage, SchemaAsIpc, Ticket};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{Schema, SchemaRef};
use futures::TryStreamExt;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::error::{Error, Result};
use crate::model::column::Param;
use crate::model::freshness::Freshness;
use crate::model::value::Value;
use crate::model::watermark::Watermark;

use super::{proto, status, BoxedStream};

/// Splits a batch into slices of at most `max` rows (zero-copy).
pub(super) fn split_rows(b: RecordBatch, max: usize) -> Vec<RecordBatch> {
    if b.num_rows() <= max {
        return vec![b];
    }
    (0..b.num_rows()).step_by(max).map(|o| b.slice(o, max.min(b.num_rows() - o))).collect()
}

/// True when the client sent `x-tidemark-cache: off` (bypass the leg caches).
pub(super) fn no_cache<T>(req: &Request<T>) -> bool {
    req.metadata()
        .get("x-tidemark-cache")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("off"))
}

pub(super) fn text(v: &Value) -> String {
    v.to_pg_text().unwrap_or_default()
}

pub(super) fn param_proto(p: &Param) -> proto::Param {
    match p {
        Param::Null => proto::Param { is_null: true, text: String::new() },
        Param::Text(t) => proto::Param { is_null: false, text: t.clone() },
    }
}

pub(super) fn pin_of(table: &str, w: &Watermark) -> Option<proto::PinnedWatermark> {
    let (kind, value) = match w.value {
        Value::Timestamp(t) => ("timestamp", t),
        Value::TimestampTz(t) => ("timestamptz", t),
        Value::Date(d) => ("date", d as i64),
        Value::Int(i) => ("int", i),
        _ => return None,
    };
    Some(proto::PinnedWatermark { table: table.to_string(), kind: kind.into(), value })
}

pub(super) fn pinned_value(p: &proto::PinnedWatermark) -> Option<Value> {
    Some(match p.kind.as_str() {
        "timestamp" => Value::Timestamp(p.value),
        "timestamptz" => Value::TimestampTz(p.value),
        "date" => Value::Date(p.value as i32),
        "int" => Value::Int(p.value),
        _ => return None,
    })
}

/// The freshness message of `proto/tidemark.proto`.
pub fn freshness_proto(f: &Freshness) -> proto::Freshness {
    proto::Freshness {
        plan: f.plan.name().into(),
        table: f.table.clone().unwrap_or_default(),
        batch_watermark: f.batch_watermark.clone().unwrap_or_default(),
        realtime_as_of: f.realtime_as_of.clone().unwrap_or_default(),
        legs: f
            .legs
            .iter()
            .map(|l| proto::Leg {
                name: l.name.clone(),
                rows: l.rows.map(|r| r as i64).unwrap_or(-1),
                elapsed_ms: l.elapsed_ms,
                cache: l.cache.name().into(),
            })
            .collect(),
        pruned: f.pruned.clone(),
        degraded: f.degraded,
        reason: f.reason.clone().unwrap_or_default(),
        cache: f.cache.map(|c| c.name().to_string()).unwrap_or_default(),
        realtime_reaches: f.realtime_reaches.clone().unwrap_or_default(),
        windows_used: f.windows.as_ref().is_some_and(|w| w.used),
        windows_reason: f.windows.as_ref().and_then(|w| w.reason.clone()).unwrap_or_default(),
        high_water_mark: f
            .windows
            .as_ref()
            .and_then(|w| w.high_water_mark.clone())
            .unwrap_or_default(),
    }
}

pub(super) fn ipc_schema(schema: &Schema) -> std::result::Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow_schema::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

pub(super) fn one_batch<E: Into<FlightError> + Send + 'static>(
    schema: SchemaRef,
    batch: std::result::Result<RecordBatch, E>,
) -> Response<BoxedStream<arrow_flight::FlightData>> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(futures::stream::once(async move { batch.map_err(Into::into) }))
        .map_err(Status::from);
    Response::new(Box::pin(stream))
}

pub(super) fn info_for(
    any: Any,
    schema: &Schema,
    descriptor: FlightDescriptor,
) -> std::result::Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(any.encode_to_vec()));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

pub(super) fn read_only() -> Status {
    status(Error::ReadOnly("a Flight SQL update or ingest".into()))
}

pub(super) fn sql_info() -> Result<SqlInfoData> {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "tidemark");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(SqlInfo::FlightSqlServerTransaction, 0i32);
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.build().map_err(|e| Error::internal(e.to_string()))
}

pub(super) fn xdbc_info() -> Result<XdbcTypeInfoData> {
    use arrow_flight::sql::metadata::XdbcTypeInfo;
    let mut b = XdbcTypeInfoDataBuilder::new();
    for (name, ty) in [
        ("bool", XdbcDataType::XdbcBit),
        ("int2", XdbcDataType::XdbcSmallint),
        ("int4", XdbcDataType::XdbcInteger),
        ("int8", XdbcDataType::XdbcBigint),
        ("float4", XdbcDataType::XdbcReal),
        ("float8", XdbcDataType::XdbcDouble),
        ("numeric", XdbcDataType::XdbcDecimal),
        ("text", XdbcDataType::XdbcVarchar),
        ("date", XdbcDataType::XdbcDate),
        ("timestamp", XdbcDataType::XdbcTimestamp),
    ] {
        b.append(XdbcTypeInfo {
            type_name: name.into(),
            data_type: ty,
            column_size: None,
            literal_prefix: None,
            literal_suffix: None,
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: name == "text",
            searchable: Searchable::Full,
            unsigned_attribute: None,
            fixed_prec_scale: false,
            auto_increment: None,
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: ty,
            datetime_subcode: None,
            num_prec_radix: None,
            interval_precision: None,
        });
    }
    b.build().map_err(|e| Error::internal(e.to_string()))
}

/// Decodes bound parameters: the first row of the record batches the client put.
pub(super) async fn params_of(
    stream: PeekableFlightDataStream,
) -> std::result::Result<Vec<Param>, Status> {
    let batches: Vec<RecordBatch> =
        arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
            stream.map_err(FlightError::from),
        )
        .try_collect()
        .await
        .map_err(|e| Status::invalid_argument(format!("22023: bad parameter batch: {e}")))?;
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else { return Ok(vec![]) };
    (0..b.num_columns())
        .map(|c| {
            let col = b.column(c);
            if col.is_null(0) {
                return Ok(Param::Null);
            }
            arrow_cast::display::array_value_to_string(col, 0)
                .map(Param::Text)
                .map_err(|e| Status::invalid_argument(format!("22023: parameter {}: {e}", c + 1)))
        })
        .collect()
}
