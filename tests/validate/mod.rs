//! `elt validate`: the rules of the job-file table one by one (`rules`), a corpus of files
//! with analysts' mistakes and where each must be reported (`corpus`, files in
//! `tests/validate/corpus/`), and what only the databases can tell (`connect`).

mod connect;
mod corpus;
mod rules;
