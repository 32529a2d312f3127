//! ringloop's benchmarks: this package holds the criterion benches and the tokio reference
//! programs only, kept out of the library's package so that its first build stays small. See
//! BENCHMARKS.md.
