//! glibc malloc tuning for the tunnel data path. russh allocates and frees
//! a buffer per SSH packet (32 KiB), often on different tokio worker
//! threads. With glibc's default trim threshold (128 KiB, raised only by
//! freed mmap chunks), every such burst ends with the arena's free top being
//! handed back to the kernel (`madvise(MADV_DONTNEED)`) and the next packets
//! page-fault it in again: about 300 000 minor faults per 2 GiB moved, which
//! made the SOCKS5 client cost more CPU per GiB than `ssh -D` (issue #3).
//! Keeping up to 8 MiB of free top per arena ends that; idle memory is
//! unchanged because idle connections never fill their buffers.
//!
//! It must never fail or abort: on other C libraries it does nothing.

/// Free memory an arena keeps before trimming (`M_TRIM_THRESHOLD`).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 8 << 20;

/// Sets glibc's trim threshold. Call once, first thing in `main`, before
/// any thread exists.
pub(crate) fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes malloc parameters; it is called before
    // any other thread is started, as glibc requires for malloc tuning.
    unsafe {
        // A 0 return means glibc ignored the value; the default stays.
        let _ = libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}
