//! What a job's SQL statements are made of, read once for every user: the tables they name,
//! the created table's columns and keys, the upsert's parts, a query's output names. The
//! pipeline derives its statements from these and `validate`'s rules check them, so both read
//! a statement the same way. Nothing here depends on a rule; [`agree`] holds the messages
//! that `run` and `validate --connect` give for the same mistake.
//!
//! Everything answers "don't know" rather than guess: a statement PostgreSQL accepts is never
//! rejected because sqlparser reads it differently or not at all.

pub mod agree;
mod create;
mod name;
mod parse;
mod query;
mod upsert;

pub use create::{ColumnDef, CreateInfo, create_info, created_columns};
pub use name::{TableName, parse_table_name, table_name_at};
pub use parse::{ParseError, code, has_param, ident, offset_of, parse_one};
pub use query::{OutName, Output, Trailing, output_names, query_of, trailing_condition};
pub use upsert::{
    Conflict, ShapeError, UpsertInfo, UpsertShape, conflict_columns, plain_update_set, upsert_info,
    upsert_shape,
};
