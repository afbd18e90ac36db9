//! The `aimesh` binary: see `aimesh --help`.

/// jemalloc: under actor message load glibc's allocator serializes the runtime's worker threads
/// on its arena locks, and allocators that hand freed pages straight back to the kernel pay for
/// zeroing them again on the next fault (both measured with `aimesh bench`). jemalloc keeps
/// per-thread caches and returns dirty pages only after a decay period.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match aimesh::main().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let _ =
                std::io::Write::write_fmt(&mut std::io::stderr(), format_args!("error: {e:#}\n"));
            std::process::ExitCode::FAILURE
        }
    }
}
