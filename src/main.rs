//! The `aimesh` binary: see `aimesh --help`.

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
