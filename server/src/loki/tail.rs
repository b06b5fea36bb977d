//! `GET /loki/api/v1/tail`: live tail of a log query over a WebSocket, as Grafana's Explore
//! "Live" mode and `logcli --tail` use it.
//!
//! Parameters: `query` (a log query), `start` (default one hour ago), `limit` (entries per
//! message, default 100), `delay_for` (seconds to wait before sending an entry, 0–5, default 0).
//! Every second the server evaluates the query forward from just after the newest entry it sent
//! and sends what it found as one text message
//! `{"streams":[{"stream":{…},"values":[["<ns>","<line>"]]}],"dropped_entries":null}`;
//! nothing is sent for an empty second. The tail ends when the client closes the socket.

use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use strata_query::logql::{self, Direction, EvalStats, Expr, LogExpr};

use super::LokiError;
use super::query::{now_ns, streams_json};
use crate::api::Params;
use crate::app::AppState;

const NS: i64 = 1_000_000_000;

/// The tail handler: validates the parameters, then upgrades to a WebSocket.
pub async fn tail(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
    p: Params,
) -> Response {
    let parsed = (|| -> Result<_, LokiError> {
        let tenant = crate::api::tenant(&headers)?;
        let q = p
            .get("query")
            .filter(|q| !q.trim().is_empty())
            .ok_or_else(|| LokiError::bad("missing parameter \"query\""))?;
        let Expr::Log(log) = logql::parse(q).map_err(|e| LokiError::bad(e.to_string()))? else {
            return Err(LokiError::bad("tail needs a log query, not a metric query"));
        };
        let start = match p.get("start") {
            None | Some("") => now_ns() - 3600 * NS,
            Some(v) => super::parse_loki_time(v)
                .map_err(|e| LokiError::bad(format!("invalid parameter \"start\": {e}")))?,
        };
        let limit = match p.get("limit") {
            None | Some("") => 100,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=5000).contains(n))
                .ok_or_else(|| LokiError::bad("invalid parameter \"limit\": 1..=5000"))?,
        };
        let delay = match p.get("delay_for") {
            None | Some("") => 0,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|d| (0..=5).contains(d))
                .ok_or_else(|| LokiError::bad("invalid parameter \"delay_for\": 0..=5 seconds"))?,
        };
        Ok((tenant, log, start, limit, delay))
    })();
    match parsed {
        Ok((tenant, log, start, limit, delay)) => {
            ws.on_upgrade(move |socket| run(socket, state, tenant, log, start, limit, delay * NS))
        }
        Err(e) => e.into_response(),
    }
}

async fn run(
    mut socket: WebSocket,
    state: AppState,
    tenant: String,
    log: LogExpr,
    start: i64,
    limit: usize,
    delay_ns: i64,
) {
    let mut from = start;
    let log = std::sync::Arc::new(log);
    loop {
        let until = now_ns() - delay_ns;
        if until > from
            && let Some(store) = state.loki.engine.existing(&tenant)
        {
            let l = log.clone();
            let res = tokio::task::spawn_blocking(move || {
                let mut st = EvalStats::default();
                logql::eval_logs(&store, &l, from, until, limit, Direction::Forward, &mut st)
            })
            .await;
            match res {
                Ok(Ok(streams)) if !streams.is_empty() => {
                    if let Some(max) = streams
                        .iter()
                        .flat_map(|s| s.entries.iter().map(|e| e.0))
                        .max()
                    {
                        from = max + 1;
                    }
                    let msg = json!({"streams": streams_json(&streams), "dropped_entries": null});
                    if socket
                        .send(Message::Text(msg.to_string().into()))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "tail query failed; closing");
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, "tail task failed; closing");
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
