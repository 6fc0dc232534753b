//! Skeleton graph as plain data, and the adjacency partitions the encoders use.
//!
//! The model crate never knows a skeleton: the caller builds a [`Graph`] from its layout
//! (joint count, bones, centre joint) and every encoder derives its matrices from it.

use crate::error::{ModelError, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// A skeleton topology: `num_joints` joints, undirected bones given as `(child, parent)` index
/// pairs (the direction is not used: "inward" is decided by hop distance to `center`), and the
/// centre joint of the spatial partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Graph {
    pub num_joints: usize,
    pub edges: Vec<(usize, usize)>,
    pub center: usize,
}

impl Graph {
    /// Checks indices, self loops, duplicate bones and connectivity.
    pub fn new(num_joints: usize, edges: Vec<(usize, usize)>, center: usize) -> Result<Self> {
        let g = Self {
            num_joints,
            edges,
            center,
        };
        g.validate()?;
        Ok(g)
    }

    /// Validation as in [`Graph::new`], for graphs built as struct literals or deserialised.
    pub fn validate(&self) -> Result<()> {
        let v = self.num_joints;
        if v == 0 {
            return Err(ModelError::Graph("num_joints is 0".into()));
        }
        if self.center >= v {
            return Err(ModelError::Graph(format!(
                "center {} is not a joint index (num_joints = {v})",
                self.center
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, &(a, b)) in self.edges.iter().enumerate() {
            if a >= v || b >= v {
                return Err(ModelError::Graph(format!(
                    "edge {i} = ({a}, {b}) names a joint >= num_joints = {v}"
                )));
            }
            if a == b {
                return Err(ModelError::Graph(format!(
                    "edge {i} = ({a}, {b}) is a self loop"
                )));
            }
            if !seen.insert((a.min(b), a.max(b))) {
                return Err(ModelError::Graph(format!(
                    "edge {i} = ({a}, {b}) is listed twice"
                )));
            }
        }
        let hops = self.hops_from_center();
        if let Some(j) = hops.iter().position(|h| h.is_none()) {
            return Err(ModelError::Graph(format!(
                "joint {j} is not connected to the center joint {}",
                self.center
            )));
        }
        Ok(())
    }

    /// Breadth-first hop distance of every joint from `center` (`None` if unreachable).
    pub fn hops_from_center(&self) -> Vec<Option<usize>> {
        let v = self.num_joints;
        let mut nbr = vec![Vec::new(); v];
        for &(a, b) in &self.edges {
            if a < v && b < v {
                nbr[a].push(b);
                nbr[b].push(a);
            }
        }
        let mut hops = vec![None; v];
        if self.center >= v {
            return hops;
        }
        hops[self.center] = Some(0);
        let mut queue = std::collections::VecDeque::from([self.center]);
        while let Some(i) = queue.pop_front() {
            let h = hops[i].unwrap_or(0);
            for &j in &nbr[i] {
                if hops[j].is_none() {
                    hops[j] = Some(h + 1);
                    queue.push_back(j);
                }
            }
        }
        hops
    }

    /// Directed bones oriented towards the centre: `(farther, nearer)` pairs.
    fn inward(&self) -> Vec<(usize, usize)> {
        let hops = self.hops_from_center();
        self.edges
            .iter()
            .map(|&(a, b)| {
                let (ha, hb) = (hops[a].unwrap_or(0), hops[b].unwrap_or(0));
                if ha >= hb {
                    (a, b)
                } else {
                    (b, a)
                }
            })
            .collect()
    }

    /// Binary matrix `A[u][v] = 1` when joint `u` aggregates from joint `v` along an outward
    /// bone (v is farther from the centre than u); InfoGCN's `A_outward_binary`.
    pub fn outward_binary(&self) -> Vec<Vec<f32>> {
        let v = self.num_joints;
        let mut a = vec![vec![0f32; v]; v];
        for (far, near) in self.inward() {
            a[near][far] = 1.0;
        }
        a
    }

    /// The three spatial partitions used by ST-GCN / CTR-GCN / InfoGCN, as `3 × V × V`
    /// row-major matrices `A_k[u][v]` (joint `u` aggregates from joint `v`):
    /// `[I, norm(inward), norm(outward)]` where inward moves information from a joint to its
    /// neighbour nearer the centre. `norm` divides every column by its sum (CTR-GCN's
    /// `normalize_digraph`, A·D⁻¹), columns that sum to zero stay zero.
    pub fn spatial_partitions(&self) -> [Vec<Vec<f32>>; 3] {
        let v = self.num_joints;
        let mut eye = vec![vec![0f32; v]; v];
        for (i, row) in eye.iter_mut().enumerate() {
            row[i] = 1.0;
        }
        let mut inw = vec![vec![0f32; v]; v];
        let mut outw = vec![vec![0f32; v]; v];
        for (far, near) in self.inward() {
            inw[near][far] = 1.0;
            outw[far][near] = 1.0;
        }
        [eye, normalize_columns(inw), normalize_columns(outw)]
    }

    /// [`Graph::spatial_partitions`] as an f32 tensor of shape `(3, V, V)`.
    pub fn spatial_tensor(&self, device: &Device) -> candle_core::Result<Tensor> {
        let parts = self.spatial_partitions();
        let v = self.num_joints;
        let flat: Vec<f32> = parts.iter().flatten().flatten().copied().collect();
        Tensor::from_vec(flat, (3, v, v), device)
    }
}

fn normalize_columns(mut a: Vec<Vec<f32>>) -> Vec<Vec<f32>> {
    let v = a.len();
    for col in 0..v {
        let s: f32 = a.iter().map(|row| row[col]).sum();
        if s > 0.0 {
            for row in a.iter_mut() {
                row[col] /= s;
            }
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 5-joint chain 0-1-2-3-4 centred on 2.
    fn chain() -> Graph {
        Graph::new(5, vec![(1, 0), (2, 1), (3, 2), (4, 3)], 2).unwrap()
    }

    #[test]
    fn partitions_of_a_chain() {
        let [eye, inw, outw] = chain().spatial_partitions();
        assert_eq!(eye[3][3], 1.0);
        // joint 1 receives from joint 0 (inward), joint 2 from 1 and 3.
        assert_eq!(inw[1][0], 1.0);
        assert_eq!(inw[2][1], 1.0);
        assert_eq!(inw[2][3], 1.0);
        assert_eq!(inw[0][1], 0.0);
        // outward: joint 1 receives from 2 (column 2 has two entries -> 0.5 each).
        assert_eq!(outw[1][2], 0.5);
        assert_eq!(outw[3][2], 0.5);
        assert_eq!(outw[0][1], 1.0);
        // every non-empty column sums to 1
        for part in [&inw, &outw] {
            for c in 0..5 {
                let s: f32 = part.iter().map(|r| r[c]).sum();
                assert!(s == 0.0 || (s - 1.0).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn edge_direction_does_not_matter() {
        let a = chain();
        let b = Graph::new(5, vec![(0, 1), (1, 2), (2, 3), (3, 4)], 2).unwrap();
        assert_eq!(a.spatial_partitions(), b.spatial_partitions());
        assert_eq!(a.outward_binary(), b.outward_binary());
    }

    #[test]
    fn err_bad_graphs() {
        assert!(Graph::new(3, vec![(0, 3)], 0).is_err());
        assert!(Graph::new(3, vec![(0, 1), (1, 2)], 3).is_err());
        assert!(Graph::new(3, vec![(0, 1)], 0).is_err()); // joint 2 unreachable
        assert!(Graph::new(3, vec![(0, 1), (1, 0), (1, 2)], 0).is_err());
        let msg = Graph::new(3, vec![(0, 0)], 0).unwrap_err().to_string();
        assert!(msg.contains("self loop"), "{msg}");
    }
}
