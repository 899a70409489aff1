#![forbid(unsafe_code)]

use clap::Parser;
use jobtrace::cli::Cli;

fn main() {
    let _cli = Cli::parse();
}
