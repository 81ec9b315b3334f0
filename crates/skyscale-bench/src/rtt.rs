//! A reference for the cluster's extra hop: the round trip of a small TCP message, to an
//! echo server across the veth pair and bridge (a thread that entered the worker's network
//! namespace) next to one on loopback. What the API node adds beyond it is HTTP, framing
//! and scheduling, not the network.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use crate::stats::Summary;

/// Bytes each way per round trip (a small request; the hello-world answer is ~100 B).
const MESSAGE: usize = 64;

#[derive(Debug, Clone, Serialize)]
pub struct Rtt {
    pub round_trips: usize,
    pub message_bytes: usize,
    /// To an echo server on 127.0.0.1, µs.
    pub loopback_us: Option<Summary>,
    /// To an echo server in the worker's namespace, across the veth pair, µs.
    pub veth_us: Option<Summary>,
}

/// Echoes the messages of one connection until the client closes it, then returns (the
/// thread ends, and with it its hold on the namespace).
fn serve(listener: TcpListener) {
    let Ok((mut s, _)) = listener.accept() else {
        return;
    };
    drop(listener);
    let _ = s.set_nodelay(true);
    let mut buf = [0u8; MESSAGE];
    while s.read_exact(&mut buf).is_ok() {
        if s.write_all(&buf).is_err() {
            break;
        }
    }
}

/// Binds `addr` in the network namespace at `netns` (from a thread that entered it: the
/// socket stays in that namespace) or in this one, and serves echoes on that thread.
fn echo_server(addr: SocketAddr, netns: Option<PathBuf>) -> anyhow::Result<SocketAddr> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("rtt-echo".to_owned())
        .spawn(move || {
            let bound = (|| -> anyhow::Result<TcpListener> {
                if let Some(ns) = &netns {
                    let f = std::fs::File::open(ns)
                        .with_context(|| format!("opening {}", ns.display()))?;
                    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                        .with_context(|| format!("entering {}", ns.display()))?;
                }
                TcpListener::bind(addr).with_context(|| format!("binding {addr}"))
            })();
            match bound {
                Ok(l) => {
                    let _ = tx.send(l.local_addr().map_err(anyhow::Error::from));
                    serve(l);
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                }
            }
        })
        .context("spawning the echo thread")?;
    rx.recv().context("the echo thread died")?
}

fn round_trips(to: SocketAddr, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut s = TcpStream::connect(to).with_context(|| format!("connecting to {to}"))?;
    s.set_nodelay(true)?;
    let out = [7u8; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut us = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let t = Instant::now();
        s.write_all(&out)?;
        s.read_exact(&mut back)?;
        // The first tenth warms the connection and the caches up.
        if i >= n / 10 {
            us.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    Ok(us)
}

/// `n` round trips to an echo server in `netns` at `ns_addr` (port 0 picks one), then `n`
/// on loopback.
pub fn measure(netns: &Path, ns_addr: SocketAddr, n: usize) -> anyhow::Result<Rtt> {
    let veth = echo_server(ns_addr, Some(netns.to_path_buf()))?;
    let veth_us = round_trips(veth, n)?;
    let lo = echo_server(SocketAddr::from(([127, 0, 0, 1], 0)), None)?;
    let loopback_us = round_trips(lo, n)?;
    Ok(Rtt {
        round_trips: n,
        message_bytes: MESSAGE,
        loopback_us: Summary::of(&loopback_us),
        veth_us: Summary::of(&veth_us),
    })
}
