//! `candor serve`'s supervisor, black-box: a worker killed under load is replaced on the
//! same sockets (no connection refused, the cause told to the new worker), a crash loop
//! backs off, SIGTERM drains without a restart, a worker that cannot start is not
//! restarted, a worker outlives no supervisor, and `--no-supervisor` runs one process.

use crate::harness::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn kill9(pid: u32) {
    let ok = Command::new("kill")
        .arg("-KILL")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success(), "kill -9 {pid}");
}

/// Waits (at most 10 s) for the supervisor to name a worker other than `old`.
fn next_worker(gw: &Gateway, old: u32) -> u32 {
    let mut pid = old;
    assert!(
        gw.eventually(|g| {
            pid = g.worker_pid();
            pid != old
        }),
        "no new worker after {old}: {:?}",
        gw.stdout.lock().unwrap()
    );
    pid
}

/// Waits (at most 10 s) until `pid` no longer runs.
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

/// What the load's clients saw.
#[derive(Default)]
struct Tally {
    /// Connections that could not be made (refused, or no answer to the SYN in 5 s).
    refused: Vec<String>,
    /// Requests answered 200: when their connection was made and when the answer ended.
    served: Vec<(Instant, Instant)>,
    /// Requests cut off (in flight on the killed worker) or answered otherwise.
    failed: usize,
}

/// Clients looping one request per connection, each connection new, until `stop`.
fn load(
    addr: SocketAddr,
    clients: usize,
    stop: &Arc<AtomicBool>,
) -> (Arc<Mutex<Tally>>, Vec<std::thread::JoinHandle<()>>) {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let handles = (0..clients)
        .map(|_| {
            let (tally, stop) = (tally.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: at most 30 s of requests whatever happens.
                let end = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                        Ok(s) => s,
                        Err(e) => {
                            tally.lock().unwrap().refused.push(e.to_string());
                            std::thread::sleep(Duration::from_millis(10));
                            continue;
                        }
                    };
                    let connected = Instant::now();
                    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                    let mut answer = Vec::new();
                    let ok = s
                        .write_all(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .and_then(|()| s.read_to_end(&mut answer))
                        .is_ok()
                        && answer.starts_with(b"HTTP/1.1 200");
                    let mut t = tally.lock().unwrap();
                    if ok {
                        t.served.push((connected, Instant::now()));
                    } else {
                        t.failed += 1;
                    }
                }
            })
        })
        .collect();
    (tally, handles)
}

#[test]
fn a_worker_killed_under_load_is_replaced_and_no_connection_is_refused() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/a", &up.url(), ""));
    let old = gw.worker_pid();
    assert_ne!(old, gw.child.id(), "the gateway runs in a worker process");

    let stop = Arc::new(AtomicBool::new(false));
    let (tally, clients) = load(gw.addr, 4, &stop);
    std::thread::sleep(Duration::from_millis(500));
    let killed = Instant::now();
    kill9(old);
    let restarting = gw.printed(&format!(
        "candor supervisor: worker pid {old} ended by signal 9 (SIGKILL); "
    ));
    assert_eq!(restarting, "restarting it now (restart 1 in a row)");
    let new = next_worker(&gw, old);
    // Served on a connection made after the kill.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let first = tally
            .lock()
            .unwrap()
            .served
            .iter()
            .filter(|(connected, _)| *connected > killed)
            .map(|(_, done)| *done)
            .min();
        if let Some(done) = first {
            break done;
        }
        assert!(Instant::now() < deadline, "nothing served after the kill");
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let t = tally.lock().unwrap();
    println!(
        "kill -9 of worker {old} under load: first new connection served {} ms after the kill, by worker {new}; {} requests served, {} cut off in flight",
        first.duration_since(killed).as_millis(),
        t.served.len(),
        t.failed
    );
    assert!(t.refused.is_empty(), "connections refused: {:?}", t.refused);
    assert_eq!(gw.get("/a").status, 200);

    // The new worker was told why, and says so in its log.
    let line = gw.log_line(&format!(
        "restarted by the supervisor: the previous worker (pid {old}) ended by signal 9 (SIGKILL)"
    ));
    assert!(line.contains("\"target\":\"candor::supervisor\""), "{line}");
    assert!(line.contains("\"restarts\":1"), "{line}");
    assert!(line.contains("\"signal_name\":\"SIGKILL\""), "{line}");
    // The new worker records it in the event log: api.restarted, with the cause.
    let dir = gw.dir.join("candor-data").join("events");
    let mut restarted = None;
    gw.eventually(|_| {
        restarted = crate::events::events_in(&dir)
            .into_iter()
            .find(|e| e["type"] == "api.restarted");
        restarted.is_some()
    });
    let e = restarted.expect("an api.restarted event");
    assert_eq!(e["severity"], "warning");
    assert_eq!(e["facts"]["signal_name"], "SIGKILL");
    assert_eq!(e["facts"]["previous_pid"], old);
    assert_eq!(e["facts"]["ended_by"], "signal 9 (SIGKILL)");
}

