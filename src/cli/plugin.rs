//! The name the binary answers to: `kubectl jobtrace` when run as the kubectl plugin.

use std::ffi::OsStr;
use std::path::Path;

/// The name kubectl finds jobtrace by, as a plugin, on `PATH`: `kubectl jobtrace ...` runs
/// `kubectl-jobtrace ...` (a symlink to, or a copy of, the binary).
pub const KUBECTL_PLUGIN: &str = "kubectl-jobtrace";

/// The name help and errors give the command, from the name it was run by: `kubectl jobtrace`
/// when run as the kubectl plugin; otherwise clap's, the file name it was run by.
pub fn bin_name(argv0: Option<&OsStr>) -> Option<&'static str> {
    let stem = Path::new(argv0?).file_stem()?;
    (stem == KUBECTL_PLUGIN).then_some("kubectl jobtrace")
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::cli::Cli;

    fn args(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn as_the_kubectl_plugin_help_names_kubectl_jobtrace() {
        assert_eq!(
            bin_name(Some(OsStr::new("/home/u/.local/bin/kubectl-jobtrace"))),
            Some("kubectl jobtrace")
        );
        assert_eq!(
            bin_name(Some(OsStr::new("kubectl-jobtrace.exe"))),
            Some("kubectl jobtrace")
        );
        assert_eq!(bin_name(Some(OsStr::new("target/debug/jobtrace"))), None);
        assert_eq!(bin_name(None), None);
        let help = |argv0: &str| {
            let e = Cli::try_parse_args(args(&[argv0, "trace", "--help"])).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            e.to_string()
        };
        let plugin = help("/usr/local/bin/kubectl-jobtrace");
        assert!(
            plugin.contains("Usage: kubectl jobtrace trace [OPTIONS] <JOB>"),
            "{plugin}"
        );
        let binary = help("target/debug/jobtrace");
        assert!(
            binary.contains("Usage: jobtrace trace [OPTIONS] <JOB>"),
            "{binary}"
        );
        let usage = Cli::try_parse_args(args(&["kubectl-jobtrace", "trace"])).unwrap_err();
        assert!(
            usage.to_string().contains("kubectl jobtrace trace"),
            "{usage}"
        );
    }
}
