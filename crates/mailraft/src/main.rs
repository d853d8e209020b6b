//! The `mailraft` binary. See `mailraft --help`.

use anyhow::{Context, Result};
use clap::Parser;
use mailraft::cli::{CertsAction, CertsArgs, Cli, Command, CommonArgs, DevArgs, FrontendArgs, StorageArgs};
use mailraft::config::{Config, TlsConfig};
use mailraft::{admin, certs, dev_cluster, launch, tls};
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
            Command::Certs(args) => certs_command(args),
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
    cfg.node.admin_addr = args.admin_addr;
    cfg.imap.addr = Some(args.imap_addr);
    cfg.imap.tls_addr = Some(args.imaps_addr);
    cfg.lmtp.addr = Some(args.lmtp_addr);
    cfg.dev.demo_password = args.demo_password;
    // Local development on loopback: cleartext LOGIN is allowed (production default is off).
    cfg.imap.allow_plaintext_auth = true;
    if args.nodes > 1 && std::env::var_os("RUST_LOG").is_none() && cfg.telemetry.log_filter == TelemetryDefaults::FILTER {
        // The terminal shows the banner, leader changes and warnings, not start-up chatter.
        cfg.telemetry.log_filter = "warn".to_owned();
    }
    cfg.validate().context("invalid configuration")?;
    anyhow::ensure!(
        args.restore_from.is_none() || args.nodes == 1,
        "--restore-from needs --nodes 1 (restore one node, then add others with `mailraft admin add-node`)"
    );
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let demo_login = format!("{}@{}", cfg.dev.demo_user, cfg.dev.demo_tenant);
    // Every gRPC link runs mutual TLS with certificates made here once (dev ignores `[tls]`).
    let certs = certs::dev_set(&cfg.node.data_dir.join("certs"), args.nodes).context("create dev certificates")?;
    let node1 = certs.nodes.first().context("no node certificate")?;
    cfg.tls = TlsConfig {
        ca: Some(node1.ca.clone()),
        cert: Some(node1.cert.clone()),
        key: Some(node1.key.clone()),
        insecure_plaintext: false,
    };

    // Either one storage node in this process, or N child processes.
    let (node, cluster, endpoints, admin_url) = if args.nodes == 1 {
        let node = launch::storage_node_from(&cfg, true, args.restore_from.as_deref()).await?;
        launch::serve_readiness(&node);
        node.ensure_tenant_user(&cfg.dev.demo_tenant, &cfg.dev.demo_user, &cfg.dev.demo_password)
            .await
            .context("create demo tenant and user")?;
        let url = format!("https://{}", node.local_addr());
        let admin_url = format!("https://{}", node.admin_addr());
        (Some(node), None, vec![url], admin_url)
    } else {
        let spec = dev_cluster::Spec {
            nodes: args.nodes,
            data_dir: cfg.node.data_dir.clone(),
            grpc_addr: cfg.node.grpc_addr,
            admin_addr: cfg.node.admin_addr,
            config_file: args.common.config.clone(),
            certs: certs.clone(),
        };
        let cluster = dev_cluster::DevCluster::start(&spec, &demo_login, &cfg.dev.demo_password).await?;
        let urls = cluster.nodes.iter().map(|n| n.url()).collect();
        let admin_url = cluster.nodes.first().map(|n| n.admin_url()).unwrap_or_default();
        (None, Some(cluster), urls, admin_url)
    };
    let grpc = endpoints.first().cloned().unwrap_or_default();

    let tls = match (&cfg.imap.tls_cert, &cfg.imap.tls_key) {
        (Some(c), Some(k)) => tls::load(c, k)?,
        _ => tls::dev_self_signed(&cfg.node.data_dir)?,
    };
    let mut frontend = launch::frontend_config(&cfg, endpoints);
    let client = tls::load(&certs.frontend.cert, &certs.frontend.key)?;
    frontend.storage_tls = Some(mailraft_frontend::storage::route::StorageTls {
        ca_pem: std::fs::read(&certs.frontend.ca).context("read the dev CA")?,
        cert_pem: client.cert_pem,
        key_pem: client.key_pem,
    });
    let server = ImapServer::new(frontend)?;
    let (stop_tx, stop) = launch::shutdown_signal();
    let lmtp = launch::lmtp_listeners(&cfg, server.storage().clone(), &stop).await?;
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, Some(&tls), &stop).await?;

    // The first words of these lines are parsed by tests/support: keep them stable.
    match &cluster {
        None => println!("Mailraft dev node ready (single-node cluster, data in {})", cfg.node.data_dir.display()),
        Some(c) => {
            println!("Mailraft dev cluster ready ({} storage nodes, data in {})", c.nodes.len(), cfg.node.data_dir.display());
            for n in &c.nodes {
                let pid = n.pid.load(std::sync::atomic::Ordering::Relaxed);
                println!("node{}    {}   admin {}   pid {pid}   data {}", n.id, n.addr, n.admin, n.data_dir.display());
            }
        }
    }
    if let Some(a) = listeners.imap {
        println!("imap     {a}   plain IMAP, LOGIN allowed (dev only), STARTTLS offered");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}   implicit TLS, self-signed certificate");
    }
    print_lmtp(&lmtp);
    println!("grpc     {}", grpc.trim_start_matches("https://"));
    println!("admin    {}", admin_url.trim_start_matches("https://"));
    println!("certs    {}", certs.dir.display());
    if let Some(m) = cfg.telemetry.metrics_addr {
        println!("metrics  http://{m}/metrics");
        if cluster.is_none() {
            println!("ready    http://{m}/ready");
        }
    }
    println!("cert     {}", tls.cert_path.display());
    let shown = if cfg.dev.demo_password == "demo" { "demo" } else { "(the --demo-password you gave)" };
    println!("login    {demo_login} / {shown}");
    if let Some(a) = listeners.imap {
        println!("try      curl --user {demo_login}:{shown} imap://{a}/");
    }
    println!("operator mailraft admin --endpoint {admin_url} --tls-dir {} cluster-info", certs.dir.display());
    if cluster.is_some() {
        println!("failover kill -9 the leader's pid: the others elect a new leader and this process restarts the node");
    }

    launch::stopped(stop).await;
    drop(stop_tx);
    listeners.join().await;
    lmtp.join().await;
    if let Some(node) = node {
        node.shutdown().await;
    }
    if let Some(cluster) = cluster {
        cluster.shutdown().await;
    }
    Ok(())
}

