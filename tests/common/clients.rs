//! Running real client programs (psql, Python, node, java) from tests: captured output, a
//! timeout, and a clear failure naming scripts/test.sh when a toolchain is missing.

use std::ffi::OsStr;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a client program may run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(180);
/// What to run when a client toolchain is missing.
pub const INSTALL_HINT: &str =
    "run scripts/test.sh, which installs the client toolchains (scripts/clients.sh)";

/// The repository root.
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A command whose libpq environment cannot redirect it (no PGHOST, PGPASSWORD, ~/.pgpass ...).
pub fn client_command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in [
        "PGHOST",
        "PGHOSTADDR",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "PGSERVICE",
        "PGSSLMODE",
        "PGOPTIONS",
        "PGTZ",
        "PGDATESTYLE",
        "PGCLIENTENCODING",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("TZ", "UTC");
    cmd
}

/// What a client process did.
pub struct ClientRun {
    /// Which client.
    pub what: String,
    /// Exit code.
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Killed after the timeout.
    pub timed_out: bool,
}

impl ClientRun {
    /// Exited 0 in time.
    pub fn success(&self) -> bool {
        !self.timed_out && self.code == Some(0)
    }

    /// How it ended, with its output.
    pub fn report(&self) -> String {
        let end = if self.timed_out {
            format!("was killed after {CLIENT_TIMEOUT:?}")
        } else {
            format!("exited with {:?}", self.code)
        };
        format!(
            "{} {end}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.what,
            super::truncate(&self.stdout, 20_000),
            super::truncate(&self.stderr, 10_000)
        )
    }
}

/// Asserts that a client program exited 0 and printed `<prefix>N checks passed`.
pub fn assert_client_passed(run: &ClientRun, prefix: &str) {
    let line = run.stdout.lines().find(|l| l.starts_with(prefix) && l.ends_with(" checks passed"));
    assert!(run.success() && line.is_some(), "{}", run.report());
    println!("{}", line.unwrap_or_default());
}

/// Runs a command on a blocking thread (stdin closed, output captured), killing it after
/// [`CLIENT_TIMEOUT`]. Panics, naming scripts/test.sh, when the program cannot be started.
pub async fn run_client(what: &str, cmd: Command) -> ClientRun {
    let what = what.to_string();
    match tokio::task::spawn_blocking(move || run_blocking(what, cmd)).await {
        Ok(run) => run,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the client runner was cancelled: {e}"),
    }
}

pub fn run_blocking(what: String, mut cmd: Command) -> ClientRun {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start {what} ({:?}): {e}: {INSTALL_HINT}", cmd.get_program()),
    };
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    };
    let collect = |h: Option<JoinHandle<String>>| h.map(|h| h.join().unwrap_or_default());
    ClientRun {
        what,
        code: status.and_then(|s| s.code()),
        stdout: collect(stdout).unwrap_or_default(),
        stderr: collect(stderr).unwrap_or_default(),
        timed_out,
    }
}

/// Reads a pipe to its end on its own thread.
pub fn drain<R: Read + Send + 'static>(mut pipe: R) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
