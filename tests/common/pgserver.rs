//! A throw-away PostgreSQL server for tests that stop or restart the warehouse: [`PgServer`]
//! runs `initdb` into a fresh directory (trust authentication, UTF8, C locale, UTC), listens on
//! 127.0.0.1 and a free port with its socket in that directory, and is stopped and removed on
//! drop. It never touches the shared server on 127.0.0.1:5432.
//!
//! [`PgServer::require_tls`] turns it into a server like a production warehouse: `ssl = on`
//! with a certificate of the test's CA, and TCP logins only over TLS with a password
//! (`hostssl ... scram-sha-256`); the test's own connections then use the Unix socket.
//!
//! The binaries come from the highest version under `/usr/lib/postgresql/<version>/bin`. Tests
//! run as root, which PostgreSQL refuses, so then every server program runs as the `postgres`
//! user through `runuser -u postgres --`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_postgres::{Client, NoTls};

/// How long starting (or restarting) the server may take before the test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Where Debian and Ubuntu install the PostgreSQL versions.
const PG_LIB: &str = "/usr/lib/postgresql";
/// The operating system user that owns the cluster when the tests run as root.
const PG_USER: &str = "postgres";
/// Settings appended to `postgresql.conf` (the port and socket directory are added per start).
const SETTINGS: &str = "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n\
    full_page_writes = off\ntimezone = 'UTC'\nlog_timezone = 'UTC'\nmax_connections = 100\n";

static DIR_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A private PostgreSQL server of one test (see the module documentation).
pub struct PgServer {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
    /// Set by [`PgServer::require_tls`]: TCP needs TLS and a password.
    tls_only: bool,
}

