//! Handing the memory of a finished scan back to the kernel.
//!
//! A scan allocates on its walk thread and one thread per worker, and glibc's malloc
//! gives each of those threads an arena of its own. When the job ends everything is
//! freed, but two glibc habits keep it in verigated's RSS (measured, see
//! `bench/RESULTS.md`: the RSS after each cached job of a 360k-file tree grew by
//! 15-20 MiB while malloc's own count of bytes in use stayed near 4 MiB):
//! - the mmap threshold is dynamic: once a large block (the cache's list of
//!   fingerprints) is freed, later blocks up to its size are carved from the arenas
//!   instead of being mapped and unmapped on their own;
//! - free memory at the top of a thread's arena is only given back when it exceeds a
//!   trim threshold that rises with the mmap threshold, and `malloc_trim` does not
//!   touch those tops (only free chunks inside arenas and the top of the main heap).
//!
//! So [`bound_retained_memory`] fixes both thresholds (which turns the dynamic
//! adjustment off, for the whole process: large blocks are then always mapped on their
//! own, and arena tops are trimmed as they are freed), and [`release_free_memory`] runs
//! `malloc_trim(0)` for the free chunks left inside the arenas once a job is over.
//!
//! glibc has no safe wrapper for either, so this is one of the gateway's modules with
//! `unsafe` (see ARCHITECTURE.md, "Lints"); other C libraries get no-ops.

#![allow(unsafe_code)]

/// Blocks at least this large are mapped on their own and unmapped when freed: glibc's
/// starting value, kept fixed instead of rising with the largest block freed so far.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 128 * 1024;
/// Free memory above this at the top of an arena goes back to the kernel when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 1024 * 1024;

/// Fixes glibc's mmap and trim thresholds for the rest of the process (see the module
/// documentation); called when a scan starts, idempotent. `false` if glibc refused.
pub fn bound_retained_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt takes two integers, changes allocator settings under glibc's
        // own lock and is documented as callable at any time from any thread.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Returns the free pages of every malloc arena to the kernel; `true` if any were.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists
        // under the arenas' locks; it is safe to call from any thread at any time.
        unsafe { libc::malloc_trim(0) != 0 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
