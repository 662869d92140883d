//! A job's `meta` hash in Redis: its fields by name, what they mean when read back
//! ([`Meta`]), the row count or "re-sync next run" ([`Tracked`]) and the generations of row
//! state ([`Generation`]).

use std::collections::HashMap;

use super::bucket::buckets_for;

/// Version of the row state's layout and digests, stored as `format` in `meta`: state of
/// another version is not compared against (the next run re-synchronises, rewriting no
/// row A already holds unchanged).
pub const STATE_FORMAT: u64 = 2;

/// The fields of a job's `meta` hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// M's clock at the last extraction (text)
    Watermark,
    /// the current generation of row digests
    Generation,
    /// buckets of that generation
    Buckets,
    /// rows in A after the last successful run; `-1`: the next run re-syncs in full
    Rows,
    LastSuccessMs,
    LastError,
    LastErrorMs,
    /// failed runs since the state was last reset (`elt_job_failures_total`)
    Failures,
    /// SHA-256 of the job file of the last successful run
    FileSha256,
    /// the job's definition fingerprint of the last successful run (see `Job::definition`)
    Definition,
    /// `STATE_FORMAT` of the row state
    Format,
    /// the secret seed of the job's key summaries (a keyed hash nobody can aim at)
    Seed,
    /// a generation being written, not yet current (`GEN:BUCKETS`): what a run killed
    /// before switching leaves, removed by name, so no run has to scan Redis for it
    Attempt,
}

impl Field {
    pub fn name(self) -> &'static str {
        match self {
            Field::Watermark => "wm",
            Field::Generation => "gen",
            Field::Buckets => "buckets",
            Field::Rows => "rows",
            Field::LastSuccessMs => "last_success_ms",
            Field::LastError => "last_error",
            Field::LastErrorMs => "last_error_ms",
            Field::Failures => "failures",
            Field::FileSha256 => "file_sha256",
            Field::Definition => "definition_sha256",
            Field::Format => "format",
            Field::Seed => "seed",
            Field::Attempt => "attempt",
        }
    }
}

/// How many rows the state was written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tracked {
    Rows(i64),
    /// the run found more rows missing in A than one repair copies: re-sync in full
    ResyncNext,
}

impl Tracked {
    pub(super) fn stored(self) -> i64 {
        match self {
            Tracked::Rows(n) => n,
            Tracked::ResyncNext => -1,
        }
    }

    pub(super) fn read(v: i64) -> Tracked {
        if v < 0 {
            Tracked::ResyncNext
        } else {
            Tracked::Rows(v)
        }
    }

    /// Rows, when known.
    pub fn rows(self) -> Option<i64> {
        match self {
            Tracked::Rows(n) => Some(n),
            Tracked::ResyncNext => None,
        }
    }
}

/// What Redis remembers of a job.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub watermark: Option<String>,
    pub generation: u64,
    pub buckets: u32,
    pub tracked: Option<Tracked>,
    pub last_success_ms: Option<u64>,
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    pub file_sha256: Option<String>,
    pub definition: Option<String>,
    pub failures: u64,
    pub format: Option<u64>,
    pub seed: Option<i64>,
    pub attempt: Option<Generation>,
}

impl Meta {
    pub(super) fn from_map(m: &HashMap<String, String>) -> Meta {
        let text = |f: Field| m.get(f.name()).cloned();
        let num = |f: Field| m.get(f.name()).and_then(|v| v.parse::<u64>().ok());
        Meta {
            watermark: text(Field::Watermark),
            generation: num(Field::Generation).unwrap_or(0),
            buckets: num(Field::Buckets)
                .map(|b| b.clamp(1, 1 << 24) as u32)
                .unwrap_or(1),
            tracked: m
                .get(Field::Rows.name())
                .and_then(|v| v.parse().ok())
                .map(Tracked::read),
            last_success_ms: num(Field::LastSuccessMs),
            last_error: text(Field::LastError),
            last_error_ms: num(Field::LastErrorMs),
            file_sha256: text(Field::FileSha256),
            definition: text(Field::Definition),
            failures: num(Field::Failures).unwrap_or(0),
            format: num(Field::Format),
            seed: m.get(Field::Seed.name()).and_then(|v| v.parse().ok()),
            attempt: m
                .get(Field::Attempt.name())
                .and_then(|v| Generation::parse(v)),
        }
    }

    /// Sync state exists: a watermark and the row count it was written with.
    pub fn has_sync_state(&self) -> bool {
        self.watermark.is_some() && self.tracked.is_some()
    }

    /// The row state was written in this version's layout.
    pub fn is_current_format(&self) -> bool {
        self.format == Some(STATE_FORMAT)
    }

    /// The generation the row state is in, when one was ever made current.
    pub(super) fn current(&self) -> Option<Generation> {
        (self.generation != 0).then_some(Generation {
            generation: self.generation,
            buckets: self.buckets,
        })
    }

    /// Rows in A when the state was written, if known.
    pub fn rows(&self) -> Option<i64> {
        self.tracked.and_then(Tracked::rows)
    }
}

/// A generation of row state: its number and bucket count.
#[derive(Debug, Clone, Copy)]
pub struct Generation {
    pub generation: u64,
    pub buckets: u32,
}

impl Generation {
    /// A new generation for about `rows` rows. Numbered by the clock, so it never meets
    /// the leftovers of an attempt killed before it could switch `gen` (those are removed
    /// when a generation becomes current).
    pub fn new(old: Option<&Meta>, rows: u64) -> Self {
        Generation {
            generation: now_ms().max(old.map_or(0, |m| m.generation + 1)),
            buckets: buckets_for(rows),
        }
    }

    /// `GEN:BUCKETS`, as `Field::Attempt` stores it.
    pub(super) fn parse(text: &str) -> Option<Generation> {
        let (g, b) = text.split_once(':')?;
        Some(Generation {
            generation: g.parse().ok()?,
            buckets: b.parse::<u32>().ok()?.clamp(1, 1 << 24),
        })
    }

    pub(super) fn stored(self) -> String {
        format!("{}:{}", self.generation, self.buckets)
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracked_rows_round_trip() {
        assert_eq!(
            Tracked::read(Tracked::ResyncNext.stored()),
            Tracked::ResyncNext
        );
        assert_eq!(Tracked::read(5), Tracked::Rows(5));
    }
}
