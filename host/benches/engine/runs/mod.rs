//! The sections of the benchmark, in the order they run. Each adds its rows to the report.

pub mod baseline;
pub mod cluster;
pub mod console;
pub mod e2e;
pub mod ingest;
pub mod memory;
pub mod micro;
pub mod scale;
pub mod soak;
pub mod steps;
pub mod swap;
