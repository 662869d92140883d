//! Watermarks: read from M's clock, capped by M's oldest open transaction, and turned into
//! the value bound to the job's placeholder with the overlap applied.

use std::time::Duration;

use postgres::Transaction;
use postgres::types::Type;

use crate::error::{Db, Error, Result, pg};

/// M's clock now, or the start of the oldest transaction still open on M's database if
/// that is earlier: rows such a transaction writes may carry an older `updated_at` and
/// commit after this extraction. Read inside the extraction's snapshot.
/// One microsecond before that start, since such a transaction may stamp rows with exactly
/// its start time (`now()`) and the condition is usually a strict `>`.
const NEW_WATERMARK: &str = "SELECT least(now(), (\
       SELECT min(xact_start) - interval '1 microsecond' FROM pg_stat_activity \
       WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
         AND datname = current_database() AND backend_type = 'client backend'\
     ))::text";

/// Previous watermark minus the overlap, as M computes it, per placeholder type.
const BOUND_TIMESTAMPTZ: &str =
    "SELECT ($1::text::timestamptz - make_interval(secs => $2::float8))::text";
const BOUND_TIMESTAMP: &str = "SELECT (($1::text::timestamptz - make_interval(secs => $2::float8)) AT TIME ZONE $3::text)::text";
/// A date condition cannot tell hours apart, so the window reaches back one more day.
const BOUND_DATE: &str = "SELECT ((($1::text::timestamptz - make_interval(secs => $2::float8)) \
     AT TIME ZONE $3::text)::date - 1)::text";

/// What the placeholder gets on a run.
pub enum Bound {
    /// The type's earliest value: the run extracts everything.
    Earliest(String),
    /// A point in time derived from the stored watermark.
    Since(String),
}

impl Bound {
    pub fn text(&self) -> &str {
        match self {
            Bound::Earliest(s) | Bound::Since(s) => s,
        }
    }
}

pub fn read_new(m: &mut Transaction<'_>) -> Result<String> {
    let row = m
        .query_one(NEW_WATERMARK, &[])
        .map_err(pg(Db::Master, "reading M's clock for the watermark"))?;
    Ok(row.get(0))
}

/// True when the placeholder's type is a point in time that a watermark can narrow.
pub fn is_time(ty: &Type) -> bool {
    matches!(*ty, Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::DATE)
}

/// The earliest value `ty` allows, as text; an error for types that cannot hold one.
pub fn earliest(ty: &Type) -> Result<String> {
    let v = match *ty {
        Type::TIMESTAMPTZ | Type::TIMESTAMP | Type::DATE => "-infinity",
        Type::INT2 => "-32768",
        Type::INT4 => "-2147483648",
        Type::INT8 => "-9223372036854775808",
        Type::NUMERIC | Type::FLOAT4 | Type::FLOAT8 => "-Infinity",
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => "",
        _ => {
            return Err(Error::Job(format!(
                "the placeholder of SELECT_SOURCE_SQL has type {}, which cannot hold a watermark \
                 (use timestamptz, timestamp, date, an integer or numeric type)",
                ty.name()
            )));
        }
    };
    Ok(v.to_string())
}

/// The value to bind: the earliest for a first or full run, else the stored watermark
/// minus the overlap. Non-time placeholders always get the earliest value: the hashes
/// then keep unchanged rows from being rewritten.
pub fn bound(
    m: &mut Transaction<'_>,
    ty: &Type,
    stored: Option<&str>,
    overlap: Duration,
    server_time_zone: &str,
) -> Result<Bound> {
    let earliest = earliest(ty)?;
    let Some(stored) = stored.filter(|_| is_time(ty)) else {
        return Ok(Bound::Earliest(earliest));
    };
    let secs = overlap.as_secs_f64();
    let row = match *ty {
        Type::TIMESTAMPTZ => m.query_one(BOUND_TIMESTAMPTZ, &[&stored, &secs]),
        Type::TIMESTAMP => m.query_one(BOUND_TIMESTAMP, &[&stored, &secs, &server_time_zone]),
        _ => m.query_one(BOUND_DATE, &[&stored, &secs, &server_time_zone]),
    }
    .map_err(pg(Db::Master, "computing the extraction window"))?;
    Ok(Bound::Since(row.get(0)))
}
