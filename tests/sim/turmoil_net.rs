//! The protocol over turmoil: every monitor is a turmoil host with a real (simulated) UDP
//! socket and turmoil's clock, running the same loop the daemon runs: receive -> `Node::receive`,
//! every 100 ms -> `Node::tick`, send what comes out.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use infra::monitor::protocol::{Event, Millis, Node, Output, StepRequest};
use turmoil::net::UdpSocket;

use crate::cluster::{Cluster, WALL};

const PORT: u16 = 7946;

#[derive(Default)]
pub struct Trace {
    pub steps: Vec<(Millis, String, StepRequest)>,
    pub events: Vec<(Millis, String, Event)>,
    pub datagrams: u64,
    pub bytes: u64,
}

fn now() -> Millis {
    turmoil::sim_elapsed()
        .expect("inside the simulation")
        .as_millis() as Millis
}

async fn monitor(cluster: Rc<Cluster>, i: usize, trace: Rc<RefCell<Trace>>) -> turmoil::Result {
    let socket = UdpSocket::bind(("0.0.0.0", PORT)).await?;
    let me = cluster.names[i].clone();
    let mut node = Node::new(cluster.config(i), cluster.keyring(i), now(), WALL + now())?;
    let mut buf = vec![0u8; 2048];
    let mut next_tick = tokio::time::Instant::now();
    loop {
        let outputs = tokio::select! {
            received = socket.recv_from(&mut buf) => {
                let (n, _) = received?;
                node.receive(now(), WALL + now(), &buf[..n])
            }
            _ = tokio::time::sleep_until(next_tick) => {
                next_tick += Duration::from_millis(100);
                node.tick(now(), WALL + now())
            }
        };
        for output in outputs {
            match output {
                Output::Send { to, bytes } => {
                    {
                        let mut t = trace.borrow_mut();
                        t.datagrams += 1;
                        t.bytes += bytes.len() as u64;
                    }
                    socket.send_to(&bytes, (to.as_str(), PORT)).await?;
                }
                Output::Step(step) => trace.borrow_mut().steps.push((now(), me.clone(), step)),
                Output::Event(event) => trace.borrow_mut().events.push((now(), me.clone(), event)),
            }
        }
    }
}

pub struct Run {
    pub sim: turmoil::Sim<'static>,
    pub cluster: Rc<Cluster>,
    pub trace: Rc<RefCell<Trace>>,
}

impl Run {
    /// `n` monitors, datagram latency 1-30 ms, `loss` of datagrams dropped.
    pub fn new(n: usize, seed: u64, loss: f64, duration: Duration) -> Run {
        let mut sim = turmoil::Builder::new()
            .rng_seed(seed)
            .simulation_duration(duration)
            .tick_duration(Duration::from_millis(5))
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(30))
            .fail_rate(loss)
            .repair_rate(1.0)
            .build();
        let cluster = Rc::new(Cluster::new(n, seed));
        let trace = Rc::new(RefCell::new(Trace::default()));
        for i in 0..n {
            let (c, t) = (cluster.clone(), trace.clone());
            sim.host(cluster.names[i].as_str(), move || {
                monitor(c.clone(), i, t.clone())
            });
        }
        Run {
            sim,
            cluster,
            trace,
        }
    }

    pub fn now(&self) -> Millis {
        self.sim.elapsed().as_millis() as Millis
    }

    /// Steps the simulation until `until` (simulated ms) or `stop` says so.
    pub fn run_until(
        &mut self,
        until: Millis,
        stop: impl Fn(&Trace) -> bool,
    ) -> Result<(), String> {
        while self.now() < until {
            if stop(&self.trace.borrow()) {
                return Ok(());
            }
            self.sim.step().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}
