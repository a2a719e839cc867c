//! Handing the memory of a finished scan back to the kernel.
//!
//! A scan allocates on its walk thread and one thread per worker, and glibc's malloc
//! gives each of those threads an arena of its own. When the job ends everything is
//! freed, but glibc only returns the top of the main heap by itself: the pages freed in
//! the other arenas, and free pages below live data, stay in verigated's RSS until
//! something asks for them back. `malloc_trim(0)` does that for every arena, which is
//! what a once-in-a-while job that peaks far above the daemon's steady state wants.
//!
//! glibc has no safe wrapper for it, so this is one of the gateway's modules with
//! `unsafe` (see ARCHITECTURE.md, "Lints"); other C libraries get a no-op.

#![allow(unsafe_code)]

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
