//! The library entry point: [`Gateway::builder`] assembles a gateway from its configuration,
//! policy and manifest, [`GatewayBuilder::start`] runs it, and [`RunningGateway`] is the
//! handle tests, `agent-gate serve`, demo mode and approvers use.
//!
//! Start-up order: TLS material (refused without `gateway.tls` unless insecure) → store
//! (open, migrate, recover: requests found `executing` are marked failed) → services (health
//! checks only warn) → approvers (started with the [`ApprovalHandle`]) → pending approvals
//! resumed (timers re-armed from `expires_at`, approved-not-started requests executed) →
//! WebSocket listener → health endpoint → "ready".
//!
//! Shutdown ([`RunningGateway::shutdown`]): stop accepting; stop reading requests; let
//! in-flight executions finish (bounded by [`ServerLimits::shutdown_grace`]); keep pending
//! approvals pending for the next start; close agents with 1001 (going away); stop the
//! approvers; flush and close the store.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use agent_gate_gateway::app::Gateway;
//! use agent_gate_gateway::approvals::ChannelApprover;
//! use agent_gate_gateway::config::Config;
//! use agent_gate_gateway::policy::Policy;
//! use agent_gate_manifest::Manifest;
//!
//! let config = Config::load("config.yaml")?;
//! let policy = Policy::load("permissions.yaml")?;
//! let manifest = Manifest::load(&config.tools)?.manifest;
//! let approver = Arc::new(ChannelApprover::new("test"));
//! let gateway = Gateway::builder(config, policy, manifest)
//!     .approver(approver.clone())
//!     .start()
//!     .await?;
//! println!("agents connect to wss://{}", gateway.ws_addr());
//! gateway.shutdown().await?;
//! # Ok(())
//! # }
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use agent_gate_manifest::Manifest;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::approvals::{ApprovalHandle, Approver, ApproverError};
use crate::config::Config;
use crate::engine::Engine;
pub use crate::engine::{ReloadError, ReloadReport};
use crate::executor::{Executor, ExecutorError};
use crate::policy::Policy;
use crate::server::{self, ServerLimits, TlsError};
use crate::store::{Store, StoreError, StoreOptions};

/// The gateway could not start (or stop cleanly).
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No `gateway.tls` and not started insecure.
    #[error(
        "{file}: gateway.tls is not set; agents would send their tokens in plaintext. Add gateway.tls (cert and key PEM files), or start with --insecure for local testing only"
    )]
    TlsRequired {
        /// The config file.
        file: PathBuf,
    },
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The store could not be opened, recovered or closed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The services could not be set up.
    #[error(transparent)]
    Executor(#[from] ExecutorError),
    /// An approver failed to start.
    #[error(transparent)]
    Approver(#[from] ApproverError),
    /// The storage directory could not be created.
    #[error(
        "storage.path: cannot create the directory {path} for the database: {source}; create it or point storage.path elsewhere"
    )]
    StorageDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error(
        "cannot listen on {address} ({what}): {source}; is another process using the port? Change {key} in the config"
    )]
    Bind {
        /// Which listener (`WebSocket`, `health`).
        what: &'static str,
        /// The address.
        address: String,
        /// The config key to change.
        key: &'static str,
        /// Why.
        source: std::io::Error,
    },
}

/// Builds a gateway: see [`Gateway::builder`].
#[derive(Debug, Clone, Copy)]
pub struct Gateway;

impl Gateway {
    /// A builder for a gateway with this configuration, policy and manifest. The
    /// WebSocket and health listeners bind `gateway.host:port` and
    /// `gateway.health_host:health_port` (port 0: an ephemeral port).
    pub fn builder(config: Config, policy: Policy, manifest: Manifest) -> GatewayBuilder {
        GatewayBuilder {
            config,
            policy,
            manifest,
            approvers: Vec::new(),
            insecure: false,
            limits: ServerLimits::default(),
            health: true,
            http_routes: None,
        }
    }
}

/// Options of a gateway before it starts.
pub struct GatewayBuilder {
    config: Config,
    policy: Policy,
    manifest: Manifest,
    approvers: Vec<Arc<dyn Approver>>,
    insecure: bool,
    limits: ServerLimits,
    health: bool,
    http_routes: Option<axum::Router>,
}

