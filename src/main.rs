//! The connector binary: everything lives in the library so tests can run the whole service.

fn main() -> std::process::ExitCode {
    nsps_wtl_connector::cli::main()
}
