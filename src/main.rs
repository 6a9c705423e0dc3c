//! The connector binary: everything lives in the library so tests can run the whole service.

/// mimalloc instead of the C library's allocator: an event allocates a few hundred small,
/// short-lived blocks, and mimalloc serves them with far fewer instructions and less lock
/// traffic between worker threads (measured with `bench/`; see docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nsps_wtl_connector::main()
}
