//! The in-memory form every reader produces and every later stage consumes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Joint positions of one sequence as a dense `[persons, frames, joints, channels]` array
/// (row-major, f32). Absent persons and missing joints are zeros, as in the field's tools.
#[derive(Debug, Clone, PartialEq)]
pub struct Skeleton {
    pub persons: usize,
    pub frames: usize,
    pub joints: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

impl Skeleton {
    pub fn zeros(persons: usize, frames: usize, joints: usize, channels: usize) -> Self {
        Skeleton {
            persons,
            frames,
            joints,
            channels,
            data: vec![0.0; persons * frames * joints * channels],
        }
    }

    /// The same sequence with joint `v` of the result taken from joint `joints[v]`: a layout
    /// permutation (`Mapping::permutation`) applied without the general mapping's averaging.
    /// Panics on an index out of range, like slice indexing: callers pass a checked permutation.
    pub fn select_joints(&self, joints: &[usize]) -> Skeleton {
        let c = self.channels;
        let mut data = Vec::with_capacity(self.persons * self.frames * joints.len() * c);
        // `max(1)`: an empty skeleton has no frames to walk (chunks of 0 would panic)
        for frame in self.data.chunks_exact((self.joints * c).max(1)) {
            for &v in joints {
                data.extend_from_slice(&frame[v * c..(v + 1) * c]);
            }
        }
        Skeleton {
            persons: self.persons,
            frames: self.frames,
            joints: joints.len(),
            channels: c,
            data,
        }
    }

    pub fn shape(&self) -> [usize; 4] {
        [self.persons, self.frames, self.joints, self.channels]
    }

    #[inline]
    pub fn index(&self, m: usize, t: usize, v: usize, c: usize) -> usize {
        ((m * self.frames + t) * self.joints + v) * self.channels + c
    }

    #[inline]
    pub fn get(&self, m: usize, t: usize, v: usize, c: usize) -> f32 {
        self.data[self.index(m, t, v, c)]
    }

    #[inline]
    pub fn set(&mut self, m: usize, t: usize, v: usize, c: usize, x: f32) {
        let i = self.index(m, t, v, c);
        self.data[i] = x;
    }

    /// The `[joints, channels]` slice of one person in one frame.
    pub fn frame(&self, m: usize, t: usize) -> &[f32] {
        let n = self.joints * self.channels;
        let s = (m * self.frames + t) * n;
        &self.data[s..s + n]
    }
}

/// What is known about a sample besides its joints. Dataset-specific fields that have no
/// slot here go in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleMeta {
    /// The dataset's own sample name, e.g. `S001C003P008R001A001` or `a01_s01_e00_v01`.
    pub name: String,
    /// 0-based class index into the dataset's class list.
    pub label: Option<usize>,
    pub subject: Option<u32>,
    /// Camera or view id.
    pub view: Option<u32>,
    pub setup: Option<u32>,
    /// Replication, repetition, trial or episode number.
    pub replication: Option<u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub meta: SampleMeta,
    pub skeleton: Skeleton,
}

/// A whole dataset in memory: its layout (by name), class names and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub layout: String,
    pub classes: Vec<String>,
    pub samples: Vec<Sample>,
}
