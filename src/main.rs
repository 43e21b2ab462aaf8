//! The `tidemark` command: serve | setup | explain | check | demo.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tidemark::config::Config;
use tidemark::error::Result;

/// tidemark: the serving layer of a Lambda Architecture.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the configured listeners until SIGINT/SIGTERM.
    Serve {
        /// Config file.
        #[arg(long, short)]
        config: String,
    },
    /// Create the watermark table and the logical tables' union views (idempotent).
    Setup {
        /// Config file.
        #[arg(long, short)]
        config: String,
    },
    /// Print the lambda plan of a query.
    Explain {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// The SQL to explain.
        sql: String,
    },
    /// Validate the config and check warehouse connectivity and the logical tables.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: String,
        /// Also run the first-hour probes of the warehouse's semantics (docs/redshift.md).
        #[arg(long)]
        probe: bool,
    },
    /// Print a SCRAM-SHA-256 verifier for a password (for `[[users]] password_hash`).
    HashPassword {
        /// The password (read from standard input when omitted).
        password: Option<String>,
        /// Print PostgreSQL's MD5 form for this user instead (MD5 login, for clients without
        /// SCRAM such as the Redshift JDBC driver; weaker than SCRAM: use with TLS).
        #[arg(long, value_name = "USER")]
        md5: Option<String>,
    },
    /// Print a new random REST API key and the `sha256:` hash to put in `[[users]] api_keys`.
    NewApiKey,
    /// Create a demo database with live data and serve it.
    Demo {
        /// Admin connection used to create the demo database.
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
        admin_url: String,
        /// REST listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// PostgreSQL wire protocol listen address.
        #[arg(long, default_value = "127.0.0.1:5439")]
        pg: String,
        /// Arrow Flight SQL listen address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        flight: String,
        /// Historic events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// New events per second.
        #[arg(long, default_value_t = 200)]
        rate: u64,
        /// Seconds between watermark advances.
        #[arg(long, default_value_t = 60)]
        advance_every: u64,
        /// Drop and recreate the demo database.
        #[arg(long)]
        reset: bool,
        /// Name of the demo database.
        #[arg(long, default_value = "tidemark_demo")]
        database: String,
        /// A TOML file of `[[users]]` tables (as in the configuration): every frontend and
        /// the console then ask for credentials.
        #[arg(long, value_name = "FILE")]
        users: Option<String>,
    },
}

/// mimalloc instead of glibc malloc: the hot paths allocate many short-lived buffers, and
/// glibc's free lists (malloc_consolidate) showed up in profiles of cached REST answers.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // rustls with ring for every library that asks the process for its provider
    tidemark::exec::tls::install_provider();
    // TIDEMARK_LOG_FORMAT=json writes one JSON object per line (query log lines included).
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("TIDEMARK_LOG_FORMAT").is_ok_and(|v| v == "json") {
        logs.json().init();
    } else {
        logs.init();
    }
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    // TIDEMARK_WORKER_THREADS sizes the runtime (default: one worker per core).
    if let Some(n) = std::env::var("TIDEMARK_WORKER_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error [{}]: {e}", e.sqlstate());
            ExitCode::FAILURE
        }
    }
}

async fn run(cmd: Command) -> Result<()> {
    match cmd {
        Command::Serve { config } => {
            let server = tidemark::server::Server::start(Arc::new(Config::load(&config)?)).await?;
            server.run_until_signal().await;
            Ok(())
        }
        Command::Setup { config } => {
            let report = tidemark::setup::run(&Config::load(&config)?).await?;
            for a in report.actions {
                println!("{a}");
            }
            Ok(())
        }
        Command::Explain { config, sql } => {
            let (_tx, rx) = tokio::sync::watch::channel(false);
            let engine =
                tidemark::engine::Engine::start(Arc::new(Config::load(&config)?), rx).await?;
            let plan = engine.explain(&sql, &Vec::new()).await?;
            println!("{}", serde_json::to_string_pretty(&plan).unwrap_or_default());
            Ok(())
        }
        Command::Check { config, probe } => check(&config, probe).await,
        Command::HashPassword { password, md5 } => {
            let password = match password {
                Some(p) => p,
                None => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .map_err(|e| tidemark::error::Error::InvalidInput(e.to_string()))?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let auth = tidemark::frontend::auth::make_verifier;
            match md5 {
                Some(user) => {
                    println!("{}", tidemark::frontend::auth::make_md5_hash(&user, &password))
                }
                None => println!("{}", auth(&password)),
            }
            Ok(())
        }
        Command::NewApiKey => {
            let key = tidemark::access::new_api_key()?;
            println!("key:  {key}\nhash: {}", tidemark::access::hash_api_key(&key));
            Ok(())
        }
        Command::Demo {
            admin_url,
            http,
            pg,
            flight,
            events,
            rate,
            advance_every,
            reset,
            database,
            users,
        } => {
            let opts = tidemark::demo::DemoOptions {
                warehouse_admin_url: admin_url,
                database,
                users_file: users,
                http,
                pg,
                flight,
                events,
                rate_per_sec: rate,
                advance_every: Duration::from_secs(advance_every.max(1)),
                reset,
                ..Default::default()
            };
            tidemark::demo::run(opts).await
        }
    }
}

async fn check(path: &str, probe: bool) -> Result<()> {
    let config = Arc::new(Config::load(path)?);
    println!("config {path}: valid");
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let engine = tidemark::engine::Engine::start(config.clone(), rx).await?;
    let mut session = tidemark::engine::Session::default();
    engine.execute("SELECT 1", &[], &mut session).await?;
    let warehouse = tidemark::exec::tls::describe_warehouse(&config.warehouse)?;
    println!("warehouse {warehouse}: reachable");
    if let Some(r) = engine.check_redis().await {
        r.map_err(|why| tidemark::error::Error::Unavailable(format!("windows layer: {why}")))?;
        println!("redis: reachable");
    }
    for t in engine.tables().await? {
        println!(
            "logical table {}: {} columns, time column {}, batch watermark {}",
            t.name,
            t.columns.len(),
            t.time_column,
            t.batch_watermark.unwrap_or_else(|| "(none: run tidemark setup)".into())
        );
        if let Some(line) = engine.check_windows(&t.name).await? {
            println!("{line}");
        }
    }
    if probe {
        for line in engine.probe().await {
            println!("probe {line}");
        }
    }
    Ok(())
}
