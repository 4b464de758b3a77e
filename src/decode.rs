//! Decode: JPEG (libjpeg-turbo, with DCT-domain downscale) and PNG bytes to pixels, and resize.
// STUB: filled in by the decode helper.

use crate::{ImageView, Result};

/// A per-worker decoder that owns its scratch buffers (reused from sample to sample).
pub struct Decoder {}

impl Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self> {
        todo!("decode helper")
    }

    /// Decodes JPEG or PNG `bytes` to `channels` (1 or 3) u8 values per pixel, at exactly
    /// `size = (width, height)` when given (stretch), else at the stored size.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<ImageView<'_>> {
        let _ = (bytes, channels, size);
        todo!("decode helper")
    }

    /// Resizes decoded pixels (u8 or f32) to `(width, height)`.
    pub fn resize(&mut self, src: ImageView<'_>, width: usize, height: usize) -> Result<ImageView<'_>> {
        let _ = (src, width, height);
        todo!("decode helper")
    }
}
