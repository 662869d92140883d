//! Watermarks: read from M's clock, capped by M's oldest open transaction, and turned into
//! the value bound to the job's placeholder with the overlap applied.

use std::time::Duration;

use postgres::Transaction;
use postgres::types::Type;

use crate::error::{Db, Error, Result, pg};

/// M's clock now, or, if earlier, the start of the oldest transaction still open on M's
/// database (rows such a transaction writes may carry an older `updated_at` and commit after
/// this extraction; one microsecond before it, since such a transaction may stamp rows with
/// exactly its start time and the condition is usually a strict `>`). On a hot standby: its
/// last replayed commit instead of the open transactions, which it cannot see, since its
/// clock runs ahead of what it has replayed. Also what the warnings need. Read inside the
/// extraction's snapshot.
const NEW_WATERMARK: &str = "SELECT least(now(), CASE WHEN pg_is_in_recovery() \
         THEN pg_last_xact_replay_timestamp() \
         ELSE (SELECT min(xact_start) - interval '1 microsecond' FROM pg_stat_activity \
               WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
                 AND datname = current_database() AND backend_type = 'client backend') \
       END)::text, \
       pg_is_in_recovery(), \
       pg_last_xact_replay_timestamp() IS NULL, \
       CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
       coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0)::float8, \
       coalesce(pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn(), true)";

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

/// The watermark this run stores. `stored` is the previous one: a standby that has not
/// replayed any transaction since it started cannot say what it holds, so it is kept.
pub fn read_new(
    m: &mut Transaction<'_>,
    overlap: Duration,
    stored: Option<&str>,
) -> Result<String> {
    let row = m
        .query_one(NEW_WATERMARK, &[])
        .map_err(pg(Db::Master, "reading M's clock for the watermark"))?;
    let (capped, standby, nothing_replayed): (String, bool, bool) =
        (row.get(0), row.get(1), row.get(2));
    let (paused, lag, receiving): (bool, f64, bool) = (row.get(3), row.get(4), row.get(5));
    if !standby {
        return Ok(capped);
    }
    if nothing_replayed {
        let kept = stored.unwrap_or("-infinity");
        log::warn!(
            "M is a standby that has replayed no transaction since it started, so what it holds \
             is unknown: the watermark stays at {kept}"
        );
        return Ok(kept.to_string());
    }
    if paused {
        log::warn!(
            "M is a standby whose replay is paused ({lag:.0} s behind its last replayed commit): \
             rows committed on the primary since then reach A once replay resumes"
        );
    } else if lag > overlap.as_secs_f64() && receiving {
        log::warn!(
            "M is a standby replaying {lag:.0} s behind its primary, more than the overlap of \
             {} s: the watermark stays at its last replayed commit ({capped})",
            overlap.as_secs()
        );
    }
    Ok(capped)
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
