//! Where training and evaluation read samples from: a dataset in memory (synthetic data, a
//! freshly read folder) or a packed file, behind one small trait.

use crossglg_data::pack::PackError;
use crossglg_data::{Dataset, Layout, SampleMeta, Skeleton};

/// Random access to the samples of one dataset.
pub trait SampleSource: Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn meta(&self, i: usize) -> &SampleMeta;
    fn skeleton(&self, i: usize) -> Result<Skeleton, PackError>;
    fn classes(&self) -> &[String];
    fn layout(&self) -> &Layout;
    fn name(&self) -> &str;
    fn metas(&self) -> Vec<SampleMeta> {
        (0..self.len()).map(|i| self.meta(i).clone()).collect()
    }
}

/// A dataset held in memory, with its layout resolved.
pub struct InMemory {
    pub dataset: Dataset,
    pub layout: Layout,
}

impl SampleSource for InMemory {
    fn len(&self) -> usize {
        self.dataset.samples.len()
    }
    fn meta(&self, i: usize) -> &SampleMeta {
        &self.dataset.samples[i].meta
    }
    fn skeleton(&self, i: usize) -> Result<Skeleton, PackError> {
        Ok(self.dataset.samples[i].skeleton.clone())
    }
    fn classes(&self) -> &[String] {
        &self.dataset.classes
    }
    fn layout(&self) -> &Layout {
        &self.layout
    }
    fn name(&self) -> &str {
        &self.dataset.name
    }
}

/// A packed dataset file (`crossglg data convert`), memory-mapped.
pub struct PackedSource {
    packed: crossglg_data::pack::Packed,
    layout: Layout,
}

/// Opens a packed dataset as a [`SampleSource`].
pub fn open_packed(path: &std::path::Path) -> Result<Box<dyn SampleSource>, PackError> {
    let packed = crossglg_data::pack::Packed::open(path)?;
    let layout = packed.layout()?;
    Ok(Box::new(PackedSource { packed, layout }))
}

impl SampleSource for PackedSource {
    fn len(&self) -> usize {
        self.packed.len()
    }
    fn meta(&self, i: usize) -> &SampleMeta {
        &self.packed.metas()[i]
    }
    fn skeleton(&self, i: usize) -> Result<Skeleton, PackError> {
        self.packed.skeleton(i)
    }
    fn classes(&self) -> &[String] {
        self.packed.classes()
    }
    fn layout(&self) -> &Layout {
        &self.layout
    }
    fn name(&self) -> &str {
        self.packed.dataset_name()
    }
}
