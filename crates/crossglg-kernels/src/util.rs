//! Helpers to get at CPU f32 data of tensors and storages.

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, DType, Layout, Result, Shape, Storage, Tensor,
};
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// The contiguous f32 slice behind a CPU storage + layout, or an error naming `op`.
pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> Result<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        other => bail!("{op}: only f32 is supported, got {:?}", other.dtype()),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => bail!("{op}: input must be contiguous (call .contiguous() first)"),
    }
}

/// Runs `f` on the contiguous f32 data of `t` (made contiguous first when needed).
pub(crate) fn with_data<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    if t.dtype() != DType::F32 {
        bail!("{op}: only f32 is supported, got {:?}", t.dtype())
    }
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(slice(cpu, layout, op)?),
        _ => bail!("{op}: only the CPU device is supported"),
    }
}

/// Runs `f` on the contiguous f32 data of every tensor of `ts` (made contiguous first when
/// needed): the backward passes read four or five tensors at once.
pub(crate) fn with_all<const K: usize, R>(
    ts: [&Tensor; K],
    op: &str,
    f: impl FnOnce([&[f32]; K]) -> Result<R>,
) -> Result<R> {
    let cs = ts
        .iter()
        .map(|t| {
            if t.dtype() != DType::F32 {
                bail!("{op}: only f32 is supported, got {:?}", t.dtype())
            }
            t.contiguous()
        })
        .collect::<Result<Vec<_>>>()?;
    let guards: Vec<_> = cs.iter().map(|t| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(K);
    for (storage, layout) in &guards {
        match &**storage {
            Storage::Cpu(cpu) => slices.push(slice(cpu, layout, op)?),
            _ => bail!("{op}: only the CPU device is supported"),
        }
    }
    match slices.try_into() {
        Ok(all) => f(all),
        Err(_) => bail!("{op}: internal error, lost a tensor"),
    }
}

/// Wraps an owned f32 buffer as a tensor on the CPU.
pub(crate) fn tensor(v: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Tensor::from_vec(v, shape, &candle_core::Device::Cpu)
}

/// Fails unless `t` is an f32 CPU tensor.
pub(crate) fn check_cpu_f32(t: &Tensor, op: &str, what: &str) -> Result<()> {
    if t.dtype() != DType::F32 {
        bail!("{op}: {what} must be f32, got {:?}", t.dtype())
    }
    if !t.device().is_cpu() {
        bail!("{op}: {what} must be on the CPU")
    }
    Ok(())
}

/// Fails when any of `ts` records an autograd graph: for the forward-only inference kernels,
/// whose outputs would silently cut the gradient.
pub(crate) fn check_untracked<'a>(
    ts: impl IntoIterator<Item = &'a Tensor>,
    op: &str,
) -> Result<()> {
    if ts.into_iter().any(|t| t.track_op()) {
        bail!("{op}: inference only (no backward pass), but an input tracks gradients")
    }
    Ok(())
}

/// Fails unless `b` is an f32 CPU vector of `co` values (a per-output-channel bias).
pub(crate) fn check_bias(b: &Tensor, co: usize, op: &str) -> Result<()> {
    check_cpu_f32(b, op, "bias")?;
    if b.dims() != [co] {
        bail!(
            "{op}: bias {:?} does not match {co} output channels",
            b.dims()
        )
    }
    Ok(())
}

/// Samples per group when a batch gradient is accumulated in parallel. The groups depend on
/// the batch size alone (at most 16 of them), each is accumulated in sample order and the group
/// sums are added in group order, so the result is bit-identical whatever the thread count and
/// scheduling (rayon's `fold`/`reduce` groups by work stealing, which made training runs with
/// the same seed differ in the last bits, then in their accuracy).
pub(crate) fn group_size(n: usize) -> usize {
    n.div_ceil(16).max(1)
}

/// Sums per-group accumulators.
pub(crate) fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    for (x, y) in a.iter_mut().zip(b) {
        *x += y;
    }
    a
}

/// A zeroed buffer of `n` floats, zero-filled by the rayon pool for large `n`. `vec![0.0; n]`
/// is a `calloc`, which must `memset` memory the tuned allocator hands back for reuse; that
/// serial pass on the calling thread was about 5 % of an InfoGCN inference step.
pub(crate) fn zeros(n: usize) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    if n < 4 * CHUNK {
        return vec![0f32; n];
    }
    planes(n, CHUNK, |_| 0.0)
}

