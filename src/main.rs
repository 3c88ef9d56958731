//! The `clusterdns` binary: CoreDNS's command line on top of the library.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use clusterdns::config::{self, Config};
use clusterdns::plugins::{self, prometheus::Metrics, ready::Readiness};
use clusterdns::{VERSION, logging, server};

/// CoreDNS-compatible flags. Go's flag package takes `-conf` as well as `--conf`; so do we.
#[derive(Parser, Debug)]
#[command(
    name = "clusterdns",
    disable_version_flag = true,
    about = "Cluster DNS for Kubernetes, CoreDNS-compatible"
)]
struct Cli {
    /// Corefile to load (`stdin` reads standard input).
    #[arg(long = "conf", value_name = "FILE")]
    conf: Option<String>,
    /// Default port for server keys without one.
    #[arg(
        long = "dns.port",
        short = 'p',
        default_value_t = 53,
        value_name = "PORT"
    )]
    dns_port: u16,
    /// Write the process id to this file.
    #[arg(long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// List the plugins compiled in, in chain order, and exit.
    #[arg(long = "plugins")]
    plugins: bool,
    /// Do not print the start-up banner.
    #[arg(long = "quiet")]
    quiet: bool,
    /// Show the version and exit.
    #[arg(long = "version")]
    version: bool,
    /// Parse and build the whole configuration without opening sockets; print every problem as
    /// `FILE:LINE - …` and exit 0 (valid) or 1.
    #[arg(long = "validate")]
    validate: bool,
    #[arg(hide = true)]
    extra: Vec<String>,
}

const LONG_FLAGS: &[&str] = &[
    "conf", "dns.port", "pidfile", "plugins", "quiet", "version", "validate", "help",
];

/// `-conf x` → `--conf x` for the long flags (Go style); everything else unchanged.
fn go_style_args() -> Vec<String> {
    std::env::args()
        .map(|a| {
            let name = a.strip_prefix('-').unwrap_or("");
            let bare = name.split('=').next().unwrap_or("");
            if !name.starts_with('-') && LONG_FLAGS.contains(&bare) {
                format!("-{a}")
            } else {
                a
            }
        })
        .collect()
}

fn read_corefile(cli: &Cli) -> anyhow::Result<(String, String)> {
    match cli.conf.as_deref() {
        Some("stdin") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading Corefile from stdin")?;
            Ok(("stdin".into(), s))
        }
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("open {path}"))?;
            Ok((path.to_string(), text))
        }
        None => match std::fs::read_to_string("Corefile") {
            Ok(t) => Ok(("Corefile".into(), t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(("Corefile".into(), config::default_corefile(cli.dns_port)))
            }
            Err(e) => Err(e).context("open Corefile"),
        },
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_args());
    if !cli.extra.is_empty() {
        eprintln!("extra command line arguments: {:?}", cli.extra);
        return ExitCode::from(1);
    }
    let mut out = std::io::stdout().lock();
    if cli.version {
        let _ = writeln!(
            out,
            "clusterdns-{VERSION}\n{}/{}, rust",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
        return ExitCode::SUCCESS;
    }
    if cli.plugins {
        let _ = writeln!(
            out,
            "Server types:\n  dns\n\nCaddyfile loaders:\n  flag\n  default\n\nOther plugins:"
        );
        for p in plugins::built() {
            let _ = writeln!(out, "  dns.{p}");
        }
        return ExitCode::SUCCESS;
    }
    drop(out);
    logging::init();
    let (file, text) = match read_corefile(&cli) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::from(1);
        }
    };
    // -validate: always `FILE:LINE - …`; serving: CoreDNS's text, located when it is not.
    let show = |e: &clusterdns::corefile::Error| {
        if cli.validate {
            e.with_location()
        } else {
            e.located()
        }
    };
    let config = match config::load(&file, &text, cli.dns_port) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{}", show(e));
            }
            return ExitCode::from(1);
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let metrics = match Metrics::new(prometheus::Registry::new()) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            eprintln!("metrics: {e}");
            return ExitCode::from(1);
        }
    };
    let built = match server::build(&config, &metrics) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}", show(&e));
            return ExitCode::from(1);
        }
    };
    if cli.validate {
        println!("{file}: valid ({} server blocks)", config.blocks.len());
        return ExitCode::SUCCESS;
    }
    match run(cli, config, built, metrics) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

