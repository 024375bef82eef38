//! The connections: accepted one by one, each served by hyper with a deadline for its
//! request headers (which also closes a keep-alive connection left idle that long), and all
//! of them told to finish at shutdown, then dropped after a grace period, so that a client
//! holding a half-sent request can neither hold the service open nor keep it from stopping.
//! A connection that has answered closes without a reset ([`linger`]).
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

/// Serves `app` on `listener` until `shutdown` resolves (the listener stays open, for the next
/// router: the loading one hands over to the model's), then lets every connection finish
/// the request it is answering within `grace`, and drops those still open after it.
/// Returns how many connections had to be dropped.
pub async fn serve_connections(listener: &TcpListener, app: Router, header_timeout: Duration, grace: Duration, shutdown: impl Future<Output = ()>) -> usize {
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
                connections.spawn(serve_connection(stream, app.clone(), header_timeout, Some(stopped.clone())));
            }
            // Reap finished connections as they end, so that the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
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

/// Serves `app` on `listener` until `until` resolves, each connection for one request (no
/// keep-alive) and on its own: the loading router's. A client that connects as the model's
/// router takes the port over still gets the loading router's answer; told to stop, hyper
/// would close a connection whose request it has not read yet, and the client would get none.
pub async fn serve_one_request_each(listener: &TcpListener, app: Router, header_timeout: Duration, until: impl Future<Output = ()>) {
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => return,
            accepted = listener.accept() => {
                let Ok((stream, _peer)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                tokio::spawn(serve_connection(stream, app.clone(), header_timeout, None));
            }
        }
    }
}

/// One connection; with `stopped`, kept alive for further requests until told to stop.
async fn serve_connection(stream: tokio::net::TcpStream, app: Router, header_timeout: Duration, mut stopped: Option<watch::Receiver<bool>>) {
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout).keep_alive(stopped.is_some());
    let mut connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut stopping = false;
    let finished = loop {
        tokio::select! {
            finished = std::future::poll_fn(|cx| connection.poll_without_shutdown(cx)) => break finished,
            _ = told_to_stop(&mut stopped), if !stopping => {
                // Answer the request under way, if any, then close; idle connections close now.
                stopping = true;
                std::pin::Pin::new(&mut connection).graceful_shutdown();
            }
        }
    };
    if finished.is_ok() {
        linger(connection.into_parts().io.into_inner()).await;
    }
}

/// Resolves when `stopped` says stop (or its sender is gone); never without one.
async fn told_to_stop(stopped: &mut Option<watch::Receiver<bool>>) {
    match stopped {
        Some(stopped) => {
            let _ = stopped.changed().await;
        }
        None => std::future::pending().await,
    }
}

/// How long, and how many bytes, a closing connection reads and drops of what its client
/// still sends.
const LINGER: (Duration, u64) = (Duration::from_secs(2), 64 << 20);

/// Closes a connection whose answer has been written without resetting it: a socket closed
/// with unread bytes (an upload refused at its header, 413) is reset, and the reset can
/// discard the answer before the client reads it. So the sending side is shut first, and
/// what the client still sends is read and dropped for a moment (as nginx's lingering close).
async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buffer = vec![0u8; 64 << 10];
    let mut drained = 0u64;
    let _ = tokio::time::timeout(LINGER.0, async {
        while drained < LINGER.1 {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n as u64,
            }
        }
    })
    .await;
}
