//! Data-parallel training: which process is which (torchrun's variables), which part of each
//! batch a rank trains on, and the sum over ranks that makes every rank take the same step.
//!
//! The sum itself is NCCL's (`--features nccl`, through cudarc, on the device's own stream).
//! What is written here is only what NCCL leaves to its caller: handing rank 0's NCCL id to the
//! other ranks before a communicator exists (`exchange`, a few bytes over one TCP connection
//! per rank, as torchrun's store does), and the sharding and weighting of the batch.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

#[derive(Debug, thiserror::Error)]
pub enum DistError {
    #[error("environment variable {name}={value:?}: {message}")]
    Env {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("rendezvous with rank 0 at {addr}: {message}")]
    Rendezvous { addr: String, message: String },
    #[error("NCCL: {0}")]
    Nccl(String),
    #[error("data-parallel training needs a build with NCCL (cargo build --features nccl) and a GPU per rank")]
    NoNccl,
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// The variables that make a process one rank of a data-parallel run.
pub const LAUNCH_VARS: [&str; 5] = [
    "WORLD_SIZE",
    "RANK",
    "LOCAL_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
];

/// This process's place in a data-parallel run, from the variables torchrun sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    pub rank: usize,
    pub world: usize,
    /// Which GPU of this node the rank uses (`cuda:LOCAL_RANK`).
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl Launch {
    /// `None` when `WORLD_SIZE` is unset: a plain single-process run.
    pub fn from_env() -> Result<Option<Self>, DistError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DistError> {
        let Some(world) = get("WORLD_SIZE") else {
            return Ok(None);
        };
        let num = |name: &'static str, value: String, max: usize| {
            value
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|&v| v < max)
                .ok_or_else(|| DistError::Env {
                    name,
                    message: format!("expected a whole number below {max}"),
                    value,
                })
        };
        let world = num("WORLD_SIZE", world, 1 << 16)?;
        if world == 0 {
            return Err(DistError::Env {
                name: "WORLD_SIZE",
                value: "0".into(),
                message: "at least one rank is needed".into(),
            });
        }
        let need = |name: &'static str| {
            get(name).ok_or_else(|| DistError::Env {
                name,
                value: String::new(),
                message: "must be set when WORLD_SIZE is".into(),
            })
        };
        let rank = num("RANK", need("RANK")?, world)?;
        let local_rank = match get("LOCAL_RANK") {
            Some(v) => num("LOCAL_RANK", v, world)?,
            None => rank,
        };
        let master_addr = get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into());
        let master_port = match get("MASTER_PORT") {
            Some(v) => num("MASTER_PORT", v, 65536)? as u16,
            None => 29500,
        };
        Ok(Some(Launch {
            rank,
            world,
            local_rank,
            master_addr,
            master_port,
        }))
    }
}

/// The slice of a batch of `len` samples that `rank` of `world` trains on: contiguous, the
/// first `len % world` ranks one sample more. The shards of all ranks cover the batch once.
pub fn shard(len: usize, rank: usize, world: usize) -> Range<usize> {
    let (base, extra) = (len / world, len % world);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// A sum over the ranks of a run.
pub trait Collective: Send + Sync {
    fn rank(&self) -> usize;
    fn world(&self) -> usize;
    /// The element-wise sum over all ranks of a flat f32 tensor (every rank calls it with a
    /// tensor of the same length, in the same order).
    fn sum(&self, t: &Tensor) -> candle_core::Result<Tensor>;
}

/// Makes every rank's variables rank 0's (the initial weights, or a resumed checkpoint's), so
/// that no rank depends on seeding giving the same numbers on every device.
pub fn broadcast_vars(c: &dyn Collective, vars: &[Var]) -> candle_core::Result<()> {
    if c.world() == 1 {
        return Ok(());
    }
    let flat: Vec<Tensor> = vars
        .iter()
        .map(|v| {
            let t = v.as_tensor().detach().flatten_all()?;
            if c.rank() == 0 {
                Ok(t)
            } else {
                t.zeros_like()
            }
        })
        .collect::<candle_core::Result<_>>()?;
    for (v, t) in vars.iter().zip(sum_packed(c, &flat, vars.iter())?) {
        v.set(&t)?;
    }
    Ok(())
}

/// The ranks' sum of `flat` (one flat tensor per variable) as one collective over their
/// concatenation, cut back into the variables' shapes and dtypes.
fn sum_packed<'a>(
    c: &dyn Collective,
    flat: &[Tensor],
    vars: impl Iterator<Item = &'a Var>,
) -> candle_core::Result<Vec<Tensor>> {
    let all = c.sum(&Tensor::cat(flat, 0)?)?;
    let mut at = 0;
    vars.map(|v| {
        let n = v.elem_count();
        let t = all
            .narrow(0, at, n)?
            .reshape(v.shape())?
            .to_dtype(v.dtype());
        at += n;
        t
    })
    .collect()
}

