//! The audit log of destructive admin operations (series deletion).
//!
//! Deleting data cannot be undone, so every deletion request that reached the engine is
//! recorded twice: as a `tracing` event with target `strata::audit` (for whatever collects the
//! server's logs) and as one JSON line appended to `<data-dir>/audit.log` (which lives and is
//! backed up with the data it describes). The line is written and fsynced before the request is
//! answered; failed deletions are recorded too, with their error. The format is specified in
//! `docs/FORMAT.md` ("Audit log").
//!
//! # Durability
//!
//! Lines are appended under a process-wide lock (so concurrent requests never interleave) with
//! `O_APPEND`, then `fdatasync`ed. A crash can at worst leave the last line without its newline;
//! readers should skip a final line that does not parse.

use std::io::Write as _;
use std::path::Path;

use parking_lot::Mutex;
use serde::Serialize;

/// File name of the audit log inside the data directory.
pub const AUDIT_LOG_FILE: &str = "audit.log";

/// Format version written in every line (`"version"`).
pub const AUDIT_FORMAT_VERSION: u32 = 1;

/// `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "strata::audit";

/// Serialises appends to the audit log.
static AUDIT_LOCK: Mutex<()> = Mutex::new(());

/// One series deletion, as recorded in the audit log.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DeletionRecord {
    /// [`AUDIT_FORMAT_VERSION`].
    pub version: u32,
    /// When the deletion finished, RFC 3339 UTC.
    pub time: String,
    /// Always `delete_series`.
    pub event: &'static str,
    /// The tenant whose data was deleted.
    pub tenant: String,
    /// The `match[]` selectors as sent.
    pub matchers: Vec<String>,
    /// Start of the deleted range (Unix ms, inclusive); `None` for "from the beginning".
    pub start_ms: Option<i64>,
    /// End of the deleted range (Unix ms, inclusive); `None` for "to the end".
    pub end_ms: Option<i64>,
    /// The client's address, when known.
    pub remote_addr: Option<String>,
    /// Head series given a deleted interval.
    pub head_series: u64,
    /// Block series tombstoned, summed over blocks.
    pub block_series: u64,
    /// Blocks whose tombstones were rewritten.
    pub blocks: u64,
    /// `success` or `error`.
    pub result: &'static str,
    /// The error, for a failed deletion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DeletionRecord {
    /// Emits the `strata::audit` tracing event and appends the JSON line to
    /// `<data_dir>/audit.log` (fsynced).
    pub fn record(&self, data_dir: &Path) -> std::io::Result<()> {
        tracing::info!(
            target: AUDIT_TARGET,
            event = self.event,
            tenant = %self.tenant,
            matchers = ?self.matchers,
            start_ms = ?self.start_ms,
            end_ms = ?self.end_ms,
            remote_addr = ?self.remote_addr,
            head_series = self.head_series,
            block_series = self.block_series,
            blocks = self.blocks,
            result = self.result,
            error = ?self.error,
            "admin: series deletion"
        );
        let mut line = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let path = data_dir.join(AUDIT_LOG_FILE);
        let _g = AUDIT_LOCK.lock();
        std::fs::create_dir_all(data_dir)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        f.write_all(&line)?;
        f.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_one_json_line_per_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let mut rec = DeletionRecord {
            version: AUDIT_FORMAT_VERSION,
            time: "2026-01-02T03:04:05Z".into(),
            event: "delete_series",
            tenant: "team-a".into(),
            matchers: vec!["up{job=\"x\"}".into()],
            start_ms: Some(1000),
            end_ms: None,
            remote_addr: Some("127.0.0.1:5000".into()),
            head_series: 2,
            block_series: 3,
            blocks: 1,
            result: "success",
            error: None,
        };
        rec.record(dir.path()).unwrap();
        rec.result = "error";
        rec.error = Some("disk full".into());
        rec.record(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(AUDIT_LOG_FILE)).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            serde_json::json!({
                "version": 1, "time": "2026-01-02T03:04:05Z", "event": "delete_series", "tenant": "team-a",
                "matchers": ["up{job=\"x\"}"], "start_ms": 1000, "end_ms": null,
                "remote_addr": "127.0.0.1:5000", "head_series": 2, "block_series": 3,
                "blocks": 1, "result": "success"
            })
        );
        assert_eq!(lines[1]["error"], "disk full");
    }
}
