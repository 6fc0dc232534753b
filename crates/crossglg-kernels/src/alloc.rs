//! glibc malloc tuning.
//!
//! candle allocates a fresh buffer for every intermediate tensor. With glibc's defaults, buffers
//! above the (dynamic) mmap threshold are mmap'ed and munmap'ed on every use, and the top of the
//! heap is trimmed eagerly, so each training step pays for page faults on memory it just gave
//! back. Raising the mmap threshold and the trim threshold (or turning mmap off) keeps freed
//! memory in the process for reuse. Measured effect: see `docs/performance.md`.

/// The settings applied by [`tune_allocator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorTuning {
    /// Allocations at least this large use mmap (glibc `M_MMAP_THRESHOLD`, max 32 MiB).
    pub mmap_threshold: i32,
    /// Free memory at the heap top beyond this is returned to the OS (`M_TRIM_THRESHOLD`).
    pub trim_threshold: i32,
    /// Extra memory requested on every heap growth (`M_TOP_PAD`).
    pub top_pad: i32,
    /// Most allocations served by mmap at once (`M_MMAP_MAX`); 0 serves everything from the
    /// heap. The mmap threshold cannot go above 32 MiB, and the bench shapes have many larger
    /// tensors (a `(32, 192, 64, 25)` f32 activation is 39 MB): mmap'ed, each was page-faulted
    /// in afresh on every use (a 1×1 convolution producing one ran at half speed).
    pub mmap_max: i32,
}

impl Default for AllocatorTuning {
    fn default() -> Self {
        Self {
            // 32 MiB is the largest value glibc accepts for the mmap threshold on 64-bit.
            mmap_threshold: 32 << 20,
            // mallopt takes a C int, so "never trim" is approximated by the largest one (2 GiB).
            trim_threshold: i32::MAX,
            top_pad: 256 << 20,
            mmap_max: 0,
        }
    }
}

/// Applies [`AllocatorTuning::default`] through glibc `mallopt`. Call once at start-up, before
/// large allocations. Returns `true` when every setting was accepted; on non-glibc targets it
/// does nothing and returns `false`.
pub fn tune_allocator() -> bool {
    tune_allocator_with(AllocatorTuning::default())
}

/// Applies the given settings; see [`tune_allocator`].
pub fn tune_allocator_with(t: AllocatorTuning) -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let settings = [
            (libc::M_MMAP_THRESHOLD, t.mmap_threshold),
            (libc::M_TRIM_THRESHOLD, t.trim_threshold),
            (libc::M_TOP_PAD, t.top_pad),
            (libc::M_MMAP_MAX, t.mmap_max),
        ];
        let mut ok = true;
        for (param, value) in settings {
            // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc
            // (it takes the arena locks) and takes plain integers.
            #[allow(unsafe_code)]
            let r = unsafe { libc::mallopt(param, value) };
            ok &= r == 1;
        }
        ok
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = t;
        false
    }
}