/// Replaces each variable's gradient by `Σ_r weight_r · g_r` over the ranks (`weight`: this
/// rank's share of the global batch, so the result is the gradient of the global batch's mean
/// loss when each rank's loss is its shard's mean), as one sum of one flat tensor.
///
/// Which variables take part is agreed on at the first step (a variable with a gradient on any
/// rank; the others stay without one, as in a single process) and kept: a per-step agreement
/// would wait for the device every step. A later step whose gradients cover other variables
/// is an error rather than a silent mismatch between ranks.
pub struct GradReducer {
    used: Option<Vec<bool>>,
}

impl GradReducer {
    pub fn new() -> Self {
        GradReducer { used: None }
    }

    pub fn reduce(
        &mut self,
        c: &dyn Collective,
        vars: &[Var],
        grads: &mut GradStore,
        weight: f64,
    ) -> candle_core::Result<()> {
        let dev = match vars.first() {
            Some(v) => v.device().clone(),
            None => return Ok(()),
        };
        let here: Vec<bool> = vars
            .iter()
            .map(|v| grads.get(v.as_tensor()).is_some())
            .collect();
        let used = match &self.used {
            Some(u) => u,
            None => {
                let flags: Vec<f32> = here.iter().map(|&p| f32::from(u8::from(p))).collect();
                let all = c
                    .sum(&Tensor::from_vec(flags, vars.len(), &dev)?)?
                    .to_vec1::<f32>()?;
                self.used.insert(all.iter().map(|&n| n > 0.0).collect())
            }
        };
        if let Some(i) = (0..vars.len()).find(|&i| here[i] && !used[i]) {
            candle_core::bail!(
                "variable {i} has a gradient now but had none on any rank at the first step"
            );
        }
        let picked: Vec<&Var> = vars
            .iter()
            .zip(used)
            .filter(|(_, &u)| u)
            .map(|(v, _)| v)
            .collect();
        if picked.is_empty() {
            return Ok(());
        }
        let flat: Vec<Tensor> = picked
            .iter()
            .map(|v| match grads.get(v.as_tensor()) {
                Some(g) => {
                    g.detach()
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        * weight
                }
                None => Tensor::zeros(v.elem_count(), candle_core::DType::F32, &dev),
            })
            .collect::<candle_core::Result<_>>()?;
        for (v, g) in picked
            .iter()
            .zip(sum_packed(c, &flat, picked.iter().copied())?)
        {
            grads.insert(v.as_tensor(), g);
        }
        Ok(())
    }
}

impl Default for GradReducer {
    fn default() -> Self {
        Self::new()
    }
}

const MAGIC: &[u8; 4] = b"CGLG";
/// NCCL's id is 128 bytes; nothing this exchange carries is larger.
const MAX_PAYLOAD: usize = 4096;

