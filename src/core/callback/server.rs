//! The loopback HTTP listener (RFC 8252 §7.3, §8.3) on hyper 1.x.
//!
//! It binds `127.0.0.1` on an ephemeral port and `[::1]` on the same port where it can, never
//! anything else; refuses non-loopback `Host` headers (DNS rebinding); answers only GET and HEAD;
//! caps the request head, the time to send it, each connection's life and the number of
//! connections, so that no client can stall another. It stops accepting, and frees the port, as
//! soon as its registry closes.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use tokio::sync::{watch, Notify};

use super::pages;
use super::registry::{Delivery, Registry};
use crate::error::{Error, Result};

/// hyper refuses smaller read buffers; it is also the cap on the request head (RFC 8252 needs a
/// few hundred bytes).
pub const MAX_HEAD_BYTES: usize = 8192;

/// Limits of one listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Connections served at once; at the cap the oldest is closed to admit a new one.
    pub max_connections: usize,
    /// Time a client has to send its whole request head (slowloris).
    pub header_read_timeout: Duration,
    /// Longest life of any connection.
    pub connection_timeout: Duration,
    /// Also listen on `[::1]` (same port) when the host has IPv6 loopback.
    pub bind_ipv6: bool,
    /// `listen(2)` backlog.
    pub backlog: u32,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            connection_timeout: Duration::from_secs(30),
            bind_ipv6: true,
            backlog: 1024,
        }
    }
}

/// A running listener. Dropping it does not stop it; closing its registry does.
pub struct CallbackServer {
    registry: Arc<Registry>,
    addresses: Vec<SocketAddr>,
    port: u16,
    stopped: watch::Receiver<bool>,
}

