//! The typed configuration of each one-shot command, built from its flags: what the command
//! runs with, apart from how clap reads it.

use std::path::PathBuf;

use super::flags::{ReleaseArgs, StampArgs, TraceArgs, WebhookConfigArgs};
use crate::commands::{release, stamp, trace, webhook_config};

impl stamp::Config {
    /// Standard input (`-`) when no file is given.
    pub fn from_args(args: StampArgs) -> Self {
        let files = if args.files.is_empty() {
            vec![PathBuf::from("-")]
        } else {
            args.files
        };
        Self {
            files,
            require: args.require,
        }
    }
}

impl trace::Config {
    pub fn from_args(args: TraceArgs) -> Self {
        Self {
            job: args.job,
            namespace: args.namespace,
            query_url: args.query_url,
            url_template: args.url_template,
            wait: args.wait,
        }
    }
}

impl release::Config {
    pub fn from_args(args: ReleaseArgs) -> Self {
        Self {
            namespace: args.namespace,
            webhook_configuration: args.webhook_configuration,
        }
    }
}

impl webhook_config::Config {
    pub fn from_args(args: WebhookConfigArgs) -> Self {
        Self {
            url: args.url,
            ca_file: args.ca_file,
            namespace: args.namespace,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::*;
    use crate::cli::{Cli, Command};

    fn command(flags: &[&str]) -> Command {
        let argv: Vec<OsString> = ["jobtrace"]
            .iter()
            .chain(flags)
            .map(OsString::from)
            .collect();
        Cli::try_parse_args(argv).unwrap().command
    }

    #[test]
    fn stamp_reads_standard_input_without_files() {
        let Command::Stamp(args) = command(&["stamp"]) else {
            panic!()
        };
        assert_eq!(
            stamp::Config::from_args(args),
            stamp::Config {
                files: vec![PathBuf::from("-")],
                require: false,
            }
        );
        let Command::Stamp(args) = command(&["stamp", "--require", "a.yaml", "-", "b.yaml"]) else {
            panic!()
        };
        assert_eq!(
            stamp::Config::from_args(args),
            stamp::Config {
                files: ["a.yaml", "-", "b.yaml"].map(PathBuf::from).to_vec(),
                require: true,
            }
        );
    }

    #[test]
    fn trace_is_configured_from_its_flags() {
        let Command::Trace(args) = command(&[
            "trace",
            "nightly",
            "-n",
            "demo",
            "--wait",
            "2m",
            "--url-template",
            "http://ui/{trace_id}",
        ]) else {
            panic!()
        };
        assert_eq!(
            trace::Config::from_args(args),
            trace::Config {
                job: "nightly".into(),
                namespace: Some("demo".into()),
                query_url: "http://127.0.0.1:16686".into(),
                url_template: Some("http://ui/{trace_id}".into()),
                wait: Duration::from_secs(120),
            }
        );
    }

    #[test]
    fn release_covers_every_namespace_unless_one_is_given() {
        let Command::Release(args) = command(&["release"]) else {
            panic!()
        };
        assert_eq!(
            release::Config::from_args(args),
            release::Config {
                namespace: None,
                webhook_configuration: None,
            }
        );
        let Command::Release(args) = command(&[
            "release",
            "-n",
            "batch",
            "--webhook-configuration",
            "jobtrace",
        ]) else {
            panic!()
        };
        assert_eq!(
            release::Config::from_args(args),
            release::Config {
                namespace: Some("batch".into()),
                webhook_configuration: Some("jobtrace".into()),
            }
        );
    }

    #[test]
    fn webhook_config_keeps_jobtraces_namespace_out_by_default() {
        let Command::WebhookConfig(args) = command(&[
            "webhook-config",
            "--url",
            "https://127.0.0.1:8443",
            "--ca-file",
            "ca.crt",
        ]) else {
            panic!()
        };
        assert_eq!(
            webhook_config::Config::from_args(args),
            webhook_config::Config {
                url: "https://127.0.0.1:8443".into(),
                ca_file: Some(PathBuf::from("ca.crt")),
                namespace: "jobtrace".into(),
            }
        );
    }
}
