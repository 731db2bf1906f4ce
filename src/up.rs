//! `paxos up`: the whole cluster as separate processes on this machine.

use paxos::cluster::Layout;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Options of `paxos up`.
#[derive(clap::Args, Debug)]
pub struct UpOptions {
    /// Where every node keeps its data (one subdirectory per node).
    #[arg(long, default_value = "paxos-data")]
    data_dir: PathBuf,
    /// The client API's port.
    #[arg(long, default_value_t = 8000)]
    client_port: u16,
    /// Acceptors listen on BASE+1.., proposers on BASE+101.., learners on BASE+201...
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    #[command(flatten)]
    counts: paxos::cluster::RoleCounts,
    /// HEARTBEAT_INTERVAL of the proposers, in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    /// LEADER_TIMEOUT of the proposers, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    leader_timeout: u64,
    /// Set by the global `--insecure`: the nodes talk in plaintext.
    #[arg(skip)]
    pub insecure: bool,
}

struct Running {
    name: String,
    child: Child,
}

/// Starts the cluster and waits for Ctrl-C or SIGTERM.
pub fn run(options: UpOptions) -> ExitCode {
    if options.counts.acceptors == 0
        || options.counts.proposers == 0
        || options.counts.learners == 0
    {
        eprintln!("paxos up: --acceptors, --proposers and --learners must each be at least 1");
        return ExitCode::from(2);
    }
    let layout = Layout {
        acceptors: options.counts.acceptors,
        proposers: options.counts.proposers,
        learners: options.counts.learners,
        base_port: options.base_port,
        client_port: options.client_port,
        data_dir: options.data_dir.clone(),
        heartbeat_interval_milliseconds: options.heartbeat_interval,
        leader_timeout_milliseconds: options.leader_timeout,
        tls: !options.insecure,
    };
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => {
            eprintln!("paxos up: cannot find its own executable: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = std::fs::create_dir_all(&options.data_dir) {
        eprintln!(
            "paxos up: cannot create {}: {error}",
            options.data_dir.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(error) = layout.ensure_certificates() {
        eprintln!(
            "paxos up: cannot write the cluster's certificates in {}: {error:#}",
            layout.certificates_dir().display()
        );
        return ExitCode::FAILURE;
    }
    let nodes = layout.nodes();
    let mut running = Vec::new();
    for node in &nodes {
        let mut command = node.command(&program);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        // If `paxos up` itself dies, even by kill -9, its nodes go with it.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        match command.spawn() {
            Ok(mut child) => {
                prefix_output(&node.name, child.stdout.take(), child.stderr.take());
                running.push(Running {
                    name: node.name.clone(),
                    child,
                });
            }
            Err(error) => {
                eprintln!("paxos up: cannot start {}: {error}", node.name);
                stop_all(&mut running);
                return ExitCode::FAILURE;
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    for node in &nodes {
        let address: SocketAddr = node.address().parse().expect("a loopback address");
        while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
            if Instant::now() > deadline || exited(&mut running).is_some() {
                let culprit = exited(&mut running).unwrap_or_else(|| node.name.clone());
                eprintln!("paxos up: {culprit} did not start (see its log above); stopping");
                stop_all(&mut running);
                return ExitCode::FAILURE;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nPaxos cluster up (data in {}):",
        options.data_dir.display()
    );
    for node in &nodes {
        let _ = writeln!(out, "  {:<10} {}", node.name, node.address());
    }
    if layout.tls {
        let _ = writeln!(
            out,
            "Nodes talk over mutual TLS (CA and certificates in {}).",
            layout.certificates_dir().display()
        );
    } else {
        let _ = writeln!(
            out,
            "WARNING: --insecure: nodes talk in plaintext and trust every peer's Hello."
        );
    }
    let _ = writeln!(
        out,
        "Client API: http://127.0.0.1:{}  (try: curl -s localhost:{}/status)\nWeb console: http://127.0.0.1:{}/    CLI: paxos status --endpoint http://127.0.0.1:{}\nCtrl-C stops the cluster.",
        options.client_port, options.client_port, options.client_port, options.client_port
    );
    drop(out);
    let code = wait_for_signal_or_exit(&mut running);
    stop_all(&mut running);
    code
}

fn prefix_output(
    name: &str,
    stdout: Option<std::process::ChildStdout>,
    stderr: Option<std::process::ChildStderr>,
) {
    fn pump(name: String, stream: impl std::io::Read + Send + 'static) {
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("{name:>10} | {line}");
            }
        });
    }
    if let Some(stdout) = stdout {
        pump(name.to_string(), stdout);
    }
    if let Some(stderr) = stderr {
        pump(name.to_string(), stderr);
    }
}

fn exited(running: &mut [Running]) -> Option<String> {
    running
        .iter_mut()
        .find_map(|node| match node.child.try_wait() {
            Ok(Some(_)) => Some(node.name.clone()),
            _ => None,
        })
}

static SIGNALLED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    SIGNALLED.store(signal, std::sync::atomic::Ordering::SeqCst);
}

fn wait_for_signal_or_exit(running: &mut Vec<Running>) -> ExitCode {
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    loop {
        let signal = SIGNALLED.load(std::sync::atomic::Ordering::SeqCst);
        if signal != 0 {
            eprintln!("paxos up: signal {signal} received, stopping the cluster");
            return ExitCode::SUCCESS;
        }
        running.retain_mut(|node| match node.child.try_wait() {
            Ok(Some(status)) => {
                eprintln!(
                    "paxos up: {} exited ({status}); the others keep running",
                    node.name
                );
                false
            }
            _ => true,
        });
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop_all(running: &mut Vec<Running>) {
    for node in running.iter() {
        unsafe {
            libc::kill(node.child.id() as libc::pid_t, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    for node in running.iter_mut() {
        while matches!(node.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    running.clear();
}
