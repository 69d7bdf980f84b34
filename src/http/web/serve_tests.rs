//! The serve loop and its connections: timeouts on in-memory streams under a paused clock, the cap,
//! graceful shutdown and the drain limit on loopback TCP.

use std::time::Duration;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;

const GET_HEALTHY: &[u8] = b"GET /-/healthy HTTP/1.1\r\nhost: x\r\n\r\n";

fn router() -> Router {
    Router::new()
        .route("/-/healthy", get(|| async { "OK\n" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(500)).await;
                "slow done\n"
            }),
        )
        .route("/stuck", get(std::future::pending::<()>))
}

fn limits(max_connections: usize) -> Limits {
    Limits {
        max_connections,
        ..Limits::for_this_process()
    }
}

/// One connection served over an in-memory stream; returns the client's end.
fn connect_in_memory() -> DuplexStream {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let slots = Arc::new(Semaphore::new(1));
    let (phase, receiver) = watch::channel(Phase::Serving);
    let connection = Connection {
        router: router(),
        peer: "192.0.2.7:4321".parse().expect("address"),
        limits: limits(1),
        phase: receiver,
        _slot: slots.try_acquire_owned().expect("slot"),
    };
    tokio::spawn(async move {
        connection.serve(server).await;
        drop(phase);
    });
    client
}

/// Reads until the server closes the stream or `within` passes; returns what was read and
/// whether it closed.
async fn read_until_closed(
    stream: &mut (impl AsyncRead + Unpin),
    within: Duration,
) -> (String, bool) {
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&received).into(), true),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&received).into(), false),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let mut client = connect_in_memory();
    let (_, closed) =
        read_until_closed(&mut client, HEADER_READ_TIMEOUT - Duration::from_secs(1)).await;
    assert!(!closed, "closed before the header timeout");
    let (_, closed) = read_until_closed(&mut client, Duration::from_secs(2)).await;
    assert!(closed, "still open after the header timeout");
}

#[tokio::test(start_paused = true)]
async fn a_slowloris_head_a_byte_a_second_is_closed_after_the_header_timeout() {
    let mut client = connect_in_memory();
    let started = Instant::now();
    let mut closed_after = None;
    for byte in GET_HEALTHY.iter().take(30) {
        if client.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let (_, closed) = read_until_closed(&mut client, Duration::from_secs(1)).await;
        if closed {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("the trickle was never cut off");
    assert!(
        closed_after >= HEADER_READ_TIMEOUT
            && closed_after <= HEADER_READ_TIMEOUT + Duration::from_secs(2),
        "closed after {closed_after:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let mut client = connect_in_memory();
    client.write_all(GET_HEALTHY).await.expect("write");
    let mut buf = [0u8; 1024];
    let n = client.read(&mut buf).await.expect("response");
    let response = String::from_utf8_lossy(&buf[..n]);
    assert!(
        response.starts_with("HTTP/1.1 200") && response.ends_with("OK\n"),
        "{response}"
    );

    // Kept alive: a second request on the same connection is served...
    tokio::time::sleep(HEADER_READ_TIMEOUT / 2).await;
    client.write_all(GET_HEALTHY).await.expect("write");
    let n = client.read(&mut buf).await.expect("second response");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // ...and idling after it ends the connection once the timer, re-armed, runs out.
    let (_, closed) =
        read_until_closed(&mut client, HEADER_READ_TIMEOUT - Duration::from_secs(1)).await;
    assert!(!closed, "closed before the timeout");
    let (_, closed) = read_until_closed(&mut client, Duration::from_secs(2)).await;
    assert!(closed, "an idle keep-alive connection stayed open");
}

#[tokio::test(start_paused = true)]
async fn requests_carry_the_peer_address_as_connect_info() {
    let mut client = connect_in_memory();
    client
        .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let (response, closed) = read_until_closed(&mut client, Duration::from_secs(5)).await;
    assert!(closed);
    assert!(response.ends_with("192.0.2.7:4321"), "{response}");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_cut_off_after_the_write_stall_timeout() {
    let (mut client, server) = tokio::io::duplex(16);
    let mut guarded = WriteStall::new(server, WRITE_STALL_TIMEOUT);
    // Progress resets the deadline: reading a little now and then keeps the writer going.
    for _ in 0..3 {
        guarded
            .write_all(&[1; 16])
            .await
            .expect("room for 16 bytes");
        tokio::time::sleep(WRITE_STALL_TIMEOUT - Duration::from_secs(1)).await;
        client.read_exact(&mut [0; 16]).await.expect("read");
    }
    guarded.write_all(&[1; 16]).await.expect("fills the buffer");
    let started = Instant::now();
    let error = guarded.write_all(&[2; 1]).await.expect_err("nobody reads");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    assert_eq!(started.elapsed(), WRITE_STALL_TIMEOUT);
}

/// The serve loop on a loopback port; send on the channel to shut it down.
async fn serve_on_loopback(
    limits: Limits,
) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, None, router(), limits, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

async fn request(addr: SocketAddr, head: &[u8]) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head).await.expect("write");
    read_until_closed(&mut stream, Duration::from_secs(10)).await
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_served_again_when_a_slot_frees() {
    let (addr, _stop, _server) = serve_on_loopback(limits(2)).await;
    let first = TcpStream::connect(addr).await.expect("connect");
    let _second = TcpStream::connect(addr).await.expect("connect");

    // The third is accepted and closed, not left waiting in the backlog.
    let mut third = TcpStream::connect(addr).await.expect("connect");
    let (_, closed) = read_until_closed(&mut third, Duration::from_secs(10)).await;
    assert!(closed, "a connection over the cap was left open");

    drop(first);
    // The server notices the hang-up on its own schedule: retry a few times.
    let mut served = false;
    for _ in 0..50 {
        let (response, _) = request(
            addr,
            b"GET /-/healthy HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        if response.starts_with("HTTP/1.1 200") {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "a freed slot was never reused");
}

#[tokio::test]
async fn shutdown_lets_a_request_in_progress_finish_and_closes_the_port() {
    let (addr, stop, server) = serve_on_loopback(limits(8)).await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await; // the request is in the handler
    let _ = stop.send(());
    let (response, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(response.ends_with("slow done\n"), "{response}");
    assert!(
        closed,
        "the keep-alive connection closes after its last response"
    );
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server returns")
        .expect("join");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
}

#[tokio::test]
async fn shutdown_cuts_a_stuck_request_after_the_drain_timeout() {
    let (addr, stop, server) = serve_on_loopback(Limits {
        drain_timeout: Duration::from_millis(300),
        ..limits(8)
    })
    .await;
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /stuck HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server returns despite the stuck request")
        .expect("join");
    let (response, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(closed && response.is_empty(), "{response}");
}

#[tokio::test(start_paused = true)]
async fn shedding_is_reported_at_once_then_at_most_every_interval_with_the_count() {
    let mut shed = ShedLog::default();
    shed.record(2);
    assert_eq!(
        (shed.unlogged, shed.due()),
        (0, None),
        "the first one at once"
    );
    let first = shed.last_warning.expect("warned");
    for _ in 0..5 {
        shed.record(2);
    }
    assert_eq!(shed.unlogged, 5, "the rest waits for the interval");
    assert_eq!(shed.due(), Some(first + SHED_LOG_INTERVAL));
    tokio::time::sleep(SHED_LOG_INTERVAL).await;
    shed.report(2);
    assert_eq!((shed.unlogged, shed.due()), (0, None));
}