#[test]
fn a_crash_loop_backs_off() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route("/a", &up.url(), ""));
    let mut pid = gw.worker_pid();
    for (n, when) in [(1, "now"), (2, "in 0.5 s"), (3, "in 1 s")] {
        assert_eq!(gw.get("/a").status, 200, "worker {pid} serves");
        kill9(pid);
        let said = gw.printed(&format!(
            "candor supervisor: worker pid {pid} ended by signal 9 (SIGKILL); restarting it "
        ));
        assert!(
            said.starts_with(when) && said.contains(&format!("(restart {n} in a row")),
            "restart {n}: {said}"
        );
        if n > 1 {
            assert!(said.contains("crash-loop back-off"), "{said}");
        }
        pid = next_worker(&gw, pid);
    }
    assert_eq!(gw.get("/a").status, 200);
}

#[test]
fn sigterm_to_the_supervisor_drains_the_worker_and_nothing_restarts() {
    let slow = Upstream::start(Behaviour::Slow(Duration::from_millis(1000)));
    let mut gw = Gateway::start(&one_route("/slow", &slow.url(), "timeout = \"10s\""));
    let worker = gw.worker_pid();
    let addr = gw.addr;
    let in_flight = std::thread::spawn(move || request(addr, "GET", "/slow", &[], b""));
    std::thread::sleep(Duration::from_millis(400));
    gw.signal("TERM");
    assert_eq!(in_flight.join().unwrap().status, 200, "drained");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    assert!(!process_alive(worker), "the worker is gone");
    let said = gw.stdout.lock().unwrap().join("\n");
    assert!(!said.contains("restarting"), "{said}");
    assert_eq!(said.matches("candor supervisor: worker pid").count(), 1);
}

#[test]
fn a_worker_that_cannot_start_is_not_restarted() {
    let dir = temp_dir("no-start");
    // A configuration error: exit 2, the report, one worker.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[server\nlisten = 1\n").unwrap();
    let (code, out, err) = candor(&["serve", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("1 problem"), "{err}");
    assert_eq!(
        out.matches("candor supervisor: worker pid").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("restarting"), "{out}");

    // A configuration that loads, on a data directory that cannot be opened: the worker's
    // start fails (exit 1), and is not retried either.
    let file = dir.join("file");
    std::fs::write(&file, "not a directory").unwrap();
    let config = dir.join("candor.toml");
    std::fs::write(
        &config,
        format!("[server]\ndata_dir = \"{}\"\n", file.join("data").display()),
    )
    .unwrap();
    let (code, out, err) = candor(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("cannot open the data directory"), "{err}");
    assert_eq!(
        out.matches("candor supervisor: worker pid").count(),
        1,
        "{out}"
    );
    assert!(!out.contains("restarting"), "{out}");
}

#[test]
fn a_worker_does_not_outlive_its_supervisor() {
    let up = Upstream::start(Behaviour::Echo);
    let mut gw = Gateway::start(&one_route("/a", &up.url(), ""));
    let worker = gw.worker_pid();
    assert_eq!(gw.get("/a").status, 200);
    kill9(gw.child.id());
    let _ = gw.child.wait();
    assert!(
        gone(worker),
        "worker {worker} still runs without its supervisor"
    );
    assert!(
        gw.log()
            .contains("the supervisor is gone: this worker drains and exits"),
        "{}",
        gw.log()
    );
}

#[test]
fn no_supervisor_runs_one_process() {
    let up = Upstream::start(Behaviour::Echo);
    let mut gw = Gateway::start_with(
        &one_route("/a", &up.url(), ""),
        &["--no-supervisor"],
        |_| {},
    );
    assert_eq!(gw.get("/a").status, 200);
    let said = gw.stdout.lock().unwrap().join("\n");
    assert!(!said.contains("candor supervisor"), "{said}");
    assert!(workers_of(&gw.dir).is_empty(), "no worker process");
    gw.signal("TERM");
    let started = Instant::now();
    let status = loop {
        if let Some(s) = gw.child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_restarted_demo_serves_its_api_again_without_a_second_tour() {
    let gw = Gateway::start_demo();
    let client_id = gw.printed("client_id:");
    let secret_file = gw.dir.join("data").join("demo-client.secret");
    let old = gw.worker_pid();
    kill9(old);
    next_worker(&gw, old);
    // The demo API runs in the worker: the new one serves it where the configuration
    // points, and the token endpoint still knows the demo client.
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{client_id}:{}", secret.trim())
        )
    );
    let r = gw.request(
        "POST",
        "/oauth/token",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", &basic),
        ],
        b"grant_type=client_credentials",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Bearer {token}");
    let r = gw.request(
        "GET",
        "/v1/customers/acme/devices",
        &[("Authorization", &bearer)],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let said = gw.stdout.lock().unwrap().join("\n");
    assert_eq!(
        said.matches("candor demo: the gateway in front").count(),
        1,
        "{said}"
    );
    assert_eq!(said.matches("candor listening on").count(), 1, "{said}");
}