/// Hands rank 0's `payload` (its NCCL id) to every other rank: rank 0 listens on
/// `MASTER_ADDR:MASTER_PORT` until all `world - 1` ranks have fetched it, the others connect
/// (retrying while rank 0 starts) and receive it. Each side checks the other's world size.
/// Gives up after `timeout`.
pub fn exchange(
    launch: &Launch,
    payload: Option<&[u8]>,
    timeout: Duration,
) -> Result<Vec<u8>, DistError> {
    let addr = format!("{}:{}", launch.master_addr, launch.master_port);
    let err = |message: String| DistError::Rendezvous {
        addr: addr.clone(),
        message,
    };
    let deadline = Instant::now() + timeout;
    let world = u32::try_from(launch.world).map_err(|_| err("world size too large".into()))?;
    if launch.rank == 0 {
        let payload = payload.ok_or_else(|| err("rank 0 has nothing to hand out".into()))?;
        if payload.len() > MAX_PAYLOAD {
            return Err(err(format!("payload of {} bytes", payload.len())));
        }
        if launch.world == 1 {
            return Ok(payload.to_vec());
        }
        let listener = TcpListener::bind(&addr).map_err(|e| err(format!("cannot listen: {e}")))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| err(e.to_string()))?;
        let mut served = vec![false; launch.world];
        served[0] = true;
        while served.iter().any(|s| !s) {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).map_err(|e| err(e.to_string()))?;
                    let left = deadline.saturating_duration_since(Instant::now());
                    let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
                    let mut hello = [0u8; 12];
                    if let Err(e) = s.read_exact(&mut hello) {
                        tracing::warn!("rendezvous: ignoring {peer}: {e}");
                        continue;
                    }
                    if &hello[..4] != MAGIC {
                        tracing::warn!("rendezvous: ignoring {peer}: not a crossglg rank");
                        continue;
                    }
                    let rank =
                        u32::from_le_bytes(hello[4..8].try_into().expect("4 bytes")) as usize;
                    let their_world = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes"));
                    if their_world != world || rank == 0 || rank >= launch.world || served[rank] {
                        return Err(err(format!(
                            "{peer} says it is rank {rank} of {their_world}; this run is {world} ranks and rank {rank} is {}",
                            if rank < launch.world && served[rank] { "already here" } else { "not one of them" }
                        )));
                    }
                    let mut msg = MAGIC.to_vec();
                    msg.extend((payload.len() as u32).to_le_bytes());
                    msg.extend(payload);
                    s.write_all(&msg)
                        .map_err(|e| err(format!("sending to rank {rank}: {e}")))?;
                    served[rank] = true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<usize> =
                            (0..launch.world).filter(|&r| !served[r]).collect();
                        return Err(err(format!(
                            "ranks {missing:?} did not arrive within {timeout:?}"
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(format!("accept: {e}"))),
            }
        }
        Ok(payload.to_vec())
    } else {
        let target = addr
            .to_socket_addrs()
            .map_err(|e| err(format!("cannot resolve: {e}")))?
            .next()
            .ok_or_else(|| err("resolves to no address".into()))?;
        let mut s = loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(err(format!("rank 0 not reachable within {timeout:?}: {e}")))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = s.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut hello = MAGIC.to_vec();
        hello.extend((launch.rank as u32).to_le_bytes());
        hello.extend(world.to_le_bytes());
        s.write_all(&hello).map_err(|e| err(e.to_string()))?;
        let mut head = [0u8; 8];
        s.read_exact(&mut head)
            .map_err(|e| err(format!("no answer from rank 0: {e}")))?;
        if &head[..4] != MAGIC {
            return Err(err("the answer is not from a crossglg rank 0".into()));
        }
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        if len > MAX_PAYLOAD {
            return Err(err(format!("rank 0 announced {len} bytes")));
        }
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload)
            .map_err(|e| err(format!("reading the id: {e}")))?;
        Ok(payload)
    }
}

/// How long ranks wait for each other to start.
pub const RENDEZVOUS_TIMEOUT: Duration = Duration::from_secs(300);

/// Joins the run `launch` describes on `device` (this rank's GPU): NCCL where the build has it.
pub fn join(
    launch: &Launch,
    device: &candle_core::Device,
) -> Result<std::sync::Arc<dyn Collective>, DistError> {
    #[cfg(feature = "nccl")]
    {
        Ok(std::sync::Arc::new(nccl::Nccl::init(
            launch,
            device,
            RENDEZVOUS_TIMEOUT,
        )?))
    }
    #[cfg(not(feature = "nccl"))]
    {
        let _ = (launch, device);
        Err(DistError::NoNccl)
    }
}

