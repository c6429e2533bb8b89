//! `pgflare emulate`: starts the local Cloudflare API emulator and serves
//! until ctrl-c. The first stdout line says where it listens (tests and
//! scripts read it), then how to point pgflare or wrangler at it. The token
//! is never printed.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::cli::EmulateArgs;
use crate::emulator::{Emulator, EmulatorConfig, Faults, TransferOptions};

pub async fn run(args: EmulateArgs, json: bool) -> anyhow::Result<ExitCode> {
    let (rate_limit_requests, rate_limit_window) =
        crate::plan::resolve::rate_limit("--rate-limit", &args.rate_limit)?;
    let cfg = EmulatorConfig {
        listen: args.listen,
        data_dir: args.data_dir,
        token: args.token,
        account_id: args.account_id,
        d1_databases: args.d1_databases,
        rate_limit_requests,
        rate_limit_window,
        faults: Faults {
            error_rate: args.fail_rate,
            drop_rate: args.drop_rate,
            latency: Duration::from_millis(args.latency_ms),
            internal_error_rate: args.internal_error_rate,
            seed: args.seed.unwrap_or_else(rand::random),
        },
        vectorize_delay: Duration::from_millis(args.vectorize_delay_ms),
        request_log: args.request_log,
        d1_transfers: TransferOptions {
            polls: args.transfer_polls,
            failure: args.transfer_failure,
            poll_timeout: args.transfer_poll_timeout,
        },
        bandwidth: args.bandwidth,
    };
    let emu = Emulator::start(cfg).await?;
    // One write: a reader that takes the first line and closes the pipe
    // must not make a later line fail (and stop the server).
    let text = if json {
        let line = serde_json::json!({
            "base_url": emu.base_url,
            "account_id": emu.account_id,
            "data_dir": emu.data_dir.display().to_string(),
        });
        format!("{line}\n")
    } else {
        format!(
            "pgflare emulate: listening on {url}\n  use it with:\n    \
             export CLOUDFLARE_API_BASE_URL={url} CLOUDFLARE_ACCOUNT_ID={account}\n  \
             (and CLOUDFLARE_API_TOKEN set to the --token given; ctrl-c stops)\n  \
             databases: {dir}/d1/<id>.sqlite\n  \
             vectorize indexes: {dir}/vectorize/<name>.sqlite\n",
            url = emu.base_url,
            account = emu.account_id,
            dir = emu.data_dir.display()
        )
    };
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    drop(out);
    emu.wait().await?;
    Ok(ExitCode::SUCCESS)
}
