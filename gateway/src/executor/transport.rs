//! The connections of one service: a pooled HTTP/1 client, plain or TLS (rustls with the
//! webpki roots), that never has more than `services.<name>.max_connections` connections open.
//!
//! The cap is kept where connections are made: the connector takes a permit before it dials
//! and the connection holds the permit until it is closed. A cap on requests alone is not
//! enough, because the pool takes a connection back a moment after its response has been read,
//! and a request started in that moment dials a new one.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// An error of a connector, as the pool carries it.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle connection stays in the pool.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The pooled client of one service.
pub(super) type HttpClient = Client<CappedConnector<HttpsConnector<HttpConnector>>, Full<Bytes>>;

/// A client for `service` with at most `max_connections` connections open; dialing (TCP and
/// TLS) gives up after `connect_timeout`.
pub(super) fn client(
    service: &str,
    max_connections: usize,
    connect_timeout: Duration,
) -> Result<HttpClient, rustls::Error> {
    let mut http = HttpConnector::new();
    // `https://` URLs reach the TLS layer around this connector.
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let capped = CappedConnector {
        inner: https,
        permits: Arc::new(Semaphore::new(max_connections)),
        max_connections,
        wait: connect_timeout,
        service: service.into(),
    };
    Ok(Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_connections)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(capped))
}

/// A connector that dials only with a permit, and whose connections hold it until closed.
#[derive(Debug, Clone)]
pub(super) struct CappedConnector<C> {
    inner: C,
    permits: Arc<Semaphore>,
    max_connections: usize,
    /// How long a dial waits for a permit before it fails.
    wait: Duration,
    /// The service's name, for the error.
    service: Arc<str>,
}

/// No permit came free in time: every allowed connection stayed open and busy.
#[derive(Debug, thiserror::Error)]
#[error(
    "all {max_connections} connections to the service stayed busy for {}; \
     raise services.{service}.max_connections if it can take more",
    super::error::format_duration(*waited)
)]
struct Busy {
    service: Arc<str>,
    max_connections: usize,
    waited: Duration,
}

impl<C> tower::Service<Uri> for CappedConnector<C>
where
    C: tower::Service<Uri> + Clone + Send + 'static,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = CappedConnection<C::Response>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        // The clone that was polled ready makes the call; a fresh clone stays for the next.
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let permits = Arc::clone(&self.permits);
        let (max_connections, wait) = (self.max_connections, self.wait);
        let service = Arc::clone(&self.service);
        Box::pin(async move {
            let permit = match tokio::time::timeout(wait, permits.acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                // The semaphore is never closed; both arms mean no connection may be made.
                Ok(Err(_)) | Err(_) => {
                    return Err(Busy {
                        service,
                        max_connections,
                        waited: wait,
                    }
                    .into());
                }
            };
            let io = inner.call(uri).await.map_err(Into::into)?;
            Ok(CappedConnection {
                io,
                _permit: permit,
            })
        })
    }
}

/// A connection that returns its permit when it is dropped (closed).
#[derive(Debug)]
pub(super) struct CappedConnection<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for CappedConnection<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for CappedConnection<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for CappedConnection<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_names_the_wait_and_the_setting_to_raise() {
        let busy = Busy {
            service: Arc::from("home_assistant"),
            max_connections: 4,
            waited: Duration::from_secs(10),
        };
        assert_eq!(
            busy.to_string(),
            "all 4 connections to the service stayed busy for 10 s; \
             raise services.home_assistant.max_connections if it can take more"
        );
    }
}