/// `n` floats in planes of `plane` values, plane `i` filled with `value(i)`, written once by
/// the rayon pool (no zero-fill first). The last plane may be shorter.
pub(crate) fn planes(n: usize, plane: usize, value: impl Fn(usize) -> f32 + Sync) -> Vec<f32> {
    build_chunks(n, plane, plane, |i, _| value(i), |_, _| {})
}

/// What an inference kernel does to each output row before it is done: add a residual read
/// from channels `offset..` of a `(N, C_res, T, V)` buffer, then ReLU.
pub(crate) struct Epilogue<'a> {
    /// `(data, C_res, offset)`
    pub residual: Option<(&'a [f32], usize, usize)>,
    pub relu: bool,
    /// Values per output channel (`T·V`).
    pub plane: usize,
}

impl Epilogue<'_> {
    pub const NONE: Epilogue<'static> = Epilogue {
        residual: None,
        relu: false,
        plane: 0,
    };

    /// Applies the epilogue to output channel `o` of sample `n` (`row` has `plane` values).
    #[inline]
    pub fn apply_row(&self, n: usize, o: usize, row: &mut [f32]) {
        if let Some((r, cr, off)) = self.residual {
            let rr = &r[((n * cr) + off + o) * self.plane..][..self.plane];
            row.iter_mut().zip(rr).for_each(|(y, r)| *y += r);
        }
        if self.relu {
            row.iter_mut().for_each(|y| *y = y.max(0.0));
        }
    }
}

/// [`with_data`] for an optional tensor.
pub(crate) fn with_opt<R>(
    t: Option<&Tensor>,
    op: &str,
    f: impl FnOnce(Option<&[f32]>) -> Result<R>,
) -> Result<R> {
    match t {
        Some(t) => with_data(t, op, |d| f(Some(d))),
        None => f(None),
    }
}

thread_local! {
    /// Per-thread scratch buffers for [`with_scratch`].
    static SCRATCH: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with `K` scratch buffers of the given sizes, kept per thread and reused across
/// calls (a fresh buffer per task was zero-filled, then written again). Their contents are
/// left over from earlier calls: `f` must write before it reads. A nested call on the same
/// thread gets fresh buffers.
pub(crate) fn with_scratch<const K: usize, R>(
    sizes: [usize; K],
    f: impl FnOnce([&mut [f32]; K]) -> R,
) -> R {
    SCRATCH.with(|cell| {
        let mut owned;
        let mut guard = cell.try_borrow_mut();
        let bufs: &mut Vec<Vec<f32>> = match &mut guard {
            Ok(b) => b,
            Err(_) => {
                owned = Vec::new();
                &mut owned
            }
        };
        if bufs.len() < K {
            bufs.resize_with(K, Vec::new);
        }
        let mut slices = bufs.iter_mut().zip(sizes).map(|(b, n)| {
            if b.len() < n {
                b.resize(n, 0.0);
            }
            &mut b[..n]
        });
        let arr: [&mut [f32]; K] = std::array::from_fn(|_| slices.next().unwrap_or_default());
        f(arr)
    })
}

/// [`build_chunks`] with every chunk zeroed before `work(i, chunk)` (the output of kernels that
/// accumulate into it or overwrite it).
pub(crate) fn zeroed_chunks(
    n: usize,
    chunk: usize,
    work: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    build_chunks(n, chunk, chunk, |_, _| 0.0, work)
}

/// `out` as possibly uninitialised floats, for kernels that write through either view (a
/// reused buffer handed to an overwriting kernel).
pub(crate) fn uninit_view(out: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: `f32` and `MaybeUninit<f32>` have the same layout, and the kernels of this crate
    // only store initialised values through the view.
    #[allow(unsafe_code)]
    unsafe {
        &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>])
    }
}

/// `out` as floats once every element has been written.
///
/// # Safety
/// Every element of `out` must be initialised.
#[allow(unsafe_code)]
pub(crate) unsafe fn assume_written(out: &mut [MaybeUninit<f32>]) -> &mut [f32] {
    // SAFETY: same layout; initialised (the caller's contract).
    unsafe { &mut *(out as *mut [MaybeUninit<f32>] as *mut [f32]) }
}

