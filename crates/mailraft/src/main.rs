//! The `mailraft` binary. See `mailraft --help`.

use anyhow::{Context, Result};
use clap::Parser;
use mailraft::cli::{Cli, Command, CommonArgs, DevArgs, FrontendArgs, StorageArgs};
use mailraft::config::Config;
use mailraft::{admin, launch, tls};
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
    cfg.validate().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;

    let node = launch::storage_node(&cfg, true).await?;
    let grpc = node.local_addr();
    let demo_login = format!("{}@{}", cfg.dev.demo_user, cfg.dev.demo_tenant);
    node.ensure_tenant_user(&cfg.dev.demo_tenant, &cfg.dev.demo_user, &cfg.dev.demo_password)
        .await
        .context("create demo tenant and user")?;

    let tls = match (&cfg.imap.tls_cert, &cfg.imap.tls_key) {
        (Some(c), Some(k)) => tls::load(c, k)?,
        _ => tls::dev_self_signed(&cfg.node.data_dir)?,
    };
    let server = ImapServer::new(launch::frontend_config(&cfg, vec![format!("http://{grpc}")]))?;
    let (stop_tx, stop) = launch::shutdown_signal();
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, Some(&tls), &stop).await?;

    // The first words of these lines are parsed by tests/support: keep them stable.
    println!("Mailraft dev node ready (single-node cluster, data in {})", cfg.node.data_dir.display());
    if let Some(a) = listeners.imap {
        println!("imap     {a}   plain IMAP, LOGIN allowed (dev only), STARTTLS offered");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}   implicit TLS, self-signed certificate");
    }
    println!("grpc     {grpc}");
    if let Some(m) = cfg.telemetry.metrics_addr {
        println!("metrics  http://{m}/metrics");
    }
    println!("cert     {}", tls.cert_path.display());
    let shown = if cfg.dev.demo_password == "demo" { "demo" } else { "(the --demo-password you gave)" };
    println!("login    {demo_login} / {shown}");
    if let Some(a) = listeners.imap {
        println!("try      curl --user {demo_login}:{shown} imap://{a}/");
    }

    launch::stopped(stop).await;
    drop(stop_tx);
    listeners.join().await;
    node.shutdown().await;
    Ok(())
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
    cfg.validate().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let node = launch::storage_node(&cfg, args.bootstrap).await?;
    tracing::info!(addr = %node.local_addr(), node_id = cfg.node.id, "storage node serving");
    println!("grpc     {}", node.local_addr());
    let (_stop_tx, stop) = launch::shutdown_signal();
    launch::stopped(stop).await;
    node.shutdown().await;
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
    let (_stop_tx, stop) = launch::shutdown_signal();
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, tls.as_ref(), &stop).await?;
    if let Some(a) = listeners.imap {
        println!("imap     {a}");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}");
    }
    launch::stopped(stop.clone()).await;
    listeners.join().await;
    Ok(())
}
