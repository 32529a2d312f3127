//! A TLS echo server and client with rustls (futures-rustls) over `ringloop::compat::PollIo`, and
//! a self-signed certificate for `localhost` made at start with rcgen.
//!
//! ```text
//! cargo run -p ringloop-ecosystem --example tls_echo                 # server and client, checked
//! cargo run -p ringloop-ecosystem --example tls_echo -- --server [ADDR]
//! openssl s_client -connect 127.0.0.1:PORT -quiet                     # then type lines
//! ```
//!
//! With no option it starts the server on an ephemeral port, connects a client that trusts only
//! that certificate, sends a few messages of different sizes (the largest 1 MiB) over one TLS
//! connection, checks every echo byte for byte, and exits 0. `--server` only serves (default
//! 127.0.0.1:8443) and writes the certificate to a PEM file whose path it prints.

use std::io;
use std::process::ExitCode;
use std::sync::Arc;

use futures::io::{AsyncReadExt, AsyncWriteExt};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use futures_rustls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};
use futures_rustls::{TlsAcceptor, TlsConnector};
use ringloop::compat::PollIo;
use ringloop::net::{TcpListener, TcpStream};

/// A self-signed certificate for `localhost` and its key.
struct Identity {
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    pem: String,
}

fn make_identity() -> Result<Identity, rcgen::Error> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])?;
    Ok(Identity {
        cert: certified.cert.der().clone(),
        key_der: certified.signing_key.serialize_der(),
        pem: certified.cert.pem(),
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(id: &Identity) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![id.cert.clone()],
            PrivateKeyDer::Pkcs8(id.key_der.clone().into()),
        )
}

fn client_config(id: &Identity) -> Result<ClientConfig, rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(id.cert.clone())?;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Echoes one TLS connection until the client closes it.
async fn echo(acceptor: TlsAcceptor, stream: TcpStream) -> io::Result<u64> {
    let mut tls = acceptor.accept(PollIo::new(stream)).await?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut total = 0;
    loop {
        let n = tls.read(&mut buf).await?;
        if n == 0 {
            tls.close().await?;
            return Ok(total);
        }
        tls.write_all(&buf[..n]).await?;
        tls.flush().await?;
        total += n as u64;
    }
}

async fn serve(listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let acceptor = acceptor.clone();
                ringloop::spawn(async move {
                    if let Err(e) = echo(acceptor, stream).await {
                        eprintln!("tls_echo: {peer}: {e}");
                    }
                });
            }
            Err(e) => {
                eprintln!("tls_echo: accept failed: {e}");
                ringloop::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Connects, sends messages, checks the echoes.
async fn client(addr: std::net::SocketAddr, config: ClientConfig) -> io::Result<()> {
    let connector = TlsConnector::from(Arc::new(config));
    let stream = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").expect("a valid DNS name");
    let mut tls = connector.connect(name, PollIo::new(stream)).await?;
    for (i, size) in [5usize, 1000, 16 * 1024 + 3, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let msg: Vec<u8> = (0..size).map(|j| (i * 7 + j % 251) as u8).collect();
        // The reply is read while the message is written: a 1 MiB echo would fill both
        // directions' buffers otherwise.
        let mut reply = vec![0u8; size];
        let (mut r, mut w) = tls.split();
        let write = async {
            w.write_all(&msg).await?;
            w.flush().await
        };
        let (wrote, read) = futures::join!(write, r.read_exact(&mut reply));
        wrote?;
        read?;
        tls = r.reunite(w).expect("halves of one stream");
        if reply != msg {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the echo of message {i} ({size} bytes) differs"),
            ));
        }
        println!("message {i}: {size} bytes echoed intact");
    }
    tls.close().await?;
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let server_only = match args.next().as_deref() {
        None => None,
        Some("--server") => Some(args.next().unwrap_or_else(|| "127.0.0.1:8443".to_owned())),
        Some(_) => {
            eprintln!("usage: tls_echo [--server [ADDR]]");
            return ExitCode::FAILURE;
        }
    };
    let id = match make_identity() {
        Ok(id) => id,
        Err(e) => {
            eprintln!("tls_echo: cannot make a certificate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (server_cfg, client_cfg) = match (server_config(&id), client_config(&id)) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("tls_echo: bad TLS configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    let acceptor = TlsAcceptor::from(Arc::new(server_cfg));
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("tls_echo: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let backend = lp.backend();
    let result = lp.run_until_complete(async move {
        let listener = TcpListener::bind(server_only.as_deref().unwrap_or("127.0.0.1:0"))?;
        let addr = listener.local_addr()?;
        eprintln!("listening on {addr} (TLS, backend: {backend})");
        if server_only.is_some() {
            let path = std::env::temp_dir().join("ringloop-tls-echo.pem");
            std::fs::write(&path, &id.pem)?;
            eprintln!("certificate for localhost in {}", path.display());
            serve(listener, acceptor).await;
            return Ok(());
        }
        let server = ringloop::spawn(serve(listener, acceptor));
        let res = client(addr, client_cfg).await;
        server.abort();
        res
    });
    lp.close();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tls_echo: {e}");
            ExitCode::FAILURE
        }
    }
}