/// NCCL over the GPUs of the run, one per rank.
#[cfg(feature = "nccl")]
#[allow(unsafe_code)] // Send + Sync for cudarc's communicator (`Shared`)
pub mod nccl {
    use std::sync::Arc;

    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::nccl::safe::{Comm, Id, ReduceOp};
    use candle_core::{CpuStorage, CudaStorage, CustomOp1, Device, Layout, Shape, Tensor};

    use super::{Collective, DistError, Launch};

    /// cudarc's communicator, which holds a raw NCCL handle and so is neither Send nor Sync.
    struct Shared(Comm);

    // SAFETY: the communicator is used from the training thread only (one collective at a
    // time, in step order); candle's custom-op trait and `Collective` ask for Send + Sync of
    // what they hold.
    unsafe impl Send for Shared {}
    unsafe impl Sync for Shared {}

    pub struct Nccl {
        comm: Arc<Shared>,
    }

    impl Nccl {
        /// Joins the run's communicator on `device` (the rank's GPU), after handing rank 0's id
        /// to the others.
        pub fn init(
            launch: &Launch,
            device: &Device,
            timeout: std::time::Duration,
        ) -> Result<Self, DistError> {
            let Device::Cuda(dev) = device else {
                return Err(DistError::Nccl(format!(
                    "rank {} is on {device:?}; data-parallel training runs on GPUs",
                    launch.rank
                )));
            };
            let mine = if launch.rank == 0 {
                let id = Id::new().map_err(|e| DistError::Nccl(format!("{e:?}")))?;
                Some(id.internal().iter().map(|&c| c as u8).collect::<Vec<u8>>())
            } else {
                None
            };
            let bytes = super::exchange(launch, mine.as_deref(), timeout)?;
            let raw: [core::ffi::c_char; 128] = bytes
                .iter()
                .map(|&b| b as core::ffi::c_char)
                .collect::<Vec<_>>()
                .try_into()
                .map_err(|_| DistError::Nccl(format!("an id of {} bytes, not 128", bytes.len())))?;
            let comm = Comm::from_rank(
                dev.cuda_stream(),
                launch.rank,
                launch.world,
                Id::uninit(raw),
            )
            .map_err(|e| DistError::Nccl(format!("{e:?}")))?;
            Ok(Nccl {
                comm: Arc::new(Shared(comm)),
            })
        }
    }

    struct Sum(Arc<Shared>);

    impl CustomOp1 for Sum {
        fn name(&self) -> &'static str {
            "nccl-all-reduce-sum"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            candle_core::bail!("NCCL sums tensors on a GPU")
        }

        fn cuda_fwd(
            &self,
            s: &CudaStorage,
            l: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let (start, end) = l
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("NCCL sum of a strided tensor".into()))?;
            let src = s.as_cuda_slice::<f32>()?.slice(start..end);
            let dev = s.device().clone();
            let mut dst = dev.alloc_zeros::<f32>(end - start)?;
            let Shared(comm) = &*self.0;
            comm.all_reduce(&src, &mut dst, &ReduceOp::Sum)
                .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
            Ok((CudaStorage::wrap_cuda_slice(dst, dev), l.shape().clone()))
        }
    }

    impl Collective for Nccl {
        fn rank(&self) -> usize {
            self.comm.0.rank()
        }
        fn world(&self) -> usize {
            self.comm.0.world_size()
        }
        fn sum(&self, t: &Tensor) -> candle_core::Result<Tensor> {
            t.contiguous()?.apply_op1_no_bwd(&Sum(self.comm.clone()))
        }
    }
}

/// Ranks as threads of one process, summing through shared memory: the tests' stand-in for
/// NCCL, to check sharding, weighting and rank 0's writing on the CPU.
#[cfg(test)]
pub(crate) mod local {
    use std::sync::{Arc, Barrier, Mutex};

    use candle_core::Tensor;

    use super::Collective;

    pub(crate) struct LocalGroup {
        rank: usize,
        world: usize,
        slots: Arc<Mutex<Vec<Vec<f32>>>>,
        barrier: Arc<Barrier>,
    }

