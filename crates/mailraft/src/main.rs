//! The `mailraft` binary. See `mailraft --help`.

use anyhow::{Context, Result};
use clap::Parser;
use mailraft::cli::{Cli, Command, CommonArgs, DevArgs, FrontendArgs, StorageArgs};
use mailraft::config::Config;
use mailraft::{admin, dev_cluster, launch, tls};
use mailraft_frontend::ImapServer;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Dev(args) => dev(args).await,
            Command::Storage(args) => storage(args).await,
            Command::Frontend(args) => frontend(args).await,
            Command::Admin(args) => admin::run(args).await,
        }
    })
}

/// Loads the configuration and applies the flags every server kind shares.
fn load(common: &CommonArgs) -> Result<Config> {
    let mut cfg = Config::load(common.config.as_deref()).context("load configuration")?;
    if let Some(a) = common.metrics_addr {
        cfg.telemetry.metrics_addr = Some(a);
    }
    Ok(cfg)
}

async fn dev(args: DevArgs) -> Result<()> {
    let mut cfg = load(&args.common)?;
    cfg.node.data_dir = args.data_dir;
    cfg.node.grpc_addr = args.grpc_addr;
    cfg.imap.addr = Some(args.imap_addr);
    cfg.imap.tls_addr = Some(args.imaps_addr);
    cfg.dev.demo_password = args.demo_password;
    // Local development on loopback: cleartext LOGIN is allowed (production default is off).
    cfg.imap.allow_plaintext_auth = true;
    if args.nodes > 1 && std::env::var_os("RUST_LOG").is_none() && cfg.telemetry.log_filter == TelemetryDefaults::FILTER {
        // The terminal shows the banner, leader changes and warnings, not start-up chatter.
        cfg.telemetry.log_filter = "warn".to_owned();
    }
    cfg.validate().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let demo_login = format!("{}@{}", cfg.dev.demo_user, cfg.dev.demo_tenant);

    // Either one storage node in this process, or N child processes.
    let (node, cluster, endpoints) = if args.nodes == 1 {
        let node = launch::storage_node(&cfg, true).await?;
        node.ensure_tenant_user(&cfg.dev.demo_tenant, &cfg.dev.demo_user, &cfg.dev.demo_password)
            .await
            .context("create demo tenant and user")?;
        let url = format!("http://{}", node.local_addr());
        (Some(node), None, vec![url])
    } else {
        let spec = dev_cluster::Spec {
            nodes: args.nodes,
            data_dir: cfg.node.data_dir.clone(),
            grpc_addr: cfg.node.grpc_addr,
            config_file: args.common.config.clone(),
        };
        let cluster = dev_cluster::DevCluster::start(&spec, &demo_login, &cfg.dev.demo_password).await?;
        let urls = cluster.nodes.iter().map(|n| n.url()).collect();
        (None, Some(cluster), urls)
    };
    let grpc = endpoints.first().cloned().unwrap_or_default();

    let tls = match (&cfg.imap.tls_cert, &cfg.imap.tls_key) {
        (Some(c), Some(k)) => tls::load(c, k)?,
        _ => tls::dev_self_signed(&cfg.node.data_dir)?,
    };
    let server = ImapServer::new(launch::frontend_config(&cfg, endpoints))?;
    let (stop_tx, stop) = launch::shutdown_signal();
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, Some(&tls), &stop).await?;

    // The first words of these lines are parsed by tests/support: keep them stable.
    match &cluster {
        None => println!("Mailraft dev node ready (single-node cluster, data in {})", cfg.node.data_dir.display()),
        Some(c) => {
            println!("Mailraft dev cluster ready ({} storage nodes, data in {})", c.nodes.len(), cfg.node.data_dir.display());
            for n in &c.nodes {
                let pid = n.pid.load(std::sync::atomic::Ordering::Relaxed);
                println!("node{}    {}   pid {pid}   data {}", n.id, n.addr, n.data_dir.display());
            }
        }
    }
    if let Some(a) = listeners.imap {
        println!("imap     {a}   plain IMAP, LOGIN allowed (dev only), STARTTLS offered");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}   implicit TLS, self-signed certificate");
    }
    println!("grpc     {}", grpc.trim_start_matches("http://"));
    if let Some(m) = cfg.telemetry.metrics_addr {
        println!("metrics  http://{m}/metrics");
    }
    println!("cert     {}", tls.cert_path.display());
    let shown = if cfg.dev.demo_password == "demo" { "demo" } else { "(the --demo-password you gave)" };
    println!("login    {demo_login} / {shown}");
    if let Some(a) = listeners.imap {
        println!("try      curl --user {demo_login}:{shown} imap://{a}/");
    }
    if cluster.is_some() {
        println!("status   mailraft admin --endpoint {grpc} cluster-info");
        println!("failover kill -9 the leader's pid: the others elect a new leader and this process restarts the node");
    }

    launch::stopped(stop).await;
    drop(stop_tx);
    listeners.join().await;
    if let Some(node) = node {
        node.shutdown().await;
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

/// The telemetry defaults `dev` compares against before quieting the log.
struct TelemetryDefaults;

impl TelemetryDefaults {
    const FILTER: &'static str = "info,openraft=warn";
}

async fn storage(args: StorageArgs) -> Result<()> {
    let mut cfg = load(&args.common)?;
    if let Some(d) = args.data_dir {
        cfg.node.data_dir = d;
    }
    if let Some(a) = args.grpc_addr {
        cfg.node.grpc_addr = a;
    }
    if let Some(id) = args.node_id {
        cfg.node.id = id;
    }
    if let Some(a) = args.advertise_addr {
        cfg.node.advertise_addr = Some(a);
    }
    cfg.node.peer_addrs.extend(args.peer_addrs);
    cfg.validate().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let node = launch::storage_node(&cfg, args.bootstrap).await?;
    tracing::info!(addr = %node.local_addr(), node_id = cfg.node.id, "storage node serving");
    println!("grpc     {}", node.local_addr());
    let (stop_tx, stop) = launch::shutdown_signal();
    if args.exit_on_stdin_eof {
        watch_stdin(stop_tx.clone())?;
    }
    launch::stopped(stop).await;
    drop(stop_tx);
    node.shutdown().await;
    Ok(())
}

/// Sets `stop` when stdin (a pipe from `mailraft dev`) reaches end-of-file: the parent is gone.
///
/// The pipe is read through tokio's epoll-driven pipe type, because the parent's runtime creates
/// it non-blocking and a plain blocking read would fail at once with `WouldBlock`.
fn watch_stdin(stop: tokio::sync::watch::Sender<bool>) -> Result<()> {
    use std::os::fd::AsFd;
    use tokio::io::AsyncReadExt;
    let fd = std::io::stdin().as_fd().try_clone_to_owned().context("duplicate stdin")?;
    let mut pipe = tokio::net::unix::pipe::Receiver::from_file(std::fs::File::from(fd))
        .context("--exit-on-stdin-eof needs stdin to be a pipe")?;
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        // Data is ignored; end-of-file or an error means the writer is gone.
        while matches!(pipe.read(&mut buf).await, Ok(n) if n > 0) {}
        tracing::info!("stdin closed: shutting down");
        let _ = stop.send(true);
    });
    Ok(())
}

