//! The command line every service on the platform understands
//! ([`Application::from_args`](crate::app::Application::from_args)): `--config FILE`, `serve`,
//! `config show`, `config check FILE`.

use std::path::PathBuf;

use serde::Serialize;

/// A service's command line.
#[derive(Debug, clap::Parser)]
pub(crate) struct Args {
    /// Configuration file (TOML, or YAML for .yaml/.yml).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run the service (the default).
    Serve,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigAction {
    /// Print the effective configuration (every layer applied) as TOML, secrets redacted.
    Show,
    /// Check a configuration file over the defaults, without the environment: exit 0 and print
    /// `ok`, or exit 2 with the key and the reason.
    Check {
        /// The file (TOML, or YAML for .yaml/.yml).
        file: PathBuf,
    },
}

/// `settings` as TOML (secrets print as `"<redacted>"`).
pub(crate) fn to_toml(settings: &impl Serialize) -> String {
    toml::to_string_pretty(settings).unwrap_or_else(|e| format!("# cannot be shown: {e}\n"))
}
