//! The HTTP server's accept loop and connections, plain or TLS: a cap on open connections (new
//! ones beyond it are accepted and closed at once), a header-read timeout that also ends idle
//! keep-alive connections, a write-stall timeout, back-off on accept errors, the peer address in
//! each request, and graceful shutdown. What is served is the router's business (`server.rs`);
//! how many connections the descriptors allow is `fds.rs`'s.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::TlsHandshaker;

/// How long a client may take to send a request's head, counted from when the server starts
/// waiting for it: from the connection's start and again after every response, so it is also the
/// idle keep-alive timeout (hyper 1.x re-arms the timer whenever it waits for a head). Prometheus
/// sends its request at once; 10 s is far beyond any honest client and ends slowloris and idle
/// connections well before they can pile up.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A response write that makes no progress this long ends the connection: a client that stops
/// reading (a full TCP window) would otherwise hold its connection, and a slot, for ever. Long
/// enough for a slow link to take a large `/metrics` body one window at a time.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// On shutdown, requests in progress get this long to finish before their connections are cut.
/// Runs of the agent have already finished by then; this bounds only slow or stuck clients.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Shedding (connections over the cap) is logged at most this often, with the count since; so
/// are accept errors.
const SHED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// After an accept error other than a failed handshake of a single connection (e.g. out of
/// descriptors, EMFILE/ENFILE), the loop waits before trying again: from the first delay, doubling
/// up to the last, so that it never spins and never gives up.
const ACCEPT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The server's limits; [`Limits::for_this_process`] gives the production values.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub write_stall_timeout: Duration,
    pub drain_timeout: Duration,
}

impl Limits {
    /// The fixed timeouts and the connection cap that the open-file limit allows.
    pub fn for_this_process() -> Self {
        Limits {
            max_connections: super::fds::connection_cap_now(),
            header_read_timeout: HEADER_READ_TIMEOUT,
            write_stall_timeout: WRITE_STALL_TIMEOUT,
            drain_timeout: DRAIN_TIMEOUT,
        }
    }
}

/// What connections are told to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Serving,
    /// Finish the request in progress, then close.
    Draining,
    /// Close now.
    Closing,
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` completes; then
/// closes the port, lets requests in progress finish (up to `limits.drain_timeout`) and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsHandshaker>,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let cap = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let (phase, _) = watch::channel(Phase::Serving);
    let mut shed = ShedLog::default();
    let mut backoff = ACCEPT_BACKOFF_FIRST;
    let mut accept_warned: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        // A burst of shedding is reported when its interval is over, even if it has stopped.
        let report_shed = shed.due();
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
            () = sleep_until_some(report_shed) => {
                shed.report(cap);
                continue;
            }
        };
        let (stream, peer) = match accepted {
            Ok(connection) => {
                backoff = ACCEPT_BACKOFF_FIRST;
                connection
            }
            // The client gave up before we took its connection: nothing wrong with the server.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                let now = Instant::now();
                if accept_warned.is_none_or(|last| now.duration_since(last) >= SHED_LOG_INTERVAL) {
                    tracing::warn!(%error, retry_in = ?backoff, "cannot accept connections");
                    accept_warned = Some(now);
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = &mut shutdown => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closed at once rather than left in the kernel backlog: once the timeouts have
            // emptied the server, the next connection is served without waiting behind a queue.
            drop(stream);
            shed.record(cap);
            continue;
        };
        let connection = Connection {
            router: router.clone(),
            peer,
            limits,
            phase: phase.subscribe(),
            _slot: slot,
        };
        match &tls {
            Some(tls) => tokio::spawn(connection.serve_tls(stream, tls.clone())),
            None => tokio::spawn(connection.serve(stream)),
        };
    }
    drop(listener);
    shed.flush(cap);
    phase.send_replace(Phase::Draining);
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    if tokio::time::timeout(limits.drain_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!(
            open = cap - slots.available_permits(),
            timeout = ?limits.drain_timeout,
            "connections still busy after the drain timeout; closing them"
        );
        phase.send_replace(Phase::Closing);
    }
}

/// Errors of one incoming connection, not of the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Counts shed connections and warns at most once per [`SHED_LOG_INTERVAL`].
#[derive(Default)]
struct ShedLog {
    unlogged: u64,
    last_warning: Option<Instant>,
}

impl ShedLog {
    fn record(&mut self, cap: usize) {
        self.unlogged += 1;
        if self
            .last_warning
            .is_none_or(|last| last.elapsed() >= SHED_LOG_INTERVAL)
        {
            self.report(cap);
        }
    }

    /// When the connections shed since the last warning are to be reported, if any are.
    fn due(&self) -> Option<Instant> {
        match (self.unlogged, self.last_warning) {
            (0, _) | (_, None) => None,
            (_, Some(last)) => Some(last + SHED_LOG_INTERVAL),
        }
    }

    fn report(&mut self, cap: usize) {
        self.flush(cap);
        self.last_warning = Some(Instant::now());
    }

    fn flush(&mut self, cap: usize) {
        if self.unlogged > 0 {
            tracing::warn!(
                closed = self.unlogged,
                max_connections = cap,
                "too many open connections: closed new ones at once"
            );
            self.unlogged = 0;
        }
    }
}

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One accepted connection; holds its slot of the cap until it ends.
struct Connection {
    router: Router,
    peer: SocketAddr,
    limits: Limits,
    phase: watch::Receiver<Phase>,
    _slot: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve_tls(mut self, stream: TcpStream, tls: TlsHandshaker) {
        let handshake = tokio::select! {
            stream = tls.handshake(stream, self.peer) => stream,
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => None,
        };
        if let Some(stream) = handshake {
            self.serve(stream).await;
        }
    }

    async fn serve<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let peer = self.peer;
        let router = TowerToHyperService::new(self.router.clone());
        // The basic-auth throttle reads the peer address as axum's own `serve` would give it.
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.call(request)
        });
        let io = TokioIo::new(WriteStall::new(io, self.limits.write_stall_timeout));
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_read_timeout)
            .serve_connection(io, service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => return log_end(peer, result),
            // Also when the server is gone (the sender dropped): then drain too.
            _ = self.phase.wait_for(|phase| *phase != Phase::Serving) => {}
        }
        connection.as_mut().graceful_shutdown();
        tokio::select! {
            result = connection.as_mut() => log_end(peer, result),
            _ = self.phase.wait_for(|phase| *phase == Phase::Closing) => {}
        }
    }
}

/// Timeouts and hang-ups are the clients' doing: debug, not noise at info.
fn log_end(peer: SocketAddr, result: hyper::Result<()>) {
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}

/// An I/O stream whose writes fail with `TimedOut` after making no progress for `limit`.
struct WriteStall<I> {
    io: I,
    limit: Duration,
    /// Set while a write is pending; cleared by any progress.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<I> WriteStall<I> {
    fn new(io: I, limit: Duration) -> Self {
        WriteStall {
            io,
            limit,
            deadline: None,
        }
    }

    /// `polled` is the inner stream's answer; a pending one starts (or checks) the deadline.
    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(result) => {
                self.deadline = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let limit = self.limit;
                let deadline = self
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the client stopped reading the response",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for WriteStall<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for WriteStall<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_flush(cx);
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