/// Held by every accept loop; when the last one ends (every socket closed), `stopped` turns true.
struct StopGuard(watch::Sender<bool>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

fn listen(addr: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = match addr.ip() {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(addr)?;
    socket.listen(backlog)
}

impl CallbackServer {
    /// Bind on loopback and start serving `registry` on `handle`'s runtime.
    pub fn bind(
        handle: &tokio::runtime::Handle,
        registry: Arc<Registry>,
        config: ListenerConfig,
    ) -> Result<Self> {
        let _entered = handle.enter();
        let bind_err =
            |e: std::io::Error| Error::Listener(format!("cannot bind the loopback listener: {e}"));
        let v4 =
            listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config.backlog).map_err(bind_err)?;
        let v4_addr = v4.local_addr().map_err(bind_err)?;
        let port = v4_addr.port();
        let mut addresses = vec![v4_addr];
        let mut v6_listener = None;
        if config.bind_ipv6 {
            // Where there is no IPv6 loopback, or another process holds the port there, we serve
            // IPv4 only: the redirect URI names 127.0.0.1 literally.
            if let Ok(v6) = listen(
                SocketAddr::from((Ipv6Addr::LOCALHOST, port)),
                config.backlog,
            ) {
                if let Ok(a) = v6.local_addr() {
                    addresses.push(a);
                    v6_listener = Some(v6);
                }
            }
        }
        let connections = Arc::new(ConnectionTable::new(config.max_connections));
        let (stop_tx, stopped) = watch::channel(false);
        // One task accepts on both sockets and keeps the deadlines: binding a listener (once per
        // login when logins do not overlap) spawns one task, not three.
        handle.spawn(run_listener(
            v4,
            v6_listener,
            Arc::clone(&registry),
            Arc::new(config),
            connections,
            StopGuard(stop_tx),
        ));
        Ok(Self {
            registry,
            addresses,
            port,
            stopped,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addresses
    }

    /// `http://127.0.0.1:PORT`, the form the reference client registers.
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Resolves once the listener has stopped accepting and closed every listening socket.
    pub fn stopped(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stopped = self.stopped.clone();
        async move {
            // An error means every guard is gone, which is also "stopped".
            let _ = stopped.wait_for(|s| *s).await;
        }
    }
}

async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accept on the loopback sockets and end flows at their deadlines (one timer for every flow, not
/// one per flow), until the registry closes; then every listening socket is dropped (the port is
/// free) and `_stop_guard` tells [`CallbackServer::stopped`].
async fn run_listener(
    v4: TcpListener,
    v6: Option<TcpListener>,
    registry: Arc<Registry>,
    config: Arc<ListenerConfig>,
    connections: Arc<ConnectionTable>,
    _stop_guard: StopGuard,
) {
    let mut closed = registry.closed_signal();
    loop {
        if *closed.borrow_and_update() {
            break;
        }
        let next = registry.expire_due(tokio::time::Instant::now().into_std());
        let wake = next.map_or_else(
            || tokio::time::Instant::now() + Duration::from_secs(3600),
            tokio::time::Instant::from_std,
        );
        let accepted = tokio::select! {
            _ = closed.changed() => continue,
            () = tokio::time::sleep_until(wake) => continue,
            () = registry.deadline_changed() => continue,
            accepted = v4.accept() => accepted,
            accepted = accept_on(v6.as_ref()) => accepted,
        };
        match accepted {
            Ok((stream, _peer)) => {
                let admitted = connections.admit();
                tokio::spawn(serve(
                    stream,
                    Arc::clone(&registry),
                    Arc::clone(&config),
                    Arc::clone(&connections),
                    admitted,
                ));
            }
            // EMFILE and friends: back off instead of spinning.
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The live connections, oldest first. At the cap the oldest one is closed to make room: a real
/// browser sends its request as soon as it connects and is answered within milliseconds, so the
/// oldest connections of a flood are the idle and slow ones. Refusing new connections instead
/// would let anyone who holds `max_connections` sockets stall the real redirect until they time
/// out.
struct ConnectionTable {
    max: usize,
    /// The next id, and the live connections (id, eviction signal) oldest first.
    inner: Mutex<(u64, LiveConnections)>,
}

type LiveConnections = VecDeque<(u64, Arc<Notify>)>;

impl ConnectionTable {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            inner: Mutex::new((0, VecDeque::new())),
        }
    }

    /// Admit a connection, evicting the oldest ones over the cap; returns its id and the signal
    /// that evicts it.
    fn admit(&self) -> (u64, Arc<Notify>) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (next, live) = &mut *inner;
        while live.len() >= self.max {
            if let Some((_, evict)) = live.pop_front() {
                evict.notify_one();
            }
        }
        let id = *next;
        *next += 1;
        let signal = Arc::new(Notify::new());
        live.push_back((id, Arc::clone(&signal)));
        (id, signal)
    }

    fn release(&self, id: u64) {
        let mut inner = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let live = &mut inner.1;
        if let Some(pos) = live.iter().position(|(i, _)| *i == id) {
            live.remove(pos);
        }
    }
}

async fn serve(
    stream: TcpStream,
    registry: Arc<Registry>,
    config: Arc<ListenerConfig>,
    connections: Arc<ConnectionTable>,
    (id, evicted): (u64, Arc<Notify>),
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req: Request<Incoming>| {
        let response = respond(&registry, &req);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = tokio::time::timeout(config.connection_timeout, connection) => {}
        () = evicted.notified() => {}
    }
    connections.release(id);
}

/// Whether a `Host` header names this machine's loopback (RFC 8252 §8.3; DNS rebinding).
pub fn is_loopback_host(host: &[u8]) -> bool {
    let Ok(host) = std::str::from_utf8(host) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, after)) if after.is_empty() || after.starts_with(':') => inner,
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return false,
            None => host,
        }
    };
    name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1" || name == "::1"
}

