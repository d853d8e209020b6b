//! The `mailraft-bench` binary: parses options and hands over to [`mailraft_bench::app`].

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = mailraft_bench::cli::Cli::parse();
    // Several worker threads even on 2 cores: TLS and parsing then overlap with I/O waits.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mailraft-bench: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(mailraft_bench::app::main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailraft-bench: {e:#}");
            ExitCode::from(2)
        }
    }
}
