//! The typed configuration of each command, built from its flags: what the command runs with,
//! apart from how clap reads it. The one-shot commands' are theirs ([`crate::commands`]); the
//! long-running ones' are the wiring's ([`crate::wiring`]).

use std::path::PathBuf;
use std::time::Duration;

use super::flags::{
    CommonArgs, ControllerArgs, ControllerCommand, ReleaseArgs, RunArgs, StampArgs, TraceArgs,
    WebhookArgs, WebhookConfigArgs,
};
use crate::commands::{release, stamp, trace, webhook_config};
use crate::k8s::controller::LeaseSettings;
use crate::k8s::tls::ServingCertFiles;
use crate::wiring::{
    Certificates, CommandError, ControllerConfig, ExportConfig, PoliciesConfig, RunConfig,
    WebhookConfig,
};

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

impl WebhookConfig {
    /// Fails when the flags give no certificate source, or a self-managed one that can't work.
    pub fn from_args(args: WebhookArgs, common: &CommonArgs) -> Result<Self, CommandError> {
        Ok(Self {
            listen: args.listen,
            metrics_listen: args.metrics_listen,
            certificates: certificates(&args)?,
            policies: PoliciesConfig {
                read: args.policy.policies,
                defaults: args.policy.defaults(),
                sync_match_conditions: args.policy.sync_match_conditions,
                webhook_configuration: args.certs.webhook_configuration,
            },
            shutdown_delay: args.shutdown_delay,
            self_tracing_ratio: common.self_tracing_ratio,
        })
    }
}

/// The certificate files when both are given, else the self-managed certificates.
fn certificates(args: &WebhookArgs) -> Result<Certificates, CommandError> {
    if let (Some(cert), Some(key)) = (&args.tls_cert_file, &args.tls_key_file) {
        return Ok(Certificates::Files {
            files: ServingCertFiles {
                cert: cert.clone(),
                key: key.clone(),
            },
            reload: Duration::from_secs(args.tls_reload_seconds),
        });
    }
    let certs = &args.certs;
    let secret = certs
        .cert_secret
        .clone()
        .ok_or(CommandError::NoCertificateSource)?;
    if certs.cert_names.is_empty() {
        return Err(CommandError::NoCertificateNames);
    }
    if certs.cert_validity < Duration::from_secs(3) || certs.ca_validity <= certs.cert_validity {
        return Err(CommandError::CertificateValidity);
    }
    let seconds = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    Ok(Certificates::Managed(crate::k8s::certs::Settings {
        namespace: certs.cert_namespace.clone(),
        secret,
        webhook_configuration: certs.webhook_configuration.clone(),
        issuance: crate::k8s::certs::Issuance {
            names: certs.cert_names.clone(),
            ca_validity_seconds: seconds(certs.ca_validity),
            cert_validity_seconds: seconds(certs.cert_validity),
        },
        resync: certs.cert_resync,
    }))
}

impl ExportConfig {
    /// `hold_pods`: pods may be held for export (`--hold-pods`).
    pub fn from_args(args: ControllerArgs, hold_pods: bool) -> Self {
        let lease = (!args.no_leader_election).then(|| LeaseSettings {
            namespace: args.lease_namespace,
            name: args.lease_name,
            owner: Some(args.lease_owner).filter(|o| !o.is_empty()),
        });
        Self {
            lease,
            instance: args.instance,
            watch_namespace: args.watch_namespace,
            policy_status: args.policy_status,
            hold_timeout: args.hold_timeout,
            record_events: args.record_events,
            max_request_bytes: usize::try_from(args.max_request_bytes).unwrap_or(usize::MAX),
            hold_pods,
        }
    }
}

impl ControllerConfig {
    pub fn from_args(command: ControllerCommand, common: &CommonArgs) -> Self {
        Self {
            export: ExportConfig::from_args(command.controller, command.hold_pods),
            metrics_listen: command.metrics_listen,
            self_tracing_ratio: common.self_tracing_ratio,
        }
    }
}

