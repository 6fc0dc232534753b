//! The device a user names (`cpu`, `cuda`, `cuda:N`), opened; shared by training, serving and
//! the benchmarks so that every command reads the name the same way.

use candle_core::Device;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error("device `{name}`: use cpu, cuda or cuda:N")]
    Name { name: String },
    #[error("cannot open CUDA device {ordinal}: {message} (a GPU, its driver, and a build with --features cuda are needed)")]
    Cuda { ordinal: usize, message: String },
}

/// Opens the named device.
pub fn device_from(name: &str) -> Result<Device, DeviceError> {
    match name {
        "cpu" => Ok(Device::Cpu),
        s if s == "cuda" || s.starts_with("cuda:") => {
            let ordinal = match s.strip_prefix("cuda:") {
                None => 0,
                Some(n) => n
                    .parse::<usize>()
                    .map_err(|_| DeviceError::Name { name: s.into() })?,
            };
            // candle's error carries a backtrace of its own; the first line says what failed
            Device::new_cuda(ordinal).map_err(|e| DeviceError::Cuda {
                ordinal,
                message: e.to_string().lines().next().unwrap_or_default().to_string(),
            })
        }
        s => Err(DeviceError::Name { name: s.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(device_from("cpu").unwrap().is_cpu());
        for bad in ["gpu", "cuda:x", "cudax", "cuda:", ""] {
            assert!(
                matches!(device_from(bad), Err(DeviceError::Name { .. })),
                "{bad}"
            );
        }
        // without a GPU (or without --features cuda) opening one is a clear error, not a panic
        if !candle_core::utils::cuda_is_available() {
            assert!(matches!(
                device_from("cuda:0"),
                Err(DeviceError::Cuda { ordinal: 0, .. })
            ));
        }
    }
}
