//! An in-process gateway for the client tests: a real WebSocket server on
//! 127.0.0.1 whose connections the test drives frame by frame (scripted
//! replies, dropped connections, delayed answers). It can stop and resume
//! listening on the same port to simulate a gateway that is down.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use agent_gate::protocol::{Id, Request, Response, parse_request};
use futures_util::{SinkExt, StreamExt};
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "test-token-123";

type BoxedSink = std::pin::Pin<
    Box<dyn futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Send>,
>;

/// One accepted WebSocket connection, seen from the gateway's side.
pub struct Conn {
    sink: BoxedSink,
    frames: mpsc::UnboundedReceiver<Option<String>>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Conn {
    fn new<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> Conn
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sink, mut stream) = ws.split();
        let (tx, frames) = mpsc::unbounded_channel();
        // Read continuously so pings are answered even while the test waits.
        let reader = tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(t) => {
                        let _ = tx.send(Some(t.to_string()));
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            let _ = tx.send(None);
        });
        Conn {
            sink: Box::pin(sink),
            frames,
            reader,
        }
    }

    /// The next text frame, or `None` when the client closed the connection.
    pub async fn recv_text(&mut self) -> Option<String> {
        self.frames.recv().await.flatten()
    }

    /// The next text frame as a request (panics on anything else).
    pub async fn recv_request(&mut self) -> (String, Request) {
        let text = self.recv_text().await.expect("connection closed");
        let request = parse_request(&text).unwrap_or_else(|e| panic!("bad frame {text}: {e}"));
        (text, request)
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.sink
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(value.to_string()).await;
    }

    pub async fn respond(&mut self, response: Response) {
        self.send_text(response.to_json().unwrap()).await;
    }

    pub async fn result(&mut self, id: Id, result: Value) {
        self.respond(Response::success(id, result)).await;
    }

    /// Answer a tool_request with `{"status":"executed","data":data,"request_id":..}`.
    pub async fn executed(&mut self, request: &Request, data: Value) {
        let rid = request
            .params
            .get("request_id")
            .cloned()
            .unwrap_or(Value::Null);
        self.result(
            request.id.clone(),
            json!({"status": "executed", "data": data, "request_id": rid}),
        )
        .await;
    }

    /// Expect the auth frame, check the token, answer `authenticated` as agent-gate does
    /// (`request_ids: idempotent`). Returns the auth frame text.
    pub async fn authenticate(&mut self) -> String {
        self.authenticate_with(json!({"status": "authenticated", "request_ids": "idempotent"}))
            .await
    }

    /// Like [`Conn::authenticate`], answering as upstream's gateway (agentpass) does: no
    /// word on `request_id`, which it ignores.
    pub async fn authenticate_upstream(&mut self) -> String {
        self.authenticate_with(json!({"status": "authenticated"}))
            .await
    }

    async fn authenticate_with(&mut self, answer: Value) -> String {
        let (text, request) = self.recv_request().await;
        assert_eq!(request.method, "auth", "first frame must be auth: {text}");
        assert_eq!(request.params["token"], json!(TOKEN));
        self.result(request.id, answer).await;
        text
    }

    /// Close the WebSocket properly (Close frame).
    pub async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
    }

    /// Drop the TCP connection without a Close frame.
    pub fn kill(self) {
        drop(self);
    }
}

/// A gateway stand-in listening on 127.0.0.1.
pub struct TestGateway {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<Conn>,
    conns_tx: mpsc::UnboundedSender<Conn>,
    acceptor: Option<JoinHandle<()>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::start_with(None).await
    }

    /// A wss:// gateway with the fixture certificate.
    pub async fn start_tls() -> TestGateway {
        let certs: Vec<_> = rustls_pki_types::CertificateDer::pem_file_iter(fixture("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> TestGateway {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let mut gw = TestGateway {
            addr,
            conns,
            conns_tx,
            acceptor: None,
            tls,
        };
        gw.acceptor = Some(gw.spawn_acceptor(listener));
        gw
    }

    fn spawn_acceptor(&self, listener: TcpListener) -> JoinHandle<()> {
        let tx = self.conns_tx.clone();
        let tls = self.tls.clone();
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                tcp.set_nodelay(true).unwrap();
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let conn = match tls {
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(tcp).await else {
                                return;
                            };
                            let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
                                return;
                            };
                            Conn::new(ws)
                        }
                        None => {
                            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                                return;
                            };
                            Conn::new(ws)
                        }
                    };
                    let _ = tx.send(conn);
                });
            }
        })
    }

    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("wss://localhost:{}", self.addr.port()),
            None => format!("ws://{}", self.addr),
        }
    }

    /// The next accepted connection.
    pub async fn accept(&mut self) -> Conn {
        self.conns.recv().await.expect("acceptor stopped")
    }

    /// The next accepted connection, already authenticated.
    pub async fn accept_authenticated(&mut self) -> Conn {
        let mut conn = self.accept().await;
        conn.authenticate().await;
        conn
    }

    /// Accept a connection and authenticate it as upstream's gateway would.
    pub async fn accept_upstream(&mut self) -> Conn {
        let mut conn = self.accept().await;
        conn.authenticate_upstream().await;
        conn
    }

    /// Stop listening: new connections are refused.
    pub fn stop_listening(&mut self) {
        if let Some(a) = self.acceptor.take() {
            a.abort();
        }
    }

    /// Listen again on the same port.
    pub async fn resume_listening(&mut self) {
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.acceptor = Some(self.spawn_acceptor(listener));
    }
}

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A builder for a client of `gw` that ignores the environment, with an exact
/// (jitter-free) backoff schedule.
pub fn builder(gw: &TestGateway) -> agent_gate::ClientBuilder {
    agent_gate::AgentGateClient::builder()
        .ignore_env()
        .url(gw.url())
        .token(TOKEN)
        .backoff_jitter(0.0)
}

/// A connection whose server side no longer reads or writes (so pings go
/// unanswered) but stays open.
pub struct Frozen {
    _sink: BoxedSink,
}

impl Conn {
    pub fn freeze(mut self) -> Frozen {
        self.reader.abort();
        let sink = std::mem::replace(
            &mut self.sink,
            Box::pin(futures_util::sink::drain().sink_map_err(|never| match never {})),
        );
        Frozen { _sink: sink }
    }
}
