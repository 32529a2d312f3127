//! A WebSocket echo server with async-tungstenite over `ringloop::compat::PollIo`; `--client URL`
//! makes it a client that sends messages and checks the echoes.
//!
//! ```text
//! cargo run -p ringloop-ecosystem --example websocket [-- ADDR]        # server, default 127.0.0.1:9001
//! cargo run -p ringloop-ecosystem --example websocket -- --client ws://127.0.0.1:9001/
//! ```

use std::process::ExitCode;

use async_tungstenite::tungstenite::{Error as WsError, Message};
use futures::StreamExt;
use ringloop::compat::PollIo;
use ringloop::net::{TcpListener, TcpStream};

/// Echoes text and binary messages until the client closes.
async fn echo(stream: TcpStream) -> Result<usize, WsError> {
    let mut ws = async_tungstenite::accept_async(PollIo::new(stream)).await?;
    let mut count = 0;
    while let Some(msg) = ws.next().await {
        match msg? {
            m @ (Message::Text(_) | Message::Binary(_)) => {
                ws.send(m).await?;
                count += 1;
            }
            Message::Close(_) => break,
            _ => {} // pings are answered by tungstenite itself
        }
    }
    Ok(count)
}

async fn serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("listening on {} (WebSocket)", listener.local_addr()?);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("websocket: accept failed: {e}");
                ringloop::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        ringloop::spawn(async move {
            match echo(stream).await {
                Ok(n) => eprintln!("{peer}: echoed {n} messages"),
                Err(e) => eprintln!("{peer}: {e}"),
            }
        });
    }
}

async fn client(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or("only ws:// URLs are supported")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let stream = TcpStream::connect(authority).await?;
    let (mut ws, _) = async_tungstenite::client_async(url, PollIo::new(stream)).await?;
    for i in 0..100 {
        let msg = if i % 2 == 0 {
            Message::text(format!("message {i}"))
        } else {
            Message::binary(vec![i as u8; i * 100])
        };
        ws.send(msg.clone()).await?;
        match ws.next().await {
            Some(Ok(reply)) if reply == msg => {}
            Some(Ok(reply)) => {
                return Err(format!("message {i}: the echo differs: {reply:?}").into());
            }
            Some(Err(e)) => return Err(e.into()),
            None => return Err(format!("the server closed before echoing message {i}").into()),
        }
    }
    ws.close(None).await?;
    println!("100 messages echoed intact");
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut lp = match ringloop::EventLoop::new() {
        Ok(lp) => lp,
        Err(e) => {
            eprintln!("websocket: cannot build an event loop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), Box<dyn std::error::Error>> = match args.as_slice() {
        [flag, url] if flag == "--client" => lp.run_until_complete(client(url)),
        [] => lp
            .run_until_complete(serve("127.0.0.1:9001"))
            .map_err(Into::into),
        [addr] if !addr.starts_with('-') => lp.run_until_complete(serve(addr)).map_err(Into::into),
        _ => Err("usage: websocket [ADDR] | websocket --client ws://HOST:PORT/".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("websocket: {e}");
            ExitCode::FAILURE
        }
    }
}
