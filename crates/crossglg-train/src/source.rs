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
    /// Classes of datasets added for training only (`[[data.extra]]`), after the dataset's
    /// own: never novel, never evaluated.
    fn extra_classes(&self) -> std::ops::Range<usize> {
        self.classes().len()..self.classes().len()
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

/// Why datasets cannot be trained on together.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    #[error(
        "[[data.extra]] {path}: its layout `{layout}` does not name the same joints as the main dataset's layout `{main}` ({detail}); a dataset can join only when both name the same joints, in any order"
    )]
    Joints {
        path: String,
        layout: String,
        main: String,
        detail: String,
    },
    #[error("[[data.extra]] {path}: class `{class}` is also a class of {other}; a class name may come from one dataset only")]
    Class {
        path: String,
        class: String,
        other: String,
    },
    #[error("[[data.extra]] {path}: its samples have {found} channels, the main dataset's {main}")]
    Channels {
        path: String,
        found: usize,
        main: usize,
    },
    #[error("[[data.extra]] {path}: {source}")]
    Read { path: String, source: PackError },
}

struct Part {
    src: Box<dyn SampleSource>,
    /// The part's joint of each main-layout joint; `None` when the order is already the same.
    joints: Option<Vec<usize>>,
    /// Index of the part's first sample in the combined numbering.
    start: usize,
}

/// The main dataset followed by datasets added for training (`[[data.extra]]`): their class
/// labels come after the main classes, their sample names get their dataset's name in front
/// (`msr-action3d/a01_s01_e01`, so names stay unique and the main split's named exemplars and
/// exclusion lists still mean what they did), and their skeletons are put in the main layout's
/// joint order.
pub struct Combined {
    parts: Vec<Part>,
    metas: Vec<SampleMeta>,
    classes: Vec<String>,
    main_classes: usize,
}

fn class_key(s: &str) -> String {
    s.trim().to_lowercase().replace(['_', '-'], " ")
}

fn first_channels(src: &dyn SampleSource) -> Result<Option<usize>, PackError> {
    (!src.is_empty())
        .then(|| src.skeleton(0).map(|s| s.channels))
        .transpose()
}

impl Combined {
    /// `extras` are (file, source) pairs, the file named in errors.
    pub fn new(
        main: Box<dyn SampleSource>,
        extras: Vec<(String, Box<dyn SampleSource>)>,
    ) -> Result<Self, CombineError> {
        let layout = main.layout().clone();
        let main_channels = first_channels(main.as_ref()).map_err(|source| CombineError::Read {
            path: main.name().to_string(),
            source,
        })?;
        let mut classes = main.classes().to_vec();
        let mut owner: Vec<String> =
            vec![format!("the main dataset `{}`", main.name()); classes.len()];
        let mut metas = main.metas();
        let main_classes = classes.len();
        let mut parts = vec![Part {
            src: main,
            joints: None,
            start: 0,
        }];
        for (path, src) in extras {
            let theirs = src.layout();
            let joints = if theirs.joints == layout.joints {
                None
            } else {
                let m = crossglg_data::mapping::Mapping::by_name(theirs, &layout);
                match m.as_ref().and_then(|m| m.permutation()) {
                    Some(p) => Some(p),
                    None => {
                        return Err(CombineError::Joints {
                            path,
                            layout: theirs.name.clone(),
                            main: layout.name.clone(),
                            detail: theirs
                                .joint_difference(&layout)
                                .unwrap_or_else(|| "different joints".into()),
                        })
                    }
                }
            };
            let channels = first_channels(src.as_ref()).map_err(|source| CombineError::Read {
                path: path.clone(),
                source,
            })?;
            if let (Some(found), Some(main)) = (channels, main_channels) {
                if found != main {
                    return Err(CombineError::Channels { path, found, main });
                }
            }
            for c in src.classes() {
                if let Some(k) = classes.iter().position(|o| class_key(o) == class_key(c)) {
                    return Err(CombineError::Class {
                        path,
                        class: c.clone(),
                        other: owner[k].clone(),
                    });
                }
            }
            let offset = classes.len();
            let start = metas.len();
            for i in 0..src.len() {
                let mut m = src.meta(i).clone();
                m.name = format!("{}/{}", src.name(), m.name);
                m.label = m.label.map(|l| l + offset);
                metas.push(m);
            }
            classes.extend(src.classes().iter().cloned());
            owner.extend(std::iter::repeat_n(path.clone(), src.classes().len()));
            parts.push(Part { src, joints, start });
        }
        Ok(Combined {
            parts,
            metas,
            classes,
            main_classes,
        })
    }

    fn part(&self, i: usize) -> &Part {
        let k = self.parts.partition_point(|p| p.start <= i) - 1;
        &self.parts[k]
    }
}

impl SampleSource for Combined {
    fn len(&self) -> usize {
        self.metas.len()
    }
    fn meta(&self, i: usize) -> &SampleMeta {
        &self.metas[i]
    }
    fn skeleton(&self, i: usize) -> Result<Skeleton, PackError> {
        let p = self.part(i);
        let sk = p.src.skeleton(i - p.start)?;
        Ok(match &p.joints {
            Some(j) => sk.select_joints(j),
            None => sk,
        })
    }
    fn classes(&self) -> &[String] {
        &self.classes
    }
    fn layout(&self) -> &Layout {
        self.parts[0].src.layout()
    }
    fn name(&self) -> &str {
        self.parts[0].src.name()
    }
    fn extra_classes(&self) -> std::ops::Range<usize> {
        self.main_classes..self.classes.len()
    }
}
