//! A TCP forwarder: PostgreSQL listens on 127.0.0.1 only, which the workers' namespaces
//! cannot reach; the test listens on the bridge address and copies the bytes both ways to
//! PostgreSQL. A worker whose link is down loses its database connections like a host whose
//! network failed would.

use std::net::SocketAddr;

/// Forwards connections to `listen` (port 0 picks one) to `target` until dropped.
pub struct Forwarder {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Forwarder {
    pub fn start(listen: SocketAddr, target: SocketAddr) -> Forwarder {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(listen))
            .unwrap_or_else(|e| panic!("forwarder: binding {listen}: {e}"));
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
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
        Forwarder {
            addr,
            runtime: Some(runtime),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
