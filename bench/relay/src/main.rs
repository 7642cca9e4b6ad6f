//! `bench-relay LISTEN_ADDR TARGET_ADDR`: accept TCP on LISTEN_ADDR, connect each socket to
//! TARGET_ADDR, and copy both ways (64 KiB buffers, TCP_NODELAY on both sides). Prints
//! `ready <addr>` on stdout once listening. Nothing else: this is what a free hop costs.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(target)) = (args.next(), args.next()) else {
        eprintln!("usage: bench-relay LISTEN_ADDR TARGET_ADDR");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse()?;
    let target: SocketAddr = target.parse()?;
    let listener = TcpListener::bind(listen).await?;
    println!("ready {}", listener.local_addr()?);
    let serve = async {
        loop {
            let (mut inbound, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("accept: {e}");
                    continue;
                }
            };
            tokio::spawn(async move {
                let _ = inbound.set_nodelay(true);
                let mut outbound = match TcpStream::connect(target).await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("connect {target}: {e}");
                        return;
                    }
                };
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional_with_sizes(
                    &mut inbound,
                    &mut outbound,
                    64 * 1024,
                    64 * 1024,
                )
                .await;
            });
        }
    };
    tokio::select! {
        () = serve => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