/// The LMTP banner lines (`lmtp <addr>`, `lmtp-sock <path>`; tests/support reads them).
fn print_lmtp(lmtp: &launch::LmtpListeners) {
    if let Some(a) = lmtp.addr {
        println!("lmtp     {a}   LMTP delivery (RFC 2033), no authentication: keep it off public networks");
    }
    if let Some(p) = &lmtp.socket {
        println!("lmtp-sock {}", p.display());
    }
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
    if let Some(a) = args.admin_addr {
        cfg.node.admin_addr = a;
    }
    if let Some(a) = args.admin_advertise_addr {
        cfg.node.admin_advertise_addr = Some(a);
    }
    if let Some(id) = args.node_id {
        cfg.node.id = id;
    }
    if let Some(a) = args.advertise_addr {
        cfg.node.advertise_addr = Some(a);
    }
    cfg.node.peer_addrs.extend(args.peer_addrs);
    cfg.validate().context("invalid configuration")?;
    cfg.check_storage_security().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let node = launch::storage_node_from(&cfg, args.bootstrap, args.restore_from.as_deref()).await?;
    launch::serve_readiness(&node);
    // `grpc` last: whoever waits for it (dev, tests) has seen `admin` too.
    println!("admin    {}", node.admin_addr());
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
    if let Some(a) = args.lmtp_addr {
        cfg.lmtp.addr = Some(a);
    }
    cfg.validate().context("invalid configuration")?;
    cfg.check_frontend_security().context("invalid configuration")?;
    let _telemetry = mailraft_telemetry::init(&cfg.telemetry)?;
    let storage_tls = tls::storage_client(&cfg)?;
    let tls = match (&cfg.imap.tls_cert, &cfg.imap.tls_key) {
        (Some(c), Some(k)) => Some(tls::load(c, k)?),
        _ => None,
    };
    if tls.is_none() && cfg.imap.tls_addr.is_some() {
        tracing::warn!("no TLS certificate configured: the implicit-TLS listener is disabled");
        cfg.imap.tls_addr = None;
    }
    let mut frontend = launch::frontend_config(&cfg, cfg.storage.endpoints.clone());
    frontend.storage_tls = storage_tls;
    let server = ImapServer::new(frontend)?;
    let (stop_tx, stop) = launch::shutdown_signal();
    if args.exit_on_stdin_eof {
        watch_stdin(stop_tx.clone())?;
    }
    let lmtp = launch::lmtp_listeners(&cfg, server.storage().clone(), &stop).await?;
    let listeners = launch::imap_listeners(server, cfg.imap.addr, cfg.imap.tls_addr, tls.as_ref(), &stop).await?;
    print_lmtp(&lmtp);
    if let Some(a) = listeners.imap {
        println!("imap     {a}");
    }
    if let Some(a) = listeners.imaps {
        println!("imaps    {a}");
    }
    launch::stopped(stop.clone()).await;
    drop(stop_tx);
    listeners.join().await;
    lmtp.join().await;
    Ok(())
}

/// `mailraft certs`: see `certs.rs`.
fn certs_command(args: CertsArgs) -> Result<()> {
    let leaf = match args.action {
        CertsAction::Ca => {
            let created = certs::ensure_ca(&args.dir)?;
            let verb = if created { "created" } else { "exists" };
            println!("ca       {}   {verb}", args.dir.join(certs::CA_CERT).display());
            return Ok(());
        }
        CertsAction::Node { id, sans } => {
            anyhow::ensure!(id > 0, "node id must be > 0");
            certs::Leaf::node(id, &sans)
        }
        CertsAction::Frontend { name } => certs::Leaf::frontend(&name),
        CertsAction::Operator { name } => certs::Leaf::operator(&name),
    };
    let issued = certs::ensure_leaf(&args.dir, &leaf, args.force)?;
    let verb = if issued.created { "issued" } else { "exists" };
    println!("cert     {}   {verb} for {}", issued.cert.display(), leaf.role);
    println!("key      {}", issued.key.display());
    println!("ca       {}", issued.ca.display());
    Ok(())
}
