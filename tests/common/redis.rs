//! Throw-away Redis servers for tests: [`RedisServer`] is one `redis-server` on a free port that
//! a test can stop and restart; [`RedisCluster`] is a three-master Redis Cluster (the one named by
//! `TIDEMARK_TEST_REDIS_CLUSTER`, else started here). Neither ever touches the shared
//! 127.0.0.1:6379. A missing `redis-server` fails the test (scripts/test.sh installs it).
//!
//! With a [`RedisTls`], servers and clusters speak only TLS (`--port 0 --tls-port`, the cluster
//! bus too with `tls-cluster yes`) and know one ACL user (the default user is off), like an
//! ElastiCache replication group with in-transit encryption and RBAC.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seed URLs of an existing cluster, comma-separated (scripts/test.sh sets it).
pub const CLUSTER_ENV: &str = "TIDEMARK_TEST_REDIS_CLUSTER";

/// How long a starting server or cluster may take before the test fails.
const START_TIMEOUT: Duration = Duration::from_secs(30);

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// TLS-only Redis with one ACL user.
#[derive(Clone, Debug)]
pub struct RedisTls {
    /// The server certificate (for `127.0.0.1`).
    pub cert: super::certs::CertFiles,
    /// The CA that signed it.
    pub ca: PathBuf,
    /// The ACL user (all keys, channels and commands).
    pub user: String,
    /// Its password.
    pub password: String,
}

impl RedisTls {
    /// `redis-server` arguments: TLS on `port` only, the ACL user, the default user off.
    fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port"].map(String::from).to_vec();
        args.push(port.to_string());
        for (flag, path) in [
            ("--tls-cert-file", &self.cert.cert),
            ("--tls-key-file", &self.cert.key),
            ("--tls-ca-cert-file", &self.ca),
        ] {
            args.push(flag.to_string());
            args.push(path.display().to_string());
        }
        args.extend(
            ["--tls-auth-clients", "no", "--user", "default", "off", "--user"].map(String::from),
        );
        args.push(self.user.clone());
        args.extend(["on".to_string(), format!(">{}", self.password)]);
        args.extend(["~*", "&*", "+@all"].map(String::from));
        args
    }

    /// `redis-cli` arguments to reach a server of this kind.
    fn cli_args(&self) -> Vec<String> {
        let mut args: Vec<String> =
            vec!["--tls".into(), "--cacert".into(), self.ca.display().to_string()];
        args.extend([
            "--user".to_string(),
            self.user.clone(),
            "--pass".to_string(),
            self.password.clone(),
        ]);
        args.push("--no-auth-warning".into());
        args
    }
}

/// One command through `redis-cli` over TLS (None when the node does not answer).
fn cli(addr: &str, tls: &RedisTls, args: &[&str]) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let out = Command::new("redis-cli")
        .args(tls.cli_args())
        .args(["-h", host, "-p", port])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !text.starts_with("Could not connect")).then_some(text)
}

/// One command in plain RESP, or over TLS through `redis-cli` (reply text either way).
fn ask(addr: &str, tls: Option<&RedisTls>, args: &[&str]) -> Option<String> {
    match tls {
        None => resp(addr, args),
        Some(t) => cli(addr, t, args),
    }
}

/// A fresh directory for one server's or cluster's files (logs, nodes.conf).
pub fn scratch_dir(kind: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir()
        .join(format!("tidemark-test-{kind}-{}-{nanos}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A port nobody listens on right now (bind 127.0.0.1:0 and let it go).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Whether a port on 127.0.0.1 can be bound right now.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Starts `redis-server` on 127.0.0.1:`port` (no persistence) with `extra` arguments; its
/// output goes to `<dir>/redis-<port>.log`.
fn spawn_redis(port: u16, dir: &Path, extra: &[String]) -> Child {
    let log_path = dir.join(format!("redis-{port}.log"));
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log_path.display()));
    let log_err = log.try_clone().expect("clone log handle");
    Command::new("redis-server")
        .arg("--port")
        .arg(port.to_string())
        .args(["--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run redis-server ({e}): run scripts/test.sh, which installs Redis")
        })
}