async fn frontend(args: FrontendArgs) -> Result<()> {
    let mut cfg = load(&args.common)?;
    if !args.storage.is_empty() {
        cfg.storage.endpoints = args.storage;
    }
    if let Some(a) = args.imap_addr {
        cfg.imap.addr = Some(a);
    }
    if let Some(a) = args.imaps_addr {
        cfg.imap.tls_addr = Some(a);
    }
    cfg.validate().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let tls = match (&cfg.imap.tls_cert, &cfg.imap.tls_key) {
        (Some(c), Some(k)) => Some(tls::load(c, k)?),
        _ => None,
    };
    if tls.is_none() && cfg.imap.tls_addr.is_some() {
        tracing::warn!("no TLS certificate configured: the implicit-TLS listener is disabled");
        cfg.imap.tls_addr = None;
    }
    let server = ImapServer::new(launch::frontend_config(&cfg, cfg.storage.endpoints.clone()))?;
    let (stop_tx, stop) = launch::shutdown_signal();
    if args.exit_on_stdin_eof {
        watch_stdin(stop_tx.clone())?;
    }
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, tls.as_ref(), &stop).await?;
    if let Some(a) = listeners.imap {
        println!("imap     {a}");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}");
    }
    launch::stopped(stop.clone()).await;
    drop(stop_tx);
    listeners.join().await;
    Ok(())
}
