//! Strata's block maintenance: compaction, downsampling and retention of metric blocks.
//!
//! Every operation here works on one tenant's [`strata_engine::TenantDb`] under its
//! maintenance lock, writes new blocks with the engine's block writer (temp directory, fsync,
//! rename) and publishes them with `TenantDb::replace_blocks`.

pub mod downsample;
