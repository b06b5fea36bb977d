//! Prometheus remote write and remote read (being written).

use axum::Router;

use crate::app::AppState;

/// Routes of remote write and read.
pub fn routes() -> Router<AppState> {
    Router::new()
}
