//! Flush-to-zero on the calling thread and on the global pool's workers. Its own test binary:
//! it builds rayon's global pool.
use std::hint::black_box;

/// Half of the smallest normal f32: a subnormal unless flushed.
fn halved_min_normal() -> f32 {
    black_box(f32::MIN_POSITIVE) * black_box(0.5f32)
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[test]
fn the_calling_thread_flushes_after_the_switch() {
    std::thread::spawn(|| {
        assert!(!crossglg_kernels::denormals_flushed_on_this_thread());
        assert!(halved_min_normal() > 0.0, "a fresh thread keeps subnormals");
        assert!(crossglg_kernels::flush_denormals_on_this_thread());
        assert!(crossglg_kernels::denormals_flushed_on_this_thread());
        assert_eq!(halved_min_normal(), 0.0);
        // DAZ: a subnormal input reads as zero.
        let sub = f32::from_bits(1);
        assert_eq!(black_box(sub) * black_box(1.0f32), 0.0);
    })
    .join()
    .unwrap();
}

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[test]
fn every_worker_of_the_global_pool_flushes() {
    std::thread::spawn(|| {
        let first = crossglg_kernels::flush_denormals(2);
        assert_eq!(first, crossglg_kernels::FlushDenormals::Everywhere);
        let flags = rayon::broadcast(|_| {
            (
                crossglg_kernels::denormals_flushed_on_this_thread(),
                halved_min_normal(),
            )
        });
        assert_eq!(flags.len(), 2);
        for (flushed, v) in flags {
            assert!(flushed);
            assert_eq!(v, 0.0);
        }
        // The pool exists now: a second call can only switch its own thread.
        let again = crossglg_kernels::flush_denormals(2);
        assert_eq!(again, crossglg_kernels::FlushDenormals::CallingThreadOnly);
    })
    .join()
    .unwrap();
}

#[test]
fn a_local_pool_from_the_builder_flushes() {
    let pool = crossglg_kernels::denormal_free_pool(2).build().unwrap();
    let flushed = pool.broadcast(|_| crossglg_kernels::denormals_flushed_on_this_thread());
    let expected = cfg!(any(target_arch = "x86", target_arch = "x86_64"));
    assert_eq!(flushed, vec![expected; 2]);
}