impl std::fmt::Debug for GatewayBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayBuilder")
            .field("config", &self.config.file)
            .field("approvers", &self.approvers.len())
            .field("insecure", &self.insecure)
            .field("limits", &self.limits)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
}

impl GatewayBuilder {
    /// Adds an approver (Telegram, web, a [`crate::approvals::ChannelApprover`], ...).
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approvers.push(approver);
        self
    }

    /// Accept plaintext WebSocket connections when `gateway.tls` is not set (default
    /// `false`: refuse to start without TLS). Logs a loud warning.
    pub fn insecure(mut self, insecure: bool) -> Self {
        self.insecure = insecure;
        self
    }

    /// Server limits (message size, in-flight requests, auth timeout, shutdown grace).
    pub fn limits(mut self, limits: ServerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Whether to serve the HTTP side (`/healthz` and any [`GatewayBuilder::http_routes`]);
    /// default `true`.
    pub fn health_endpoint(mut self, enabled: bool) -> Self {
        self.health = enabled;
        self
    }

    /// Extra routes for the HTTP side (web approvals, metrics), merged next to `/healthz`.
    pub fn http_routes(mut self, routes: axum::Router) -> Self {
        self.http_routes = Some(match self.http_routes.take() {
            Some(existing) => existing.merge(routes),
            None => routes,
        });
        self
    }

    /// Starts the gateway (see the [module docs](self) for the order).
    pub async fn start(self) -> Result<RunningGateway, GatewayError> {
        let GatewayBuilder {
            config,
            policy,
            manifest,
            approvers,
            insecure,
            limits,
            health,
            http_routes,
        } = self;
        let tls = match &config.gateway.tls {
            Some(tls) => Some(server::load_tls_acceptor(&tls.cert, &tls.key)?),
            None if insecure => {
                tracing::warn!(
                    "INSECURE: gateway.tls is not set and --insecure was given; agents connect over plaintext ws:// and their tokens can be read on the network. Use this for local testing only."
                );
                None
            }
            None => {
                return Err(GatewayError::TlsRequired {
                    file: config.file.clone(),
                });
            }
        };

        Store::check_path(&config.storage.path)?;
        if let Some(dir) = config.storage.path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|source| GatewayError::StorageDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let store = Store::open_with(
            &config.storage.path,
            StoreOptions::new().sync(config.storage.sync),
        )
        .await?;
        let report = match store.recover_on_startup().await {
            Ok(report) => report,
            Err(error) => {
                let _ = store.close().await;
                return Err(error.into());
            }
        };
        tracing::info!(
            path = %config.storage.path.display(),
            interrupted = report.failed.len(),
            pending = report.pending.len(),
            "store opened"
        );

        let executor = match Executor::from_config(&config) {
            Ok(executor) => Arc::new(executor),
            Err(error) => {
                let _ = store.close().await;
                return Err(error.into());
            }
        };
        for (service, status) in executor.health_all().await {
            if status.is_healthy() {
                tracing::info!(service = %service, "service is reachable");
            } else {
                tracing::warn!(service = %service, %status, "service health check failed; starting anyway (calls fail until it is back)");
            }
        }

        // A `type: web` approver: the approval page, served on the HTTP side.
        let (mut approvers, mut http_routes) = (approvers, http_routes);
        let mut web_page = None;
        for web in config.approvers.iter().filter_map(|a| match a {
            crate::config::ApproverConfig::Web(web) => Some(web),
            _ => None,
        }) {
            let page = crate::messengers::web::WebApprover::from_config(web, store.clone());
            // The admin secret `agent-gate approve-link` presents to get a one-time link
            // (of the first page, if several are configured).
            if web_page.is_none() {
                let secret = crate::messengers::web::admin_secret_path(&config.storage.path);
                if let Err(error) = page.write_admin_secret(&secret) {
                    tracing::warn!(path = %secret.display(), %error, "cannot write the web approval page's admin secret; `agent-gate approve-link` will not work (the link printed at start-up does)");
                }
                web_page = Some(page.clone());
            }
            http_routes = Some(match http_routes.take() {
                Some(routes) => routes.merge(page.router()),
                None => page.router(),
            });
            approvers.push(Arc::new(page));
        }

        let config = Arc::new(config);
        let engine = Engine::new(
            Arc::clone(&config),
            policy,
            manifest,
            store.clone(),
            executor,
            approvers,
        );
        for approver in engine.approvers() {
            if let Err(error) = approver.start(engine.approval_handle()).await {
                let _ = store.close().await;
                return Err(error.into());
            }
        }
        if let Err(error) = engine.recover(report).await {
            let _ = store.close().await;
            return Err(error.into());
        }

        let open_files = server::raise_open_file_limit();
        let mcp = config.mcp.enabled.then(|| server::McpEndpoint {
            path: config.mcp.path.clone(),
            router: crate::mcp::router(Arc::clone(&engine), &config.mcp),
        });
        let front = server::Front::new(
            config.gateway.max_unauthenticated_connections,
            config.gateway.max_unauthenticated_per_address,
            config.gateway.max_connections_per_agent,
            mcp,
        );
        if let Some(open_files) = open_files {
            let cap =
                u64::try_from(config.gateway.max_unauthenticated_connections).unwrap_or(u64::MAX);
            if cap.saturating_mul(2) > open_files {
                tracing::warn!(
                    open_files,
                    max_unauthenticated_connections = cap,
                    "gateway.max_unauthenticated_connections is more than half the open-file limit: silent connections could still exhaust the file handles; lower it or raise the limit (ulimit -n)"
                );
            }
        }

        let ws_address = format!("{}:{}", config.gateway.host, config.gateway.port);
        let listener =
            match TcpListener::bind((config.gateway.host.as_str(), config.gateway.port)).await {
                Ok(listener) => listener,
                Err(source) => {
                    engine.begin_shutdown();
                    let _ = store.close().await;
                    return Err(GatewayError::Bind {
                        what: "WebSocket",
                        address: ws_address,
                        key: "gateway.host / gateway.port",
                        source,
                    });
                }
            };
        let ws_addr = server::local_addr(&listener).map_err(|source| GatewayError::Bind {
            what: "WebSocket",
            address: ws_address.clone(),
            key: "gateway.host / gateway.port",
            source,
        })?;

        let mut health_addr = None;
        let mut health_task = None;
        if health {
            let address = format!(
                "{}:{}",
                config.gateway.health_host, config.gateway.health_port
            );
            let bound = TcpListener::bind((
                config.gateway.health_host.as_str(),
                config.gateway.health_port,
            ))
            .await
            .and_then(|l| l.local_addr().map(|a| (l, a)));
            let (health_listener, addr) = match bound {
                Ok(pair) => pair,
                Err(source) => {
                    engine.begin_shutdown();
                    let _ = store.close().await;
                    return Err(GatewayError::Bind {
                        what: "health",
                        address,
                        key: "gateway.health_host / gateway.health_port",
                        source,
                    });
                }
            };
            let mut router = crate::health::router(Arc::clone(&engine), Arc::clone(&front))
                .merge(crate::metrics::router(
                    Arc::clone(&engine),
                    Arc::clone(&front),
                ))
                .merge(crate::admin::router(Arc::clone(&engine)));
            if let Some(extra) = http_routes {
                router = router.merge(extra);
            }
            let stop = engine.shutdown.clone();
            health_addr = Some(addr);
            health_task = Some(tokio::spawn(async move {
                // Connect info: the web approval page serves only loopback peers when it
                // has no token.
                let service = router.into_make_service_with_connect_info::<SocketAddr>();
                let served = axum::serve(health_listener, service)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::error!(%error, "the health endpoint failed");
                }
            }));
        }

        let accept_task = tokio::spawn(server::accept_loop(
            Arc::clone(&engine),
            listener,
            tls.clone(),
            limits,
            Arc::clone(&front),
        ));
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        match health_addr {
            Some(addr) => tracing::info!(
                websocket = %format!("{scheme}://{ws_addr}"),
                health = %format!("http://{addr}/healthz"),
                "ready"
            ),
            None => tracing::info!(websocket = %format!("{scheme}://{ws_addr}"), "ready"),
        }
        crate::allocator::release_free_memory();
        Ok(RunningGateway {
            engine,
            ws_addr,
            health_addr,
            web_page,
            tls: tls.is_some(),
            accept_task,
            health_task,
            limits,
            front,
        })
    }
}

