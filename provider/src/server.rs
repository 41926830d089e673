//! The go-plugin side of the plugin: magic cookie, protocol negotiation, the listener (unix
//! socket, or tcp where asked), AutoMTLS, the handshake line, and serving until Terraform
//! says stop.

use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::Connected;

use crate::grpc::NovacronProvider;
use crate::plugin_services::{Broker, Controller, Stdio};
use crate::proto::plugin::grpc_broker_server::GrpcBrokerServer;
use crate::proto::plugin::grpc_controller_server::GrpcControllerServer;
use crate::proto::plugin::grpc_stdio_server::GrpcStdioServer;
use crate::proto::tfplugin5::provider_server::ProviderServer;
use crate::tls::auto_mtls;

/// The cookie Terraform sets for its provider plugins.
pub const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
/// Its value.
pub const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// The only plugin protocol version this provider speaks.
pub const PROTOCOL_VERSION: u32 = 5;

/// Why the plugin will not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Started by a person rather than by Terraform.
    #[error(
        "This binary is a plugin. These are not meant to be executed directly.\n\
         Terraform starts it: install it through a CLI config (dev_overrides or a filesystem mirror) and run terraform.\n\
         To debug it under a debugger, run it with --debug and follow the instructions it prints."
    )]
    NotStartedByTerraform,
    /// Terraform asked for protocol versions we do not speak.
    #[error("Terraform asked for plugin protocol version(s) {0}, but terraform-provider-novacron speaks only version 5 (Terraform 0.12 and later)")]
    Protocol(String),
    /// The listener could not be created.
    #[error("cannot listen: {0}")]
    Listen(String),
    /// The TLS setup failed.
    #[error("cannot set up AutoMTLS: {0}")]
    Tls(String),
}

trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// One accepted connection (plain or TLS, unix or tcp).
struct Conn(Box<dyn Io>);

impl Connected for Conn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

enum Listener {
    Unix(tokio::net::UnixListener, PathBuf),
    Tcp(tokio::net::TcpListener),
}

impl Listener {
    async fn accept(&self) -> std::io::Result<Box<dyn Io>> {
        Ok(match self {
            Listener::Unix(l, _) => Box::new(l.accept().await?.0),
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Box::new(s)
            }
        })
    }

    fn network_and_address(&self) -> (&'static str, String) {
        match self {
            Listener::Unix(_, p) => ("unix", p.display().to_string()),
            Listener::Tcp(l) => ("tcp", l.local_addr().map(|a| a.to_string()).unwrap_or_default()),
        }
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn listen() -> Result<Listener, StartError> {
    let listen_err = |e: std::io::Error| StartError::Listen(e.to_string());
    if let (Some(min), Some(max)) = (env("PLUGIN_MIN_PORT"), env("PLUGIN_MAX_PORT")) {
        let (min, max): (u16, u16) = match (min.parse(), max.parse()) {
            (Ok(a), Ok(b)) if a <= b => (a, b),
            _ => return Err(StartError::Listen(format!("PLUGIN_MIN_PORT/PLUGIN_MAX_PORT {min}/{max} are not a port range"))),
        };
        for port in min..=max {
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                l.set_nonblocking(true).map_err(listen_err)?;
                return Ok(Listener::Tcp(tokio::net::TcpListener::from_std(l).map_err(listen_err)?));
            }
        }
        return Err(StartError::Listen(format!("no free port between {min} and {max}")));
    }
    let base = env("PLUGIN_UNIX_SOCKET_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("novacron-plugin-{}-{:08x}", std::process::id(), socket_suffix()));
    std::fs::create_dir_all(&dir).map_err(listen_err)?;
    let path = dir.join("plugin.sock");
    Ok(Listener::Unix(tokio::net::UnixListener::bind(&path).map_err(listen_err)?, path))
}

fn socket_suffix() -> u32 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Checks what Terraform asked for before anything is opened.
pub fn check_launch(debug: bool) -> Result<(), StartError> {
    if debug {
        return Ok(());
    }
    if env(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
        return Err(StartError::NotStartedByTerraform);
    }
    if let Some(versions) = env("PLUGIN_PROTOCOL_VERSIONS")
        && !versions.split(',').any(|v| v.trim() == PROTOCOL_VERSION.to_string())
    {
        return Err(StartError::Protocol(versions));
    }
    Ok(())
}

/// Serves the plugin until Terraform calls Shutdown (or kills the process, as go-plugin
/// does once it is done).
pub async fn serve(debug: bool) -> anyhow::Result<()> {
    let listener = listen()?;
    let tls = match (debug, env("PLUGIN_CLIENT_CERT")) {
        (false, Some(pem)) => Some(auto_mtls(&pem).map_err(|e| StartError::Tls(e.to_string()))?),
        _ => None,
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("plugin", tonic_health::ServingStatus::Serving).await;
    let (shutdown_tx, mut shutdown_rx) = mpsc::channel::<()>(1);
    let router = Server::builder()
        .add_service(health_service)
        .add_service(GrpcControllerServer::new(Controller { shutdown: shutdown_tx }))
        .add_service(GrpcStdioServer::new(Stdio))
        .add_service(GrpcBrokerServer::new(Broker))
        .add_service(
            ProviderServer::new(NovacronProvider::default()).max_decoding_message_size(256 * 1024 * 1024).max_encoding_message_size(256 * 1024 * 1024),
        );

    let (network, address) = listener.network_and_address();
    let (conn_tx, conn_rx) = mpsc::channel::<std::io::Result<Conn>>(16);
    let acceptor = tls.as_ref().map(|t| t.acceptor.clone());
    let accept_loop = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            };
            let tx = conn_tx.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let conn = match acceptor {
                    None => Ok(Conn(stream)),
                    Some(acceptor) => tls_accept(&acceptor, stream).await,
                };
                match conn {
                    Ok(c) => {
                        let _ = tx.send(Ok(c)).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "TLS handshake with Terraform failed"),
                }
            });
        }
    });

    let cert = tls.as_ref().map(|t| t.cert_line.as_str()).unwrap_or("");
    if debug {
        let reattach = serde_json::json!({
            "registry.terraform.io/novacron/novacron": {
                "Protocol": "grpc", "ProtocolVersion": PROTOCOL_VERSION, "Pid": std::process::id(), "Test": true,
                "Addr": {"Network": network, "String": address},
            }
        });
        println!(
            "Provider started. To attach Terraform CLI, set the TF_REATTACH_PROVIDERS environment variable with the following:\n\n\tTF_REATTACH_PROVIDERS='{reattach}'\n"
        );
    } else {
        println!("1|{PROTOCOL_VERSION}|{network}|{address}|grpc|{cert}");
    }
    std::io::stdout().flush()?;

    let stopped = async move {
        let _ = shutdown_rx.recv().await;
    };
    router.serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), stopped).await?;
    accept_loop.abort();
    if network == "unix"
        && let Some(dir) = PathBuf::from(&address).parent()
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

async fn tls_accept(acceptor: &openssl::ssl::SslAcceptor, stream: Box<dyn Io>) -> anyhow::Result<Conn> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context())?;
    let mut tls = tokio_openssl::SslStream::new(ssl, stream)?;
    Pin::new(&mut tls).accept().await?;
    Ok(Conn(Box::new(tls)))
}