impl PgServer {
    /// Creates a cluster in a fresh directory and starts it on a free port, waiting (at most
    /// [`START_TIMEOUT`]) until it accepts connections; panics with its log otherwise.
    pub fn start() -> PgServer {
        let bin = bin_dir();
        let as_postgres = running_as_root();
        let dir = scratch_dir();
        if as_postgres {
            run_checked(Command::new("chown").arg(format!("{PG_USER}:{PG_USER}")).arg(&dir));
        }
        let mut server =
            PgServer { bin, dir, port: 0, as_postgres, running: false, tls_only: false };
        server.initdb();
        let mut last_error = String::new();
        // Another process may take the port between our probe and the postmaster's bind.
        for _ in 0..5 {
            server.port = free_port();
            match server.launch() {
                Ok(()) => return server,
                Err(e) => last_error = e,
            }
        }
        panic!("the private PostgreSQL did not start: {last_error}");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// The libpq URL of a database on this server (user `postgres`, no password).
    pub fn url(&self, dbname: &str) -> String {
        format!("postgres://{PG_USER}@127.0.0.1:{}/{dbname}", self.port)
    }

    /// Whether the server accepts connections right now (`pg_isready`).
    pub fn accepting(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-U", PG_USER, "-d", "postgres", "-t", "1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// `pg_ctl restart -m fast` (every session is terminated), then polls until the server
    /// accepts connections again and returns that instant; panics after [`START_TIMEOUT`].
    pub fn restart(&mut self) -> Instant {
        let started = Instant::now();
        // -W: pg_ctl waits for the old server to stop only; the start is polled here, so the
        // instant returned is within 50 ms of the server accepting connections.
        if let Err(e) = self.pg_ctl(&["restart", "-m", "fast", "-W"]) {
            panic!("the private PostgreSQL did not restart: {e}");
        }
        let left = START_TIMEOUT.saturating_sub(started.elapsed());
        match self.await_accepting(left) {
            Some(at) => at,
            None => panic!(
                "the private PostgreSQL did not accept connections within {START_TIMEOUT:?} \
                 of a restart; log:\n{}",
                self.log_tail()
            ),
        }
    }

    /// Stops the server (`pg_ctl stop -m immediate`); it can be started again with
    /// [`PgServer::resume`].
    pub fn stop(&mut self) {
        if self.running {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
            self.running = false;
        }
    }

    /// Starts a stopped server again on the same port, waiting until it accepts connections.
    pub fn resume(&mut self) {
        if let Err(e) = self.launch() {
            panic!("the private PostgreSQL did not start again: {e}");
        }
    }

    /// Serves TLS with `cert` (copied into the data directory, owned by the server's user)
    /// and accepts TCP logins only over TLS with a SCRAM password; restarts the server.
    pub fn require_tls(&mut self, cert: &super::certs::CertFiles) {
        use std::io::Write;
        let data = self.data_dir();
        for (from, to) in [(&cert.cert, "server.crt"), (&cert.key, "server.key")] {
            std::fs::copy(from, data.join(to)).unwrap_or_else(|e| panic!("copy {to}: {e}"));
        }
        run_checked(Command::new("chmod").arg("600").arg(data.join("server.key")));
        if self.as_postgres {
            let owner = format!("{PG_USER}:{PG_USER}");
            run_checked(Command::new("chown").arg(&owner).arg(data.join("server.crt")));
            run_checked(Command::new("chown").arg(&owner).arg(data.join("server.key")));
        }
        let hba = "local all all trust\n\
                   hostssl all all 127.0.0.1/32 scram-sha-256\n\
                   hostssl all all ::1/128 scram-sha-256\n";
        std::fs::write(data.join("pg_hba.conf"), hba).expect("write pg_hba.conf");
        let mut conf = File::options().append(true).open(data.join("postgresql.conf")).unwrap();
        let tls = "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                   password_encryption = 'scram-sha-256'\n";
        conf.write_all(tls.as_bytes()).expect("write postgresql.conf");
        self.tls_only = true;
        self.restart();
    }

    /// Logs every statement (`log_statement = 'all'`) to its log and restarts: the warehouse's
    /// own record of what it was asked to run.
    pub fn log_statements(&mut self) {
        use std::io::Write;
        let conf = self.data_dir().join("postgresql.conf");
        let mut f = File::options().append(true).open(conf).expect("open postgresql.conf");
        f.write_all(b"\nlog_statement = 'all'\nlog_line_prefix = '%m [%p] '\n")
            .expect("write postgresql.conf");
        self.restart();
    }

    /// The server log from byte `from` on (see [`PgServer::log_len`]).
    pub fn log_since(&self, from: u64) -> String {
        let bytes = std::fs::read(self.dir.join("server.log")).unwrap_or_default();
        String::from_utf8_lossy(bytes.get(from as usize..).unwrap_or_default()).into_owned()
    }

    /// The server log's length now.
    pub fn log_len(&self) -> u64 {
        std::fs::metadata(self.dir.join("server.log")).map(|m| m.len()).unwrap_or(0)
    }

    /// A client connected to a database of this server (its connection task spawned), over
    /// TCP, or over the Unix socket once [`PgServer::require_tls`] made TCP need TLS; panics
    /// when the server cannot be reached.
    pub async fn connect(&self, dbname: &str) -> Client {
        let host = match self.tls_only {
            true => self.dir.display().to_string(),
            false => "127.0.0.1".to_string(),
        };
        let conn = format!(
            "host={host} port={} user={PG_USER} dbname={dbname} connect_timeout=10",
            self.port
        );
        match tokio_postgres::connect(&conn, NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
            }
            Err(e) => panic!("the private PostgreSQL on port {} is not reachable: {e}", self.port),
        }
    }

    /// Creates a database (UTF8, C collation, time zone UTC) and returns a client connected
    /// to it.
    pub async fn fresh_database(&self, name: &str) -> Client {
        let admin = self.connect("postgres").await;
        // CREATE DATABASE cannot share a simple query (an implicit transaction) with another.
        for sql in [
            format!(
                "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' \
                 LC_CTYPE 'C'"
            ),
            format!("ALTER DATABASE {name} SET timezone = 'UTC'"),
        ] {
            if let Err(e) = admin.batch_execute(&sql).await {
                panic!("cannot create database {name} on the private PostgreSQL: {e:?}");
            }
        }
        self.connect(name).await
    }

    /// Runs `initdb` (trust authentication, UTF8, C locale) into `<dir>/data`.
    fn initdb(&self) {
        let log = self.dir.join("initdb.log");
        let mut cmd = self.server_command("initdb");
        cmd.arg("-D").arg(self.data_dir()).args([
            "-A",
            "trust",
            "-U",
            PG_USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        let status = with_log(&mut cmd, &log).status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "initdb failed ({other:?}) in {}:\n{}",
                self.dir.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            ),
        }
    }

    /// Appends the port and socket settings and starts the server; Err (with the log) when
    /// it does not accept connections within [`START_TIMEOUT`].
    fn launch(&mut self) -> Result<(), String> {
        self.append_settings()?;
        let started = Instant::now();
        // Marked first: a server that starts too slowly is still stopped on drop.
        self.running = true;
        self.pg_ctl(&["start", "-w"])?;
        let left = START_TIMEOUT.saturating_sub(started.elapsed());
        match self.await_accepting(left) {
            Some(_) => Ok(()),
            None => {
                self.stop();
                Err(format!(
                    "no connections accepted on port {} within {START_TIMEOUT:?}; log:\n{}",
                    self.port,
                    self.log_tail()
                ))
            }
        }
    }

    /// Adds the fixed settings, this port and the socket directory to `postgresql.conf`
    /// (later lines win, so a retry on another port appends again).
    fn append_settings(&self) -> Result<(), String> {
        use std::io::Write;
        let path = self.data_dir().join("postgresql.conf");
        let text = format!(
            "\n{SETTINGS}port = {}\nunix_socket_directories = '{}'\n",
            self.port,
            self.dir.display()
        );
        let mut file = File::options()
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// Runs `pg_ctl <args> -D <data> -l <log> -t 30` (`args` say `-w` or `-W`); Err with its
    /// output and the server log when it fails.
    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let out_log = self.dir.join("pg_ctl.log");
        let mut cmd = self.server_command("pg_ctl");
        cmd.args(args)
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .arg("-t")
            .arg(START_TIMEOUT.as_secs().to_string());
        match with_log(&mut cmd, &out_log).status() {
            Ok(s) if s.success() => Ok(()),
            other => Err(format!(
                "pg_ctl {} failed ({other:?}): {}\nserver log:\n{}",
                args.join(" "),
                std::fs::read_to_string(&out_log).unwrap_or_default(),
                self.log_tail()
            )),
        }
    }

    /// Polls `pg_isready` every 50 ms for at most `timeout`; the instant it first said yes.
    fn await_accepting(&self, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.accepting() {
                return Some(Instant::now());
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A command for a server program, run as `postgres` when the tests run as root, in the
    /// scratch directory (the postgres user may not enter the test's working directory).
    fn server_command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", PG_USER, "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir).env_remove("PGDATA").env_remove("PGPORT").env("TZ", "UTC");
        cmd
    }

    /// The last lines of the server log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `<PG_LIB>/<highest version>/bin`; panics when no version is installed.
fn bin_dir() -> PathBuf {
    let entries = std::fs::read_dir(PG_LIB)
        .unwrap_or_else(|e| panic!("cannot list {PG_LIB} ({e}): is PostgreSQL installed?"));
    let best = entries
        .flatten()
        .filter_map(|entry| {
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .max_by_key(|(version, _)| *version);
    match best {
        Some((_, bin)) => bin,
        None => panic!("no {PG_LIB}/<version>/bin/initdb found: is PostgreSQL installed?"),
    }
}

/// Whether this process runs as root (`id -u` prints 0).
fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// A fresh, short directory under the temp dir (the socket path must stay below 108 bytes).
fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = DIR_COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tidemark-pg-{}-{}-{n}",
        std::process::id(),
        nanos % 1_000_000_000
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A port nobody listens on right now (bind 127.0.0.1:0 and let it go).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local address of a bound listener").port()
}

/// Sends a command's standard output and error to `log` (never to pipes: a postmaster that
/// inherited them would keep them open).
fn with_log<'a>(cmd: &'a mut Command, log: &Path) -> &'a mut Command {
    let file = File::create(log).unwrap_or_else(|e| panic!("cannot create {}: {e}", log.display()));
    let err = file.try_clone().unwrap_or_else(|e| panic!("cannot clone a log handle: {e}"));
    cmd.stdin(Stdio::null()).stdout(file).stderr(err)
}

/// Runs a command and panics with its output when it fails.
fn run_checked(cmd: &mut Command) {
    match cmd.output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("cannot run {cmd:?}: {e}"),
    }
}