/// A running gateway. Dropping it without [`RunningGateway::shutdown`] leaves the tasks
/// running until the runtime stops (as a crash would: nothing acknowledged is lost).
pub struct RunningGateway {
    engine: Arc<Engine>,
    ws_addr: SocketAddr,
    health_addr: Option<SocketAddr>,
    web_page: Option<crate::messengers::web::WebApprover>,
    tls: bool,
    accept_task: JoinHandle<()>,
    health_task: Option<JoinHandle<()>>,
    limits: ServerLimits,
    front: Arc<server::Front>,
}

impl std::fmt::Debug for RunningGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningGateway")
            .field("ws_addr", &self.ws_addr)
            .field("health_addr", &self.health_addr)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl RunningGateway {
    /// The address of the WebSocket listener.
    pub fn ws_addr(&self) -> SocketAddr {
        self.ws_addr
    }

    /// `ws://...` or `wss://...` URL of the WebSocket listener.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.ws_addr)
    }

    /// The address of the HTTP side (`/healthz`), if enabled.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health_addr
    }

    /// The web approval page (`type: web` in `approvers:`), if there is one.
    pub fn web_page(&self) -> Option<&crate::messengers::web::WebApprover> {
        self.web_page.as_ref()
    }

    /// A fresh one-time login link of the web approval page
    /// (`http://127.0.0.1:<port>/approvals/link/<token>`, valid once for 10 minutes), if
    /// there is a page and the HTTP side is on. A listener on every interface is named by
    /// its loopback address (a page without a token answers only loopback names). The link
    /// is a credential: print it for the approver, never log it.
    pub fn approval_link(&self) -> Option<String> {
        let page = self.web_page.as_ref()?;
        let addr = self.health_addr?;
        let host = match addr.ip() {
            std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
            std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V4(ip) => ip.to_string(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        };
        Some(format!(
            "http://{host}:{}{}",
            addr.port(),
            page.issue_link()
        ))
    }

    /// The handle approvers submit decisions through.
    pub fn approvals(&self) -> ApprovalHandle {
        self.engine.approval_handle()
    }

    /// The store (for inspection: audit pages, requests).
    pub fn store(&self) -> &Store {
        &self.engine.store
    }

    /// Agents connected now.
    pub fn connected_agents(&self) -> usize {
        self.front.connected_agents()
    }

    /// Authenticated agent connections now (an agent may hold several).
    pub fn agent_connections(&self) -> usize {
        self.front.connections()
    }

    /// Connections accepted that have not authenticated yet (capped by
    /// `gateway.max_unauthenticated_connections` and `max_unauthenticated_per_address`).
    pub fn unauthenticated_connections(&self) -> usize {
        self.front.unauthenticated()
    }

    /// Requests waiting for a human now.
    pub fn pending_approvals(&self) -> usize {
        self.engine.approvals.pending_count()
    }

    /// Re-reads the agents of `config.yaml` and `permissions.yaml` (from the paths the
    /// gateway was started with) and swaps them in when both are valid; what SIGHUP and
    /// `POST /admin/reload` do. `by` is recorded in the log and the audit (`SIGHUP`,
    /// `admin`, ...). On `Err` nothing changed, and `/healthz` shows the problems until a
    /// reload succeeds.
    pub async fn reload(&self, by: &str) -> Result<ReloadReport, ReloadError> {
        self.engine.reload(by).await
    }

    /// Resolves when shutdown has begun (e.g. another task called [`RunningGateway::shutdown`]).
    pub async fn stopped(&self) {
        self.engine.shutdown.cancelled().await;
    }

    /// Graceful shutdown (see the [module docs](self)).
    pub async fn shutdown(self) -> Result<(), GatewayError> {
        let engine = self.engine;
        tracing::info!("shutting down");
        engine.begin_shutdown();
        let _ = self.accept_task.await;
        engine.tasks.close();
        if tokio::time::timeout(self.limits.shutdown_grace, engine.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                grace = ?self.limits.shutdown_grace,
                "in-flight work did not finish in time; requests still executing will be marked failed at the next start"
            );
        }
        engine.close_connections.cancel();
        for approver in engine.approvers() {
            approver.stop().await;
        }
        if let Some(task) = self.health_task {
            let _ = task.await;
        }
        engine.store.close().await?;
        tracing::info!("stopped");
        Ok(())
    }
}