fn page(status: StatusCode, html: String, head: bool) -> Response<Full<Bytes>> {
    let body = if head {
        Bytes::new()
    } else {
        Bytes::from(html)
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn respond<B>(registry: &Registry, req: &Request<B>) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        let mut r = page(
            StatusCode::METHOD_NOT_ALLOWED,
            pages::bad_request("only GET is accepted here"),
            false,
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    // RFC 9112 §3.2: more than one Host is a 400; otherwise a loopback name could vouch for
    // a request that also names another host.
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return page(
            StatusCode::BAD_REQUEST,
            pages::bad_request("the request has more than one Host header"),
            head,
        );
    }
    match host {
        Some(host) if !is_loopback_host(host.as_bytes()) => {
            return page(
                StatusCode::FORBIDDEN,
                pages::bad_request("this listener only answers requests addressed to loopback"),
                head,
            );
        }
        None if req.version() != Version::HTTP_10 => {
            return page(
                StatusCode::BAD_REQUEST,
                pages::bad_request("the request has no Host header"),
                head,
            );
        }
        _ => {}
    }
    // RFC 9112 §3.2.2: an absolute-form target (`GET http://evil.example/?code=..`) names the
    // host itself, overriding `Host`; it must be loopback too, or a loopback `Host` could vouch
    // for a request addressed elsewhere (DNS rebinding through a forwarding proxy).
    if let Some(authority) = req.uri().authority() {
        if !is_loopback_host(authority.as_str().as_bytes()) {
            return page(
                StatusCode::FORBIDDEN,
                pages::bad_request("this listener only answers requests addressed to loopback"),
                head,
            );
        }
    }
    if req.uri().path() != "/" {
        return page(
            StatusCode::NOT_FOUND,
            pages::bad_request("unknown path"),
            head,
        );
    }
    if head {
        // Link checkers and prefetchers must never consume a code.
        return page(StatusCode::OK, String::new(), true);
    }
    match registry.deliver(req.uri().query().unwrap_or("")) {
        Delivery::Completed => page(StatusCode::OK, pages::success(), false),
        Delivery::Ended(Error::AuthorizationDenied {
            error, description, ..
        }) => page(
            StatusCode::OK,
            pages::failure(&error, description.as_deref()),
            false,
        ),
        Delivery::Ended(other) => page(
            StatusCode::OK,
            pages::failure("login_failed", Some(&other.to_string())),
            false,
        ),
        Delivery::Unknown => page(
            StatusCode::BAD_REQUEST,
            pages::bad_request(
                "this link belongs to no login in progress, or one that has finished",
            ),
            false,
        ),
        Delivery::Invalid(e) => page(
            StatusCode::BAD_REQUEST,
            pages::bad_request(&e.to_string()),
            false,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn connection_table_evicts_the_oldest() {
        let table = ConnectionTable::new(2);
        let (a, a_evicted) = table.admit();
        let (b, _) = table.admit();
        let (_c, _) = table.admit();
        // `a` got its eviction signal (a stored permit: its serve task wakes on it).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(Duration::from_secs(1), a_evicted.notified())
                .await
                .expect("the oldest connection is evicted");
        });
        table.release(a);
        table.release(b);
        assert_eq!(table.inner.lock().unwrap().1.len(), 1);
    }

    #[test]
    fn loopback_hosts() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]",
            "[::1]:9",
        ] {
            assert!(is_loopback_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "evil.com",
            "127.0.0.1.evil.com",
            "localhost.evil:80",
            "[::2]:1",
            "10.0.0.1",
            "",
            "[::1]x",
            "localhost:x",
        ] {
            assert!(!is_loopback_host(bad.as_bytes()), "{bad}");
        }
    }

    async fn get(port: u16, raw: &str) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        s.write_all(raw.as_bytes()).await.unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out).await;
        out
    }

    #[test]
    fn serves_and_frees_port() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let registry = Registry::new();
        let server = CallbackServer::bind(
            rt.handle(),
            Arc::clone(&registry),
            ListenerConfig::default(),
        )
        .unwrap();
        let port = server.port();
        let mut flow = registry.register("st".into(), None).unwrap();
        rt.block_on(async {
            let stray = get(
                port,
                "GET /?state=nope&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            )
            .await;
            assert!(stray.starts_with("HTTP/1.1 400"), "{stray}");
            let evil = get(
                port,
                "GET /?state=st&code=x HTTP/1.1\r\nHost: evil.example\r\n\r\n",
            )
            .await;
            assert!(evil.starts_with("HTTP/1.1 403"), "{evil}");
            let two_hosts = get(
                port,
                "GET /?state=st&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
            )
            .await;
            assert!(two_hosts.starts_with("HTTP/1.1 400"), "{two_hosts}");
            let absolute = get(
                port,
                "GET http://evil.example/?state=st&code=x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            )
            .await;
            assert!(absolute.starts_with("HTTP/1.1 403"), "{absolute}");
            let post = get(
                port,
                "POST /?state=st&code=x HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .await;
            assert!(post.starts_with("HTTP/1.1 405"), "{post}");
            let ok = get(
                port,
                "GET /?state=st&code=the-code HTTP/1.1\r\nHost: localhost\r\n\r\n",
            )
            .await;
            assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
            assert!(ok.contains("no-store") && ok.contains("no-referrer"));
            assert_eq!(flow.recv().await.unwrap().code, "the-code");
            drop(flow);
            // The registry closed with its last flow; the accept loop lets go of the port.
            for _ in 0..100 {
                if TcpStream::connect(("127.0.0.1", port)).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("port {port} still accepts connections");
        });
    }
}