impl RunConfig {
    /// The controller keeps no status for policies this process's webhook doesn't read.
    pub fn from_args(args: RunArgs, common: &CommonArgs) -> Result<Self, CommandError> {
        let mut export = ExportConfig::from_args(args.controller, args.webhook.policy.hold_pods);
        export.policy_status &= args.webhook.policy.policies;
        Ok(Self {
            webhook: WebhookConfig::from_args(args.webhook, common)?,
            export,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::time::Duration;

    use super::*;
    use crate::cli::{Cli, Command};

    fn command(flags: &[&str]) -> Command {
        cli(flags).command
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

    fn cli(flags: &[&str]) -> Cli {
        let argv: Vec<OsString> = ["jobtrace"]
            .iter()
            .chain(flags)
            .map(OsString::from)
            .collect();
        Cli::try_parse_args(argv).unwrap()
    }

    fn webhook(flags: &[&str]) -> Result<WebhookConfig, CommandError> {
        let cli = cli(&[&["webhook"], flags].concat());
        let Command::Webhook(args) = cli.command else {
            panic!()
        };
        WebhookConfig::from_args(args, &cli.common)
    }

    #[test]
    fn webhook_serves_the_certificate_files_when_both_are_given() {
        let config = webhook(&["--tls-cert-file", "t.crt", "--tls-key-file", "t.key"]).unwrap();
        assert_eq!(
            config.certificates,
            Certificates::Files {
                files: ServingCertFiles {
                    cert: PathBuf::from("t.crt"),
                    key: PathBuf::from("t.key"),
                },
                reload: Duration::from_secs(10),
            }
        );
        assert!(config.policies.read);
        assert!(config.self_tracing_ratio.abs() < f64::EPSILON);
    }

    #[test]
    fn webhook_manages_its_certificates_in_the_secret_it_is_given() {
        let config = webhook(&[
            "--cert-secret",
            "jt-tls",
            "--cert-namespace",
            "ops",
            "--cert-name",
            "jt.ops.svc",
            "--cert-validity",
            "1d",
        ])
        .unwrap();
        let Certificates::Managed(settings) = config.certificates else {
            panic!("{:?}", config.certificates)
        };
        assert_eq!(
            (settings.secret.as_str(), settings.namespace.as_str()),
            ("jt-tls", "ops")
        );
        assert_eq!(settings.issuance.names, ["jt.ops.svc"]);
        assert_eq!(settings.issuance.cert_validity_seconds, 86_400);
        assert_eq!(
            config.policies.webhook_configuration,
            settings.webhook_configuration
        );
    }

    #[test]
    fn webhook_without_a_workable_certificate_source_does_not_start() {
        assert!(matches!(
            webhook(&["--cert-secret", "s"]),
            Err(CommandError::NoCertificateNames)
        ));
        for validity in [["--cert-validity", "2s"], ["--ca-validity", "90d"]] {
            let flags = [&["--cert-secret", "s", "--cert-name", "n"][..], &validity].concat();
            assert!(
                matches!(webhook(&flags), Err(CommandError::CertificateValidity)),
                "{validity:?}"
            );
        }
    }

    #[test]
    fn controller_elects_a_leader_unless_told_not_to() {
        let config = |flags: &[&str]| {
            let cli = cli(&[&["controller", "--lease-namespace", "ops"], flags].concat());
            let Command::Controller(args) = cli.command else {
                panic!()
            };
            ControllerConfig::from_args(args, &cli.common)
        };
        let elected = config(&["--lease-owner", "jobtrace", "--self-tracing-ratio", "0.5"]);
        assert_eq!(
            elected.export.lease,
            Some(LeaseSettings {
                namespace: "ops".into(),
                name: "jobtrace-controller".into(),
                owner: Some("jobtrace".into()),
            })
        );
        assert!((elected.self_tracing_ratio - 0.5).abs() < f64::EPSILON);
        assert_eq!(
            config(&[]).export.lease.and_then(|lease| lease.owner),
            None,
            "an empty owner is none"
        );
        assert_eq!(config(&["--no-leader-election"]).export.lease, None);
    }

    #[test]
    fn run_keeps_no_policy_status_when_its_webhook_reads_no_policies() {
        let config = |flags: &[&str]| {
            let base = ["run", "--cert-secret", "s", "--cert-name", "n"];
            let cli = cli(&[&base[..], flags].concat());
            let Command::Run(args) = cli.command else {
                panic!()
            };
            RunConfig::from_args(args, &cli.common).unwrap()
        };
        assert!(config(&[]).export.policy_status);
        let off = config(&["--policies=false", "--hold-pods"]);
        assert!(!off.export.policy_status);
        assert!(
            off.export.hold_pods,
            "the webhook's --hold-pods holds for the controller too"
        );
        assert!(!off.webhook.policies.read);
    }
}
