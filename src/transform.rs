//! The transform stage: between decode and the slot write.
//!
//! A [`Transform`] receives the decoded sample (at the output size), the sample's own random
//! generator (seeded by seed, epoch and sample index: never a global), and a [`SlotWriter`]
//! that converts and stores pixels into the sample's slot of the batch buffer. The
//! augmentation engine implements this trait; [`Identity`] stores the pixels unchanged.

use std::any::Any;
use std::time::{Duration, Instant};

use crate::output::{SrcType, Store};
use crate::rng::SampleRng;
use crate::{Error, ImageView, Pixels, Result, YCbCrView};

/// Where one sample is written: its slot in a batch buffer and the prepared converter.
///
/// The writer times its own stores, so the loader can report transform and write time apart.
pub struct SlotWriter<'a> {
    pub(crate) slot: &'a mut [u8],
    pub(crate) store_u8: &'a mut Store,
    pub(crate) store_f32: &'a mut Store,
    pub(crate) write_time: Duration,
    pub(crate) scratch: &'a mut (dyn Any + Send),
}

impl<'a> SlotWriter<'a> {
    /// Converts and writes a whole image (already at the output size and channels).
    pub fn store(&mut self, src: &ImageView<'_>) -> Result<()> {
        let t = Instant::now();
        let r = match src.pixels {
            Pixels::U8(_) => self.store_u8.store_image(src, self.slot),
            Pixels::F32(_) => self.store_f32.store_image(src, self.slot),
        };
        self.write_time += t.elapsed();
        r
    }

    /// The prepared converter for a source element type, and the slot, for row-wise writers.
    pub fn parts(&mut self, src: SrcType) -> (&mut Store, &mut [u8]) {
        match src {
            SrcType::U8 => (&mut *self.store_u8, &mut *self.slot),
            SrcType::F32 => (&mut *self.store_f32, &mut *self.slot),
        }
    }

    /// Like [`SlotWriter::parts`], plus the worker's scratch made by [`Transform::scratch`].
    pub fn parts_with_scratch(
        &mut self,
        src: SrcType,
    ) -> (&mut Store, &mut [u8], &mut (dyn Any + Send)) {
        let (store, slot) = match src {
            SrcType::U8 => (&mut *self.store_u8, &mut *self.slot),
            SrcType::F32 => (&mut *self.store_f32, &mut *self.slot),
        };
        (store, slot, &mut *self.scratch)
    }
}

/// What a transform knows about the sample it is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampleInfo {
    /// Data set index.
    pub index: usize,
    /// Epoch.
    pub epoch: u64,
}

/// A per-sample transform that writes its result into the batch slot.
///
/// ```
/// use stoker::transform::{Identity, Transform};
/// let t: Box<dyn Transform> = Box::new(Identity);
/// assert_eq!(t.name(), "identity");
/// ```
pub trait Transform: Send + Sync {
    /// Transforms `src` with randomness drawn from `rng` only, and writes it through `out`.
    fn apply(
        &self,
        info: SampleInfo,
        src: &ImageView<'_>,
        rng: &mut SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()>;

    /// Short name for reports.
    fn name(&self) -> &str;

    /// Whether the transform samples the decoded image at (about) its stored resolution
    /// (default false). When true, the loader decodes JPEGs with the DCT scale that keeps the
    /// image at least the output size but does not resize, and hands pixel sources over as
    /// they are: `src` may then be larger or smaller than the output.
    ///
    /// ```
    /// use stoker::transform::{Identity, Transform};
    /// assert!(!Identity.samples_source());
    /// ```
    fn samples_source(&self) -> bool {
        false
    }

    /// Per-worker scratch, made once per worker and handed back in every
    /// [`SlotWriter::parts_with_scratch`] (default: none).
    ///
    /// ```
    /// use stoker::transform::{Identity, Transform};
    /// assert!(Identity.scratch().downcast_ref::<()>().is_some());
    /// ```
    fn scratch(&self) -> Box<dyn Any + Send> {
        Box::new(())
    }

    /// Whether the transform takes JPEGs as their YCbCr planes (default false): when true,
    /// and the output has three channels, the loader decodes a YCbCr JPEG with
    /// [`Decoder::decode_ycbcr`](crate::decode::Decoder::decode_ycbcr) (at the reduced DCT
    /// scale, as for [`samples_source`](Transform::samples_source)) and calls
    /// [`apply_ycbcr`](Transform::apply_ycbcr) instead of [`apply`](Transform::apply). Other
    /// samples still go to `apply`.
    ///
    /// ```
    /// use stoker::transform::{Identity, Transform};
    /// assert!(!Identity.takes_ycbcr());
    /// ```
    fn takes_ycbcr(&self) -> bool {
        false
    }

    /// Transforms a JPEG's YCbCr planes (see [`takes_ycbcr`](Transform::takes_ycbcr)) with
    /// randomness drawn from `rng` only, and writes the result through `out`. The default is
    /// a usage error: a transform that takes planes implements it.
    ///
    /// ```
    /// use stoker::{augment::Augment, transform::Transform};
    /// // The augmentation takes planes when asked to (`Augment::builder().ycbcr(true)`).
    /// assert!(Augment::from_spec("ycbcr")?.takes_ycbcr());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    fn apply_ycbcr(
        &self,
        info: SampleInfo,
        src: &YCbCrView<'_>,
        rng: &mut SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()> {
        let _ = (info, src, rng, out);
        Err(Error::usage(format!(
            "transform {:?} does not take YCbCr planes",
            self.name()
        )))
    }
}

/// Stores the decoded sample unchanged (normalisation, dtype and layout still apply).
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

impl Transform for Identity {
    fn apply(
        &self,
        _info: SampleInfo,
        src: &ImageView<'_>,
        _rng: &mut SampleRng,
        out: &mut SlotWriter<'_>,
    ) -> Result<()> {
        out.store(src)
    }

    fn name(&self) -> &str {
        "identity"
    }
}