/// Sends one command in RESP and returns the raw reply as text (None when the node does not
/// answer within a second).
fn resp(addr: &str, args: &[&str]) -> Option<String> {
    let sock = addr.to_socket_addrs().ok()?.next()?;
    let mut stream = TcpStream::connect_timeout(&sock, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.set_write_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    stream.write_all(request.as_bytes()).ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while !reply_complete(&reply) {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        reply.extend_from_slice(&chunk[..n]);
    }
    Some(String::from_utf8_lossy(&reply).into_owned())
}

/// Whether a buffer holds a whole simple reply (`+`, `-`, `:`) or a whole bulk string (`$`).
fn reply_complete(buf: &[u8]) -> bool {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return false;
    };
    if buf[0] != b'$' {
        return true;
    }
    let len: i64 = String::from_utf8_lossy(&buf[1..eol]).parse().unwrap_or(-1);
    len < 0 || buf.len() >= eol + 2 + len as usize + 2
}

/// Whether the server answering on `addr` is the process `pid` (and not some other server that
/// took the port first).
fn served_by(addr: &str, pid: u32, tls: Option<&RedisTls>) -> bool {
    ask(addr, tls, &["INFO", "server"]).is_some_and(|r| {
        r.contains(&format!("process_id:{pid}\r")) || r.contains(&format!("process_id:{pid}\n"))
    })
}

/// Waits (bounded) until the spawned server answers on its port; Err with its log when it
/// exits or stays silent (the child is then killed).
fn await_server(
    child: &mut Child,
    port: u16,
    dir: &Path,
    tls: Option<&RedisTls>,
) -> Result<(), String> {
    let addr = format!("127.0.0.1:{port}");
    let pid = child.id();
    let mut exited = false;
    let up = wait_until(START_TIMEOUT, || {
        if matches!(child.try_wait(), Ok(Some(_))) {
            exited = true;
            return true;
        }
        served_by(&addr, pid, tls)
    });
    if up && !exited {
        return Ok(());
    }
    kill(child);
    Err(format!(
        "redis-server on {addr} {}; log:\n{}",
        if exited { "exited" } else { "did not answer" },
        log_tail(dir, port)
    ))
}

fn cluster_ok(addr: &str, tls: Option<&RedisTls>) -> bool {
    ask(addr, tls, &["CLUSTER", "INFO"]).is_some_and(|r| r.contains("cluster_state:ok"))
}

