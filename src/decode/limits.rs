//! How large an image a [`Decoder`] takes: the stored size, read from the header before any
//! decode ([`Decoder::set_max_image_pixels`], against decompression bombs), and the decoded
//! buffer ([`MAX_PIXELS`]), the second guard.

use super::Decoder;
use crate::{Error, ErrorKind, Result};

/// The largest image, in pixels, that a [`Decoder`] decodes into its buffers (2^27, e.g.
/// 16384×8192); larger images are a decode error rather than a multi-gigabyte allocation.
/// For a JPEG the limit applies after DCT-domain downscaling.
///
/// ```
/// assert!(stoker::decode::MAX_PIXELS >= 8192 * 8192);
/// ```
pub const MAX_PIXELS: usize = 1 << 27;

/// The default limit on an image's stored size, in pixels (see
/// [`Decoder::set_max_image_pixels`]): Pillow's error threshold, twice its
/// `Image.MAX_IMAGE_PIXELS` (89,478,485), so stoker refuses what Pillow refuses.
///
/// ```
/// assert_eq!(stoker::decode::DEFAULT_MAX_IMAGE_PIXELS, 2 * 89_478_485);
/// ```
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 178_956_970;

impl Decoder {
    /// Sets the largest stored size, in pixels (width × height as the file's header gives
    /// them), that later decodes take (default [`DEFAULT_MAX_IMAGE_PIXELS`]). A larger image is
    /// refused from its header, before any pixel is decoded or any buffer allocated for it,
    /// with a [`Decode`](ErrorKind::Decode) error that gives its size and the limit: a 1 KB
    /// JPEG that claims 65000×65000 pixels is a decompression bomb, not a picture. JPEG and
    /// PNG alike; a JPEG under the limit that is downscaled in the DCT domain still has to fit
    /// [`MAX_PIXELS`] once scaled.
    ///
    /// ```
    /// let jpeg = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// decoder.set_max_image_pixels(256 * 100);
    /// assert_eq!(decoder.max_image_pixels(), 25_600);
    /// let e = decoder.decode(&jpeg, 3, Some((64, 36))).unwrap_err();
    /// assert_eq!(e.kind(), stoker::ErrorKind::Decode);
    /// assert_eq!(
    ///     e.message(),
    ///     "jpeg: image 256x144 (36864 pixels) exceeds max_image_pixels (25600), refused before decoding"
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_max_image_pixels(&mut self, limit: u64) {
        self.max_image_pixels = limit;
    }

    /// The largest stored size, in pixels, that decodes take.
    ///
    /// ```
    /// let decoder = stoker::decode::Decoder::new()?;
    /// assert_eq!(decoder.max_image_pixels(), stoker::decode::DEFAULT_MAX_IMAGE_PIXELS);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn max_image_pixels(&self) -> u64 {
        self.max_image_pixels
    }

    /// Refuses an image of `format` ("jpeg", "png") whose header gives `(w, h)`, when it is
    /// above the stored-size limit.
    pub(super) fn check_stored(&self, format: &str, (w, h): (usize, usize)) -> Result<()> {
        let pixels = w as u64 * h as u64;
        if pixels <= self.max_image_pixels {
            return Ok(());
        }
        Err(Error::new(
            ErrorKind::Decode,
            format!(
                "{format}: image {w}x{h} ({pixels} pixels) exceeds max_image_pixels ({}), \
                 refused before decoding",
                self.max_image_pixels
            ),
        ))
    }
}

/// `w * h * channels` when the image has at most [`MAX_PIXELS`] pixels.
pub(super) fn check_pixels(w: usize, h: usize, channels: usize) -> Result<usize> {
    match w.checked_mul(h) {
        Some(px) if px <= MAX_PIXELS => Ok(px * channels),
        _ => Err(Error::new(
            ErrorKind::Decode,
            format!("image {w}x{h} exceeds {MAX_PIXELS} pixels"),
        )),
    }
}