    pub(crate) fn group(world: usize) -> Vec<LocalGroup> {
        let slots = Arc::new(Mutex::new(vec![Vec::new(); world]));
        let barrier = Arc::new(Barrier::new(world));
        (0..world)
            .map(|rank| LocalGroup {
                rank,
                world,
                slots: slots.clone(),
                barrier: barrier.clone(),
            })
            .collect()
    }

    impl Collective for LocalGroup {
        fn rank(&self) -> usize {
            self.rank
        }
        fn world(&self) -> usize {
            self.world
        }
        fn sum(&self, t: &Tensor) -> candle_core::Result<Tensor> {
            self.slots.lock().unwrap()[self.rank] = t.to_vec1::<f32>()?;
            self.barrier.wait();
            // every rank adds in rank order: the same numbers everywhere
            let out = {
                let slots = self.slots.lock().unwrap();
                let mut acc = vec![0f32; slots[0].len()];
                for s in slots.iter() {
                    if s.len() != acc.len() {
                        candle_core::bail!("ranks summed tensors of different lengths");
                    }
                    acc.iter_mut().zip(s).for_each(|(a, b)| *a += b);
                }
                acc
            };
            // nobody writes the next round before everybody has read this one
            self.barrier.wait();
            Tensor::from_vec(out, t.elem_count(), t.device())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn shards_cover_a_batch_once() {
        for len in 0..40 {
            for world in 1..9 {
                let mut seen = vec![0; len];
                let mut prev_end = 0;
                for r in 0..world {
                    let s = shard(len, r, world);
                    assert_eq!(s.start, prev_end);
                    prev_end = s.end;
                    assert!(s.len() == len / world || s.len() == len / world + 1);
                    s.for_each(|i| seen[i] += 1);
                }
                assert!(seen.iter().all(|&c| c == 1), "{len} {world}");
            }
        }
    }

    #[test]
    fn launch_from_torchrun_variables() {
        let vars = |pairs: &[(&str, &str)]| {
            let m: HashMap<String, String> = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            Launch::from_vars(move |k| m.get(k).cloned())
        };
        assert_eq!(vars(&[]).unwrap(), None);
        let l = vars(&[
            ("WORLD_SIZE", "4"),
            ("RANK", "3"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(
            l,
            Launch {
                rank: 3,
                world: 4,
                local_rank: 1,
                master_addr: "node0".into(),
                master_port: 1234
            }
        );
        let d = vars(&[("WORLD_SIZE", "2"), ("RANK", "1")])
            .unwrap()
            .unwrap();
        assert_eq!((d.local_rank, d.master_port), (1, 29500));
        for bad in [
            vec![("WORLD_SIZE", "2")],
            vec![("WORLD_SIZE", "2"), ("RANK", "2")],
            vec![("WORLD_SIZE", "0"), ("RANK", "0")],
            vec![("WORLD_SIZE", "x"), ("RANK", "0")],
            vec![("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")],
        ] {
            let e = vars(&bad).unwrap_err().to_string();
            assert!(e.contains("environment variable"), "{e}");
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn rank_zero_hands_its_id_to_every_rank() {
        let port = free_port();
        let launch = |rank, world| Launch {
            rank,
            world,
            local_rank: rank,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        let id: Vec<u8> = (0..128).map(|i| (i * 7) as u8).collect();
        // the others start first and wait for rank 0
        let others: Vec<_> = (1..4)
            .map(|r| {
                let l = launch(r, 4);
                std::thread::spawn(move || exchange(&l, None, Duration::from_secs(20)))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let got0 = exchange(&launch(0, 4), Some(&id), Duration::from_secs(20)).unwrap();
        assert_eq!(got0, id);
        for h in others {
            assert_eq!(h.join().unwrap().unwrap(), id);
        }
    }

    #[test]
    fn rendezvous_errors_name_the_problem() {
        let port = free_port();
        let l = move |rank, world| Launch {
            rank,
            world,
            local_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: port,
        };
        // nobody at rank 0
        let e = exchange(&l(1, 2), None, Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("not reachable"), "{e}");
        // a rank that never comes
        let e = exchange(&l(0, 2), Some(b"id"), Duration::from_millis(300)).unwrap_err();
        assert!(e.to_string().contains("did not arrive"), "{e}");
        // a rank launched with another world size
        let h =
            std::thread::spawn(move || exchange(&l(0, 2), Some(b"id"), Duration::from_secs(10)));
        std::thread::sleep(Duration::from_millis(100));
        let _ = exchange(&l(1, 3), None, Duration::from_secs(2));
        let e = h.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("rank 1 of 3"), "{e}");
    }

    #[test]
    fn reduced_gradients_are_the_global_batch_mean() {
        use candle_core::{DType, Device};
        // loss_r = mean over rank r's shard of (w · x_i)²: the weighted sum of the ranks'
        // gradients is the gradient of the whole batch's mean loss
        let xs: Vec<f32> = vec![1.0, -2.0, 0.5, 3.0, 1.5];
        let world = 2;
        let group = local::group(world);
        let handles: Vec<_> = group
            .into_iter()
            .map(|g| {
                let xs = xs.clone();
                std::thread::spawn(move || {
                    let w = Var::new(&[0.7f32], &Device::Cpu).unwrap();
                    let b = Var::new(&[0.3f32], &Device::Cpu).unwrap();
                    let s = shard(xs.len(), g.rank(), world);
                    let x = Tensor::new(&xs[s.clone()], &Device::Cpu).unwrap();
                    // only rank 0 uses b: its gradient comes from rank 0 alone
                    let y = x.broadcast_mul(w.as_tensor()).unwrap();
                    let y = if g.rank() == 0 {
                        y.broadcast_add(b.as_tensor()).unwrap()
                    } else {
                        y
                    };
                    let loss = y.sqr().unwrap().mean_all().unwrap();
                    let mut grads = loss.backward().unwrap();
                    let weight = s.len() as f64 / xs.len() as f64;
                    let mut r = GradReducer::new();
                    r.reduce(&g, &[w.clone(), b.clone()], &mut grads, weight)
                        .unwrap();
                    let gw = grads.get(w.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0];
                    let gb = grads.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap()[0];
                    (
                        gw,
                        gb,
                        grads.get(b.as_tensor()).unwrap().dtype() == DType::F32,
                    )
                })
            })
            .collect();
        let got: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        // by hand: shard 0 = xs[0..3] (with b), shard 1 = xs[3..5]
        let n = xs.len() as f32;
        let gw: f32 = xs[..3]
            .iter()
            .map(|x| 2.0 * (0.7 * x + 0.3) * x)
            .sum::<f32>()
            / n
            + xs[3..].iter().map(|x| 2.0 * 0.7 * x * x).sum::<f32>() / n;
        let gb: f32 = xs[..3].iter().map(|x| 2.0 * (0.7 * x + 0.3)).sum::<f32>() / n;
        for (w, b, f32ok) in got {
            assert!((w - gw).abs() < 1e-5, "{w} vs {gw}");
            assert!((b - gb).abs() < 1e-5, "{b} vs {gb}");
            assert!(f32ok);
        }
    }

    #[test]
    fn broadcast_makes_every_rank_rank_zeros() {
        let handles: Vec<_> = local::group(3)
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let v = Var::new(&[[g.rank() as f32 + 1.0; 2]; 2], &candle_core::Device::Cpu)
                        .unwrap();
                    broadcast_vars(&g, std::slice::from_ref(&v)).unwrap();
                    v.as_tensor().to_vec2::<f32>().unwrap()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), vec![vec![1.0; 2]; 2]);
        }
    }

    fn tiny_config(dir: &std::path::Path, batch: usize) -> crate::config::TrainConfig {
        let desc = dir.join("descriptions.json");
        std::fs::write(&desc, include_str!("../demo/synthetic-descriptions.json")).unwrap();
        let text = format!(
            r#"
seed = 3
epochs = 2
batch_size = {batch}
[data]
split = "synthetic"
[data.synthetic]
classes = ["wave", "punch", "kick", "squat", "jump", "clap"]
samples_per_class = 5
subjects = 3
views = 2
frames = [20, 24]
[text]
descriptions = {desc:?}
encoder = "hashed"
hashed_dim = 16
[preprocess]
frames = 12
persons = 1
[model]
guidance = "both"
[model.encoder]
kind = "st_gcn"
num_persons = 1
blocks = [{{ channels = 8, stride = 1 }}, {{ channels = 8, stride = 2 }}]
[model.jid]
after_block = 1
hidden = 8
[model.interaction]
dim = 8
heads = 2
depth = 1
[eval]
draws = 0
"#
        );
        crate::config::TrainConfig::from_toml_str(&text, "test config").unwrap()
    }

    fn quiet(c: Option<std::sync::Arc<dyn Collective>>) -> crate::run::TrainOptions {
        crate::run::TrainOptions {
            progress: false,
            collective: c,
            ..Default::default()
        }
    }

    #[test]
    fn one_rank_through_the_collective_trains_as_one_process() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tiny_config(tmp.path(), 7);
        let plain = crate::run::train(&cfg, &tmp.path().join("plain"), &quiet(None)).unwrap();
        let one: std::sync::Arc<dyn Collective> =
            std::sync::Arc::new(local::group(1).pop().unwrap());
        let ranked = crate::run::train(&cfg, &tmp.path().join("one"), &quiet(Some(one))).unwrap();
        assert_eq!(plain.weights_hash, ranked.weights_hash);
        assert_eq!(plain.steps, ranked.steps);
    }

    #[test]
    fn ranks_share_each_batch_and_end_with_the_same_weights() {
        let tmp = tempfile::tempdir().unwrap();
        // 24 training samples (4 auxiliary classes), batch 7: the last batch of 3 is shared
        // by 3 ranks (one sample each)
        let cfg = tiny_config(tmp.path(), 7);
        let dirs: Vec<_> = (0..3)
            .map(|r| tmp.path().join(format!("rank{r}")))
            .collect();
        let handles: Vec<_> = local::group(3)
            .into_iter()
            .zip(dirs.clone())
            .map(|(g, dir)| {
                let cfg = cfg.clone();
                std::thread::spawn(move || {
                    let g: std::sync::Arc<dyn Collective> = std::sync::Arc::new(g);
                    crate::run::train(&cfg, &dir, &quiet(Some(g))).unwrap()
                })
            })
            .collect();
        let sums: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        assert!(sums.iter().all(|s| s.weights_hash == sums[0].weights_hash));
        let single = crate::run::train(&cfg, &tmp.path().join("single"), &quiet(None)).unwrap();
        assert_eq!(sums[0].steps, single.steps, "the same steps per epoch");
        // rank 0 wrote the run and evaluated; the others wrote nothing
        assert!(dirs[0].join("last.safetensors").exists());
        assert!(dirs[0].join("report.json").exists());
        assert!(!sums[0].reports.is_empty() && sums[1].reports.is_empty());
        for d in &dirs[1..] {
            assert!(!d.exists(), "{} was written", d.display());
        }
        // rank 0's checkpoint holds the weights every rank ended with
        let (model, _, _) =
            crate::run::TrainedModel::load(&dirs[0], &candle_core::Device::Cpu).unwrap();
        assert_eq!(model.weights_hash, sums[1].weights_hash);
    }

    #[test]
    fn a_batch_smaller_than_the_ranks_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let cfg = tiny_config(tmp.path(), 2);
        let handles: Vec<_> = local::group(3)
            .into_iter()
            .map(|g| {
                let cfg = cfg.clone();
                let dir = tmp.path().join(format!("r{}", g.rank()));
                std::thread::spawn(move || {
                    let g: std::sync::Arc<dyn Collective> = std::sync::Arc::new(g);
                    crate::run::train(&cfg, &dir, &quiet(Some(g)))
                        .err()
                        .map(|e| e.to_string())
                })
            })
            .collect();
        for h in handles {
            let e = h.join().unwrap().expect("refused");
            assert!(e.contains("cannot be shared by 3 ranks"), "{e}");
        }
        // refused before anything was written
        assert!(!tmp.path().join("r0").exists());
    }
}