/// `host:port` of a `redis://host:port[/db]` URL.
fn host_port(url: &str) -> String {
    let rest = url.trim().trim_start_matches("rediss://").trim_start_matches("redis://");
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last lines of a server log, for failure messages.
fn log_tail(dir: &Path, port: u16) -> String {
    let text = std::fs::read_to_string(dir.join(format!("redis-{port}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

// ---------------------------------------------------------------------------------------------
// One server
// ---------------------------------------------------------------------------------------------

/// A `redis-server` of this test alone, on a free port of 127.0.0.1, without persistence (a
/// restart comes back empty). Killed on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    tls: Option<RedisTls>,
}

impl RedisServer {
    /// Starts a server on a free port and waits (bounded) until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// A TLS-only server with `tls`'s ACL user (see the module documentation).
    pub fn start_tls(tls: &RedisTls) -> RedisServer {
        RedisServer::start_with(Some(tls.clone()))
    }

    fn start_with(tls: Option<RedisTls>) -> RedisServer {
        let mut server = RedisServer { port: 0, dir: scratch_dir("redis"), child: None, tls };
        let mut last_error = String::new();
        // Another process may take the port between our probe and redis-server's bind.
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("redis-server did not start: {last_error}");
    }

    /// Spawns the server on `self.port` and waits until it answers; Err (with the log) when it
    /// exits or stays silent.
    fn launch(&mut self) -> Result<(), String> {
        let extra = self.tls.as_ref().map(|t| t.server_args(self.port)).unwrap_or_default();
        let mut child = spawn_redis(self.port, &self.dir, &extra);
        await_server(&mut child, self.port, &self.dir, self.tls.as_ref())?;
        self.child = Some(child);
        Ok(())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://{}", self.addr())
    }

    /// Kills the server and waits for it to exit (its data is gone).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }

    /// Starts the server again on the same port (empty), waiting until it answers.
    pub fn restart(&mut self) {
        self.stop();
        if let Err(e) = self.launch() {
            panic!("redis-server did not restart: {e}");
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// A cluster
// ---------------------------------------------------------------------------------------------

/// A Redis Cluster of three masters: the one in `TIDEMARK_TEST_REDIS_CLUSTER` when set (shared:
/// tests keep to keys of a logical table name unique to their run), else three nodes started
/// here and killed on drop.
pub struct RedisCluster {
    seeds: Vec<String>,
    nodes: Vec<Child>,
    dir: Option<PathBuf>,
}

impl RedisCluster {
    /// Uses `TIDEMARK_TEST_REDIS_CLUSTER` or starts a cluster; either way waits (bounded) for
    /// `cluster_state:ok` on every seed.
    pub fn start() -> RedisCluster {
        let from_env: Vec<String> = std::env::var(CLUSTER_ENV)
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if from_env.is_empty() {
            return RedisCluster::start_own(None);
        }
        for seed in &from_env {
            let addr = host_port(seed);
            assert!(
                wait_until(START_TIMEOUT, || cluster_ok(&addr, None)),
                "{CLUSTER_ENV} names {seed}, which does not report cluster_state:ok \
                 (scripts/test.sh starts the cluster on 7101-7103)"
            );
        }
        RedisCluster { seeds: from_env, nodes: Vec::new(), dir: None }
    }

    /// A TLS-only cluster of three masters started here (`tls-cluster yes`: the bus too),
    /// with `tls`'s ACL user on every node.
    pub fn start_tls(tls: &RedisTls) -> RedisCluster {
        RedisCluster::start_own(Some(tls))
    }

    /// Three masters on free ports (the cluster bus port, +10000, free as well), joined with
    /// `redis-cli --cluster create`.
    fn start_own(tls: Option<&RedisTls>) -> RedisCluster {
        let dir = scratch_dir("redis-cluster");
        let mut ports: Vec<u16> = Vec::new();
        while ports.len() < 3 {
            let p = free_port();
            if p <= 55_535 && !ports.contains(&p) && port_is_free(p + 10_000) {
                ports.push(p);
            }
        }
        let mut cluster = RedisCluster { seeds: Vec::new(), nodes: Vec::new(), dir: Some(dir) };
        let dir = cluster.dir.clone().expect("cluster dir");
        for &p in &ports {
            let conf = dir.join(format!("nodes-{p}.conf"));
            let mut extra = vec![
                "--cluster-enabled".to_string(),
                "yes".to_string(),
                "--cluster-config-file".to_string(),
                conf.display().to_string(),
                "--cluster-node-timeout".to_string(),
                "5000".to_string(),
            ];
            if let Some(t) = tls {
                extra.extend(t.server_args(p));
                extra
                    .extend(["--tls-cluster", "yes", "--tls-replication", "yes"].map(String::from));
            }
            cluster.nodes.push(spawn_redis(p, &dir, &extra));
        }
        for (child, &p) in cluster.nodes.iter_mut().zip(&ports) {
            if let Err(e) = await_server(child, p, &dir, tls) {
                panic!("cluster node did not start: {e}");
            }
        }
        let hostports: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new("redis-cli")
            .args(tls.map(RedisTls::cli_args).unwrap_or_default())
            .arg("--cluster")
            .arg("create")
            .args(&hostports)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}): run scripts/test.sh, which installs Redis")
            });
        assert!(
            out.status.success(),
            "redis-cli --cluster create {} failed:\n{}\n{}",
            hostports.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for addr in &hostports {
            assert!(
                wait_until(START_TIMEOUT, || cluster_ok(addr, tls)),
                "cluster node {addr} never reported cluster_state:ok"
            );
        }
        let scheme = if tls.is_some() { "rediss" } else { "redis" };
        cluster.seeds = hostports.iter().map(|a| format!("{scheme}://{a}")).collect();
        cluster
    }

    /// The seed URLs (`redis://host:port`), at least one.
    pub fn seeds(&self) -> Vec<String> {
        self.seeds.clone()
    }

    /// Whether the nodes were started by this process (not taken from the environment).
    pub fn is_own(&self) -> bool {
        !self.nodes.is_empty()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            kill(child);
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
