//! A TCP forwarder: PostgreSQL listens on 127.0.0.1 only, which the namespaces cannot
//! reach; the forwarder listens on the bridge address and copies the bytes both ways to
//! PostgreSQL, on a runtime of its own. A namespace whose link is down loses its database
//! connections as a host whose network failed would.

use std::net::SocketAddr;

use anyhow::Context;

/// Forwards connections to `listen` (port 0 picks one) to `target` until dropped.
pub struct Forwarder {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Forwarder {
    pub fn start(listen: SocketAddr, target: SocketAddr) -> anyhow::Result<Forwarder> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("testnet-forward")
            .enable_all()
            .build()
            .context("forwarder: building its runtime")?;
        // Bound here (a std listener), not with the runtime's `block_on`: callers may be
        // inside a runtime of their own (the benchmark), where `block_on` panics.
        let std_listener = std::net::TcpListener::bind(listen)
            .with_context(|| format!("forwarder: binding {listen}"))?;
        std_listener
            .set_nonblocking(true)
            .context("forwarder: a non-blocking listener")?;
        let addr = std_listener
            .local_addr()
            .context("forwarder: its listening address")?;
        runtime.spawn(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("skyscale-testnet: forwarder on {addr}: {e}");
                    return;
                }
            };
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        Ok(Forwarder {
            addr,
            runtime: Some(runtime),
        })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
