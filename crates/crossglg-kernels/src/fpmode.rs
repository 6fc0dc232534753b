//! Flush-to-zero for subnormal floats on the threads that compute.
//!
//! x86 cores take a slow microcode path (tens to hundreds of cycles) for every multiply or add
//! with a subnormal operand or result. A model whose activations pass through values below
//! 1.2e-38 then runs many times slower: measured on the AVX-512 Xeon, `crossglg bench` of an
//! untrained `crossglg-infogcn` embeds a batch in 6.1 s instead of 0.54 s, all of it in gemm's
//! microkernels (`docs/performance.md`). Setting FTZ (results) and DAZ (inputs) in MXCSR turns
//! those values into zeros instead, which changes nothing a network can tell apart; TensorFlow
//! sets the same bits on its compute threads for the same reason. PyTorch leaves them off unless
//! asked (`torch.set_flush_denormal`).
//!
//! MXCSR is per thread, so the bits must be set on every thread that runs kernels: the calling
//! thread and each worker of the rayon pool that candle's gemm and our kernels use.
//! On targets other than x86/x86_64 these functions do nothing and report so.

/// MXCSR bit 15 (flush-to-zero) and bit 6 (denormals-are-zero).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

// `_mm_getcsr`/`_mm_setcsr` are deprecated in favour of inline assembly: the compiler does not
// model the floating-point mode, so it may move arithmetic across the switch. Here the switch
// happens once, at a thread's start, before any of its kernels run.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
mod mxcsr {
    use std::arch::asm;

    pub(super) fn read() -> u32 {
        let mut v = 0u32;
        // SAFETY: STMXCSR stores the 32-bit control register into `v`, a live local.
        #[allow(unsafe_code)]
        unsafe {
            asm!("stmxcsr [{}]", in(reg) &mut v, options(nostack, preserves_flags))
        };
        v
    }

    pub(super) fn write(v: u32) {
        // SAFETY: LDMXCSR loads the control register from `v`; callers only set the FTZ and DAZ
        // bits of the current value, which unmask no exception.
        #[allow(unsafe_code)]
        unsafe {
            asm!("ldmxcsr [{}]", in(reg) &v, options(nostack, readonly, preserves_flags))
        };
    }
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread. Returns `false` where the
/// target has no such switch here (anything but x86/x86_64).
pub fn flush_denormals_on_this_thread() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        mxcsr::write(mxcsr::read() | FTZ_DAZ);
        true
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// Whether the calling thread flushes subnormals to zero (always `false` off x86).
pub fn denormals_flushed_on_this_thread() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        let csr = mxcsr::read();
        csr & FTZ_DAZ == FTZ_DAZ
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// A rayon pool builder whose workers flush subnormals to zero; `threads` 0 keeps rayon's
/// default (`RAYON_NUM_THREADS`, else one per core).
pub fn denormal_free_pool(threads: usize) -> rayon::ThreadPoolBuilder {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| {
            flush_denormals_on_this_thread();
        })
}

/// What [`flush_denormals`] managed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushDenormals {
    /// The calling thread and a new global rayon pool flush subnormals.
    Everywhere,
    /// The calling thread does, but the global rayon pool already existed (built by someone
    /// else, or by the first use of rayon) and its workers keep their mode.
    CallingThreadOnly,
    /// Not available on this target.
    Unsupported,
}

/// Sets flush-to-zero on the calling thread and builds rayon's global pool (`threads` 0: rayon's
/// default) with workers that set it too. Call once at start-up, before anything uses rayon.
pub fn flush_denormals(threads: usize) -> FlushDenormals {
    if cfg!(not(any(target_arch = "x86", target_arch = "x86_64"))) {
        return FlushDenormals::Unsupported;
    }
    // The pool first: its workers then get the mode from their start handler, not by inheriting
    // this thread's (which Linux would copy at thread creation, but not every OS does).
    let built = denormal_free_pool(threads).build_global();
    flush_denormals_on_this_thread();
    match built {
        Ok(()) => FlushDenormals::Everywhere,
        Err(_) => FlushDenormals::CallingThreadOnly,
    }
}