/// A buffer of `n` floats built chunk by chunk on the rayon pool by `work(scratch, i, chunk)`
/// (`scratch` made once per rayon job, as in `for_each_init`), with no fill first: for kernels
/// that write every element of their chunk exactly once (a zero fill in cache still cost 4 % of
/// InfoGCN's inference). Debug builds, the tests', fill each chunk with NaN first, so an element
/// a kernel misses shows up in the comparisons with the plain path.
///
/// # Safety
/// `work` must initialise every element of the chunk it is given.
#[allow(unsafe_code)]
pub(crate) unsafe fn written_chunks<S>(
    n: usize,
    chunk: usize,
    scratch: impl Fn() -> S + Sync + Send,
    work: impl Fn(&mut S, usize, &mut [MaybeUninit<f32>]) + Sync + Send,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each_init(scratch, |s, (i, c)| {
            if cfg!(debug_assertions) {
                c.iter_mut().for_each(|e| _ = e.write(f32::NAN));
            }
            work(s, i, c)
        });
    // SAFETY: `work` initialised every chunk (this function's contract).
    unsafe { v.set_len(n) };
    v
}

/// A buffer of `n` floats built chunk by chunk on the rayon pool: chunk `i` (elements
/// `i·chunk..`, the last may be shorter) is first filled plane by plane with `value(i, p)` for
/// its `p`-th plane of `plane` elements, then handed to `work(i, chunk)` while it is still in
/// cache.
/// Replaces a buffer-wide `zeros` pass followed by the work: that pass wrote the whole output to
/// memory once more before any kernel touched it (for a 1×1 convolution, a third of its time).
pub(crate) fn build_chunks(
    n: usize,
    chunk: usize,
    plane: usize,
    value: impl Fn(usize, usize) -> f32 + Sync,
    work: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<f32> {
    let mut v: Vec<f32> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, c)| {
            for (p, pc) in c.chunks_mut(plane.max(1)).enumerate() {
                let x = value(i, p);
                pc.iter_mut().for_each(|e| _ = e.write(x));
            }
            // SAFETY: every element of `c` was initialised just above.
            #[allow(unsafe_code)]
            let c = unsafe { assume_written(c) };
            work(i, c);
        });
    // SAFETY: the first `n` elements were all initialised by the loop just above.
    #[allow(unsafe_code)]
    unsafe {
        v.set_len(n)
    };
    v
}

#[cfg(test)]
mod tests {
    #[test]
    fn planes_fills_each_plane_with_its_value() {
        let v = super::planes(10, 4, |i| i as f32 + 0.5);
        assert_eq!(v, [0.5, 0.5, 0.5, 0.5, 1.5, 1.5, 1.5, 1.5, 2.5, 2.5]);
        assert!(super::planes(0, 3, |_| 1.0).is_empty());
    }

    #[test]
    fn build_chunks_fills_planes_then_runs_the_work_per_chunk() {
        let v = super::build_chunks(
            10,
            4,
            2,
            |i, p| (i + p) as f32,
            |i, c| c[0] += 10.0 * i as f32,
        );
        assert_eq!(v, [0., 0., 1., 1., 11., 1., 2., 2., 22., 2.]);
        assert!(super::build_chunks(0, 4, 2, |_, _| 1.0, |_, _| {}).is_empty());
    }

    #[test]
    fn scratch_has_the_asked_sizes_and_nests() {
        super::with_scratch([3, 5], |[a, b]| {
            assert_eq!((a.len(), b.len()), (3, 5));
            a.fill(1.0);
            super::with_scratch([4], |[c]| {
                assert_eq!(c.len(), 4);
                c.fill(2.0);
            });
            assert!(a.iter().all(|x| *x == 1.0));
        });
        super::with_scratch([2, 1, 7], |[a, b, c]| {
            assert_eq!((a.len(), b.len(), c.len()), (2, 1, 7))
        });
    }

    #[test]
    fn zeros_is_zero_filled_at_every_size() {
        for n in [0, 5, (1 << 18) - 1, 1 << 18, (1 << 20) + 3] {
            let v = super::zeros(n);
            assert_eq!(v.len(), n);
            assert!(v.iter().all(|x| *x == 0.0));
        }
    }
}
