#![forbid(unsafe_code)]

// The system allocator spends half the admission path in malloc and free; musl's is slower still.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    jobtrace::cli::Cli::parse_and_run().await?;
    Ok(())
}