#[tokio::main]
async fn run(
    cli: Cli,
    config: Config,
    built: server::Built,
    metrics: Arc<Metrics>,
) -> anyhow::Result<ExitCode> {
    use tokio::signal::unix::{SignalKind, signal};
    let banner = built.banner.clone();
    // As Go does for CoreDNS: room for thousands of TCP connections (see server::ConnLimits).
    server::raise_nofile();
    let readiness = Arc::new(Readiness::default());
    let mut running = server::start(built, metrics.clone(), readiness).await?;
    if let Some(p) = &cli.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("write pidfile {}", p.display()))?;
    }
    if !cli.quiet {
        let mut out = std::io::stdout().lock();
        for line in &banner {
            let _ = writeln!(out, "{line}");
        }
        let _ = writeln!(
            out,
            "clusterdns-{VERSION}\n{}/{}, rust",
            std::env::consts::OS,
            std::env::consts::ARCH
        );
    }
    let mut reloader = Reloader::new(&cli, &config, metrics);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        let next = reloader.next_check();
        tokio::select! {
            _ = term.recv() => {
                tracing::info!("SIGTERM: Shutting down servers then terminating");
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: Shutting down servers then terminating");
                // A second SIGINT during lameduck forces exit 2, as CoreDNS.
                tokio::spawn(async move {
                    int.recv().await;
                    std::process::exit(2);
                });
                break;
            }
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: checking the Corefile for changes");
                reloader.check(&mut running, true).await;
            }
            _ = hup.recv() => {}
            _ = sleep_until(next) => reloader.check(&mut running, false).await,
        }
    }
    running.shutdown().await;
    if let Some(p) = &cli.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(ExitCode::SUCCESS)
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The `reload` plugin's loop: re-read, compare digests, rebuild, swap.
struct Reloader {
    file: Option<String>,
    port: u16,
    settings: Option<clusterdns::plugins::reload::ReloadConfig>,
    digest: String,
    next: Option<tokio::time::Instant>,
    metrics: Arc<Metrics>,
}

impl Reloader {
    fn new(cli: &Cli, config: &Config, metrics: Arc<Metrics>) -> Self {
        let file = match cli.conf.as_deref() {
            Some("stdin") => None,
            Some(p) => Some(p.to_string()),
            None => std::path::Path::new("Corefile")
                .exists()
                .then(|| "Corefile".to_string()),
        };
        tracing::info!(target: "plugin/reload", "Running configuration SHA512 = {}", config.digest);
        metrics
            .reload_version
            .with_label_values(&["sha512", &config.digest])
            .set(1);
        let mut r = Self {
            file,
            port: cli.dns_port,
            settings: config.reload(),
            digest: config.digest.clone(),
            next: None,
            metrics,
        };
        r.schedule();
        r
    }

    fn schedule(&mut self) {
        self.next = match (&self.file, &self.settings) {
            (Some(_), Some(s)) => Some(tokio::time::Instant::now() + s.period()),
            _ => None,
        };
    }

    fn next_check(&self) -> Option<tokio::time::Instant> {
        self.next
    }

    /// Reloads when the parsed Corefile changed (`forced`: SIGUSR1, even without `reload`).
    async fn check(&mut self, running: &mut server::Running, forced: bool) {
        self.schedule();
        let Some(file) = self.file.clone() else {
            return;
        };
        if self.settings.is_none() && !forced {
            return;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(target: "plugin/reload", "Corefile read failed: {e}");
                return;
            }
        };
        let config = match config::load(&file, &text, self.port) {
            Ok(c) => c,
            Err(errors) => {
                let digest = format!(
                    "{:?}",
                    errors.iter().map(|e| e.located()).collect::<Vec<_>>()
                );
                if digest != self.digest {
                    self.digest = digest;
                    for e in &errors {
                        tracing::error!("Restart failed: {}", e.located());
                    }
                    tracing::error!(target: "plugin/reload", "Corefile changed but reload failed");
                    self.metrics.reload_failed.inc();
                }
                return;
            }
        };
        if config.digest == self.digest {
            return;
        }
        self.digest = config.digest.clone();
        tracing::info!("Reloading");
        let result = match server::build(&config, &self.metrics) {
            Ok(built) => running.reload(built).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.located()),
        };
        match result {
            Ok(()) => {
                self.settings = config.reload();
                self.schedule();
                self.metrics.reload_version.reset();
                self.metrics
                    .reload_version
                    .with_label_values(&["sha512", &config.digest])
                    .set(1);
                tracing::info!(target: "plugin/reload", "Running configuration SHA512 = {}", config.digest);
                tracing::info!("Reloading complete");
            }
            Err(e) => {
                tracing::error!("Restart failed: {e}");
                tracing::error!(target: "plugin/reload", "Corefile changed but reload failed: {e}");
                self.metrics.reload_failed.inc();
            }
        }
    }
}
