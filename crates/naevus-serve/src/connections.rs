//! The connections: accepted one by one, each served by hyper with a deadline for its
//! request headers (which also closes a keep-alive connection left idle that long), and all
//! of them told to finish at shutdown, then dropped after a grace period, so that a client
//! holding a half-sent request can neither hold the service open nor keep it from stopping.
//!
//! (axum::serve sets no read timeout and waits at shutdown for every connection, however
//! long its client takes: the reason for this module.)

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// Serves `app` on `listener` until `shutdown` resolves, then lets every connection finish
/// the request it is answering within `grace`, and drops those still open after it.
/// Returns how many connections had to be dropped.
pub async fn serve_connections(listener: TcpListener, app: Router, header_timeout: Duration, grace: Duration, shutdown: impl Future<Output = ()>) -> usize {
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                connections.spawn(serve_connection(stream, app.clone(), header_timeout, stopped.clone()));
            }
            // Reap finished connections as they end, so that the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let _ = stop.send(true);
    let finished = tokio::time::timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if finished.is_ok() {
        return 0;
    }
    let dropped = connections.len();
    connections.abort_all();
    while connections.join_next().await.is_some() {}
    dropped
}

async fn serve_connection(stream: tokio::net::TcpStream, app: Router, header_timeout: Duration, mut stopped: watch::Receiver<bool>) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stopped.changed(), if !stopping => {
                // Answer the request under way, if any, then close; idle connections close now.
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}
