//! `elt validate`: the rules of the job-file table one by one (`rules`), a corpus of files
//! with analysts' mistakes and where each must be reported (`corpus`, files in
//! `tests/validate/corpus/`), what only the databases can tell (`connect`), and what a new
//! user meets in `validate` and `run` (`more`).

mod connect;
mod corpus;
mod more;
mod rules;
