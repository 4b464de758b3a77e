//! Decode: JPEG (libjpeg-turbo, with DCT-domain downscale) and PNG bytes to pixels, and resize.
//!
//! One [`Decoder`] per worker thread: it owns the libjpeg-turbo handle, the resizer and every
//! scratch buffer, and reuses them from sample to sample. Its buffers grow only when a larger
//! image arrives. On the JPEG path the crate itself allocates nothing in steady state (libjpeg-turbo
//! and fast_image_resize still make small allocations of their own per call: the codec's working
//! memory and the filter coefficient tables).

use std::io::Cursor;

use fast_image_resize as fr;
use fast_image_resize::images::{Image as FrImage, ImageRef as FrImageRef};
use image::codecs::png::PngDecoder;
use image::{ColorType, ImageDecoder};

use crate::image::{Plane, YCbCrView};
use crate::{Error, ErrorKind, ImageView, Pixels, Result};

mod jpeg;
mod policy;

use jpeg::Jpeg;
pub use jpeg::JpegError;
pub use policy::DecodePolicy;

/// The largest image, in pixels, that a [`Decoder`] decodes into its buffers (2^27, e.g.
/// 16384×8192); larger images are a decode error rather than a multi-gigabyte allocation.
/// For a JPEG the limit applies after DCT-domain downscaling.
///
/// ```
/// assert!(stoker::decode::MAX_PIXELS >= 8192 * 8192);
/// ```
pub const MAX_PIXELS: usize = 1 << 27;

/// The resampling filter used when the decoded size differs from the requested one.
///
/// ```
/// use stoker::decode::Filter;
/// assert_eq!(Filter::default(), Filter::Bilinear);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Filter {
    /// Nearest neighbour: fastest, aliases when downscaling.
    Nearest,
    /// Antialiased bilinear (triangle filter widened by the scale factor), like torchvision's
    /// `resize(..., antialias=True)` and Pillow's `BILINEAR`.
    #[default]
    Bilinear,
    /// Antialiased Lanczos3: sharpest, about 3× the cost of bilinear.
    Lanczos3,
}

impl Filter {
    fn options(self) -> fr::ResizeOptions {
        let alg = match self {
            Filter::Nearest => fr::ResizeAlg::Nearest,
            Filter::Bilinear => fr::ResizeAlg::Convolution(fr::FilterType::Bilinear),
            Filter::Lanczos3 => fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3),
        };
        fr::ResizeOptions::new().resize_alg(alg).use_alpha(false)
    }
}

/// The DCT-domain downscale that libjpeg-turbo should apply to a JPEG of `stored` size
/// (width, height) to be resized to `target`: the denominator (1, 2, 4 or 8) of the smallest
/// factor among 1/8, 1/4, 1/2 and 1 whose scaled size (rounded up, as libjpeg-turbo does) is
/// still at least the target in both dimensions.
///
/// ```
/// use stoker::decode::jpeg_scale;
/// assert_eq!(jpeg_scale((1920, 1080), (256, 144)), 4); // decodes at 480×270
/// assert_eq!(jpeg_scale((1920, 1080), (224, 224)), 4);
/// assert_eq!(jpeg_scale((100, 100), (200, 200)), 1); // upscaling: full size
/// ```
pub fn jpeg_scale(stored: (usize, usize), target: (usize, usize)) -> usize {
    [8, 4, 2]
        .into_iter()
        .find(|&d| stored.0.div_ceil(d) >= target.0 && stored.1.div_ceil(d) >= target.1)
        .unwrap_or(1)
}

/// A per-worker decoder that owns its scratch buffers (reused from sample to sample).
///
/// ```
/// let bytes = std::fs::read(concat!(
///     env!("CARGO_MANIFEST_DIR"),
///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
/// ))?;
/// let mut decoder = stoker::decode::Decoder::new()?;
/// let img = decoder.decode(&bytes, 3, Some((128, 72)))?;
/// assert_eq!((img.width, img.height, img.channels), (128, 72, 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Decoder {
    jpeg: Jpeg,
    resizer: fr::Resizer,
    filter: Filter,
    options: fr::ResizeOptions,
    policy: DecodePolicy,
    /// The last decode's warning, when `warned` (kept allocated from sample to sample).
    warning: String,
    warned: bool,
    /// Decoded pixels at the decoded size, `channels` per pixel.
    decoded: Vec<u8>,
    /// PNG samples as stored (any colour type, 8 or 16 bits), before conversion.
    raw: Vec<u8>,
    /// u8 pixels at the requested size.
    resized: Vec<u8>,
    /// f32 pixels at the requested size.
    resized_f32: Vec<f32>,
    /// A JPEG's Y, Cb and Cr planes, each followed by [`PLANE_PAD`] bytes.
    planes: Vec<u8>,
}

/// Where [`Decoder::decode_planes`] put a JPEG's planes in its buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlaneLayout {
    /// The (scaled) image size.
    size: (usize, usize),
    subsampling: (usize, usize),
    /// Per plane: offset, width, height (the image's, not TurboJPEG's padded ones), stride.
    planes: [(usize, usize, usize, usize); 3],
}

/// Bytes after each plane that [`Decoder::decode_ycbcr`] hands out: a 64-byte vector load
/// from any sample of the plane stays inside the slice.
pub const PLANE_PAD: usize = 64;

impl Decoder {
    /// A new decoder with empty buffers, the [`Filter::Bilinear`] filter and the
    /// [`DecodePolicy::Tolerant`] policy.
    ///
    /// ```
    /// use stoker::decode::{DecodePolicy, Decoder, Filter};
    /// let decoder = Decoder::new()?;
    /// assert_eq!(decoder.filter(), Filter::Bilinear);
    /// assert_eq!(decoder.policy(), DecodePolicy::Tolerant);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        let jpeg = Jpeg::new().map_err(jpeg_error)?;
        let filter = Filter::default();
        Ok(Decoder {
            jpeg,
            resizer: fr::Resizer::new(),
            filter,
            options: filter.options(),
            policy: DecodePolicy::default(),
            warning: String::new(),
            warned: false,
            decoded: Vec::new(),
            raw: Vec::new(),
            resized: Vec::new(),
            resized_f32: Vec::new(),
            planes: Vec::new(),
        })
    }

    /// Sets the resampling filter for later decodes and resizes.
    ///
    /// ```
    /// use stoker::decode::{Decoder, Filter};
    /// let mut decoder = Decoder::new()?;
    /// decoder.set_filter(Filter::Lanczos3);
    /// assert_eq!(decoder.filter(), Filter::Lanczos3);
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
        self.options = filter.options();
    }

    /// The resampling filter in use.
    ///
    /// ```
    /// let decoder = stoker::decode::Decoder::new()?;
    /// assert_eq!(decoder.filter(), stoker::decode::Filter::default());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn filter(&self) -> Filter {
        self.filter
    }

    /// Sets what later decodes do with damaged data (see [`DecodePolicy`]).
    ///
    /// ```
    /// use stoker::decode::{DecodePolicy, Decoder};
    /// let jpeg = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let cut = &jpeg[..jpeg.len() - 300]; // the last rows are missing
    /// let mut decoder = Decoder::new()?;
    /// assert!(decoder.decode(cut, 3, None).is_err()); // Tolerant: truncation is an error
    /// decoder.set_policy(DecodePolicy::Lenient);
    /// assert!(decoder.decode(cut, 3, None).is_ok());
    /// assert_eq!(decoder.warning(), Some("jpeg: premature end of jpeg file"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_policy(&mut self, policy: DecodePolicy) {
        self.policy = policy;
    }

    /// The decode policy in use.
    ///
    /// ```
    /// let decoder = stoker::decode::Decoder::new()?;
    /// assert_eq!(decoder.policy(), stoker::decode::DecodePolicy::default());
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn policy(&self) -> DecodePolicy {
        self.policy
    }

    /// The warning of the last successful decode (a short lowercase message such as
    /// `"jpeg: corrupt jpeg data: premature end of data segment"`), or `None` when the image
    /// decoded cleanly. A warning means the image came back whole but partly made up: libjpeg
    /// fills what it could not decode (gray, or smeared blocks), as Pillow and torchvision do.
    ///
    /// ```
    /// let jpeg = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// decoder.decode(&jpeg, 3, None)?;
    /// assert_eq!(decoder.warning(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn warning(&self) -> Option<&str> {
        self.warned.then_some(self.warning.as_str())
    }

    /// Forgets the last decode's warning (for a sample that is not decoded).
    pub(crate) fn clear_warning(&mut self) {
        self.warned = false;
    }

    /// Decodes JPEG or PNG `bytes` to `channels` (1 or 3) u8 values per pixel, at exactly
    /// `size = (width, height)` when given (stretch), else at the stored size.
    ///
    /// The format is sniffed from the magic bytes. A JPEG much larger than `size` is
    /// downscaled in the DCT domain first (see [`jpeg_scale`]), then resized with the
    /// decoder's [`Filter`]. What a damaged file gives depends on the decoder's
    /// [`DecodePolicy`]: by default corrupt scan data decodes with a [`warning`](Self::warning)
    /// and a truncated file is an error. PNGs of any bit depth and colour type are converted: alpha is dropped, gray is
    /// replicated to RGB, RGB goes to gray with libjpeg-turbo's luma weights
    /// (0.299, 0.587, 0.114), 16-bit samples are rounded to 8 bits. The PNG path may allocate
    /// inside the `image` crate.
    ///
    /// ```
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-b/photo-01.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let gray = decoder.decode(&bytes, 1, None)?;
    /// assert_eq!((gray.width, gray.height, gray.channels), (256, 144, 1));
    /// let err = decoder.decode(b"GIF89a", 3, None).unwrap_err();
    /// assert_eq!(err.kind(), stoker::ErrorKind::Decode);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<ImageView<'_>> {
        check_channels(channels)?;
        self.warned = false;
        if let Some((w, h)) = size {
            if w == 0 || h == 0 {
                return Err(Error::usage(format!("output size {w}x{h} is empty")));
            }
            check_pixels(w, h, channels).map_err(|_| {
                Error::usage(format!("output size {w}x{h} exceeds {MAX_PIXELS} pixels"))
            })?;
        }
        let (w, h) = match sniff(bytes)? {
            ImageFormat::Jpeg => self.decode_jpeg(bytes, channels, size)?,
            ImageFormat::Png => self.decode_png(bytes, channels)?,
        };
        let decoded = &self.decoded[..w * h * channels];
        match size {
            Some((tw, th)) if (tw, th) != (w, h) => {
                let pixel = if channels == 1 {
                    fr::PixelType::U8
                } else {
                    fr::PixelType::U8x3
                };
                let out = scratch(&mut self.resized, tw * th * channels);
                resize_bytes(
                    &mut self.resizer,
                    &self.options,
                    pixel,
                    (decoded, w, h),
                    (&mut *out, tw, th),
                )?;
                Ok(view(tw, th, channels, Pixels::U8(out)))
            }
            _ => Ok(view(w, h, channels, Pixels::U8(decoded))),
        }
    }

    /// Decodes JPEG or PNG `bytes` to `channels` (1 or 3) u8 values per pixel without
    /// resizing: a JPEG is downscaled in the DCT domain by the largest factor (1/2, 1/4, 1/8)
    /// that keeps it at least `min_size` (see [`jpeg_scale`]); a PNG comes at its stored size.
    ///
    /// ```
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let img = decoder.decode_reduced(&bytes, 3, (100, 50))?; // 1/2 keeps 128x72 >= 100x50
    /// assert_eq!((img.width, img.height), (128, 72));
    /// assert!(decoder.decode_reduced(&bytes, 3, (0, 50)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_reduced(
        &mut self,
        bytes: &[u8],
        channels: usize,
        min_size: (usize, usize),
    ) -> Result<ImageView<'_>> {
        check_channels(channels)?;
        self.warned = false;
        if min_size.0 == 0 || min_size.1 == 0 {
            return Err(Error::usage(format!(
                "output size {}x{} is empty",
                min_size.0, min_size.1
            )));
        }
        let (w, h) = match sniff(bytes)? {
            ImageFormat::Jpeg => self.decode_jpeg(bytes, channels, Some(min_size))?,
            ImageFormat::Png => self.decode_png(bytes, channels)?,
        };
        Ok(view(
            w,
            h,
            channels,
            Pixels::U8(&self.decoded[..w * h * channels]),
        ))
    }

    /// Decodes a YCbCr JPEG to its planes without colour conversion or chroma upsampling,
    /// downscaled in the DCT domain as [`decode_reduced`](Self::decode_reduced) would (the luma
    /// plane has the size it would give). `Ok(None)`, having decoded nothing, when `bytes` is a
    /// PNG, or a JPEG whose components are not YCbCr (gray, RGB, CMYK, YCCK), lossless, or
    /// subsampled in a way TurboJPEG has no name for: decode those with `decode_reduced`.
    /// Damaged data follows the [`DecodePolicy`] as in `decode_reduced`. Each plane's slice
    /// runs [`PLANE_PAD`] bytes past its last row.
    ///
    /// ```
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let v = decoder.decode_ycbcr(&bytes, (100, 50))?.unwrap(); // 1/2 keeps 128x72
    /// assert_eq!((v.width(), v.height(), v.subsampling), (128, 72, (2, 2)));
    /// assert_eq!((v.cb.width, v.cb.height), (64, 36));
    /// // A PNG (told by its signature) is left to `decode_reduced`.
    /// assert!(decoder.decode_ycbcr(b"\x89PNG\r\n\x1a\n", (100, 50))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_ycbcr(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<YCbCrView<'_>>> {
        match self.decode_planes(bytes, min_size)? {
            Some(layout) => self.planes_view(&layout).map(Some),
            None => Ok(None),
        }
    }

    /// The view of the planes that [`Decoder::decode_planes`] laid out.
    pub(crate) fn planes_view(&self, l: &PlaneLayout) -> Result<YCbCrView<'_>> {
        let [y, cb, cr] = l.planes.map(|(at, width, height, stride)| {
            Plane::new(
                &self.planes[at..at + stride * height + PLANE_PAD],
                width,
                height,
                stride,
            )
        });
        match (y, cb, cr) {
            (Some(y), Some(cb), Some(cr)) => YCbCrView::new(y, cb, cr, l.subsampling),
            _ => None,
        }
        .ok_or_else(|| {
            Error::new(
                ErrorKind::Decode,
                format!(
                    "jpeg: unexpected plane sizes for a {}x{} image",
                    l.size.0, l.size.1
                ),
            )
        })
    }

    /// Decodes a YCbCr JPEG's planes into `self.planes` (see
    /// [`Decoder::decode_ycbcr`]), `None` when it has none to give; the view comes from
    /// [`Decoder::planes_view`].
    pub(crate) fn decode_planes(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<PlaneLayout>> {
        self.warned = false;
        if min_size.0 == 0 || min_size.1 == 0 {
            return Err(Error::usage(format!(
                "output size {}x{} is empty",
                min_size.0, min_size.1
            )));
        }
        if sniff(bytes)? != ImageFormat::Jpeg {
            return Ok(None);
        }
        let result = self.decode_planes_inner(bytes, min_size);
        if result.is_err() {
            self.fresh_handle();
        }
        result
    }

    fn decode_planes_inner(
        &mut self,
        bytes: &[u8],
        min_size: (usize, usize),
    ) -> Result<Option<PlaneLayout>> {
        let (header, header_warning) = self.jpeg.header(bytes).map_err(jpeg_error)?;
        let Some((hs, vs)) = header.ycbcr_subsampling() else {
            return Ok(None);
        };
        let denom = jpeg_scale((header.width, header.height), min_size);
        self.jpeg.set_scale(denom).map_err(jpeg_error)?;
        let (w, h) = (header.width.div_ceil(denom), header.height.div_ceil(denom));
        check_pixels(w, h, 1)?;
        let mut layout = [(0, 0, 0, 0); 3];
        let mut rows = [0; 3];
        let mut at = 0;
        for (c, (slot, rows)) in layout.iter_mut().zip(&mut rows).enumerate() {
            let (stride, height) = jpeg::plane_size(c, (w, h), header.subsamp);
            let own = if c == 0 {
                (w, h)
            } else {
                (w.div_ceil(hs), h.div_ceil(vs))
            };
            *slot = (at, own.0, own.1, stride);
            *rows = height;
            at += stride * height + PLANE_PAD;
        }
        let buf = scratch(&mut self.planes, at);
        let (p0, rest) = buf.split_at_mut(layout[1].0);
        let (p1, p2) = rest.split_at_mut(layout[2].0 - layout[1].0);
        let strides = layout.map(|l| l.3);
        let warning = self
            .jpeg
            .decompress_planes(bytes, [p0, p1, p2], strides, rows)
            .map_err(jpeg_error)?;
        if let Some(w) = header_warning.or(warning) {
            self.accept_jpeg_warning(w, bytes)?;
        }
        Ok(Some(PlaneLayout {
            size: (w, h),
            subsampling: (hs, vs),
            planes: layout,
        }))
    }

    /// Resizes decoded pixels (u8 or f32, 1 or 3 channels) to `(width, height)` with the
    /// decoder's [`Filter`], into the decoder's own buffer.
    ///
    /// ```
    /// use stoker::{ImageView, Pixels};
    /// let px: Vec<f32> = (0..4 * 4).map(|i| i as f32).collect();
    /// let src = ImageView::new(4, 4, 1, Pixels::F32(&px)).unwrap();
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// let out = decoder.resize(src, 2, 2)?;
    /// assert_eq!((out.width, out.height, out.channels), (2, 2, 1));
    /// assert!(matches!(out.pixels, Pixels::F32(p) if p.len() == 4));
    /// # Ok::<(), stoker::Error>(())
    /// ```
    pub fn resize(
        &mut self,
        src: ImageView<'_>,
        width: usize,
        height: usize,
    ) -> Result<ImageView<'_>> {
        let ImageView {
            width: sw,
            height: sh,
            channels,
            pixels,
        } = src;
        check_channels(channels)?;
        if sw == 0 || sh == 0 || width == 0 || height == 0 {
            return Err(Error::usage(format!(
                "cannot resize {sw}x{sh} to {width}x{height}: empty image"
            )));
        }
        let too_large = |_| Error::usage(format!("image size exceeds {MAX_PIXELS} pixels"));
        let n = check_pixels(sw, sh, channels).map_err(too_large)?;
        let out_n = check_pixels(width, height, channels).map_err(too_large)?;
        let len = match pixels {
            Pixels::U8(p) => p.len(),
            Pixels::F32(p) => p.len(),
        };
        if len != n {
            return Err(Error::usage(format!(
                "{len} values do not make a {sw}x{sh}x{channels} image"
            )));
        }
        match pixels {
            Pixels::U8(p) => {
                let pixel = if channels == 1 {
                    fr::PixelType::U8
                } else {
                    fr::PixelType::U8x3
                };
                let out = scratch(&mut self.resized, out_n);
                resize_bytes(
                    &mut self.resizer,
                    &self.options,
                    pixel,
                    (p, sw, sh),
                    (&mut *out, width, height),
                )?;
                Ok(view(width, height, channels, Pixels::U8(out)))
            }
            Pixels::F32(p) => {
                let pixel = if channels == 1 {
                    fr::PixelType::F32
                } else {
                    fr::PixelType::F32x3
                };
                let out = scratch(&mut self.resized_f32, out_n);
                resize_bytes(
                    &mut self.resizer,
                    &self.options,
                    pixel,
                    (bytemuck::cast_slice(p), sw, sh),
                    (bytemuck::cast_slice_mut(&mut *out), width, height),
                )?;
                Ok(view(width, height, channels, Pixels::F32(out)))
            }
        }
    }

    /// Decodes a JPEG into `self.decoded`, downscaled in the DCT domain towards `size`;
    /// returns the decoded (width, height).
    fn decode_jpeg(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
        let result = self.decode_jpeg_inner(bytes, channels, size);
        if result.is_err() {
            self.fresh_handle();
        }
        result
    }

    /// A new TurboJPEG handle after a failed decode: libjpeg-turbo 3.1's tj3DecompressHeader
    /// leaves the handle mid-header when it fails, and every later header read on that handle
    /// fails too.
    fn fresh_handle(&mut self) {
        if let Ok(fresh) = Jpeg::new() {
            self.jpeg = fresh;
        }
    }

    fn decode_jpeg_inner(
        &mut self,
        bytes: &[u8],
        channels: usize,
        size: Option<(usize, usize)>,
    ) -> Result<(usize, usize)> {
        let (header, header_warning) = self.jpeg.header(bytes).map_err(jpeg_error)?;
        let stored = (header.width, header.height);
        let denom = match size {
            // libjpeg-turbo cannot scale lossless JPEGs.
            Some(target) if !header.lossless => jpeg_scale(stored, target),
            _ => 1,
        };
        self.jpeg.set_scale(denom).map_err(jpeg_error)?;
        let (w, h) = (stored.0.div_ceil(denom), stored.1.div_ceil(denom));
        let n = check_pixels(w, h, channels)?;
        let out = scratch(&mut self.decoded, n);
        // tj3Decompress8 reports a warning (corrupt or missing scan data) after it has
        // written every pixel: the policy decides what it makes of that.
        let warning = self
            .jpeg
            .decompress(bytes, out, (w, h, channels))
            .map_err(jpeg_error)?;
        if let Some(w) = header_warning.or(warning) {
            self.accept_jpeg_warning(w, bytes)?;
        }
        Ok((w, h))
    }

    /// Applies the policy to a JPEG that decoded with a warning: records the warning, or
    /// makes it the error.
    fn accept_jpeg_warning(&mut self, w: JpegError, bytes: &[u8]) -> Result<()> {
        let truncated = w.message == TRUNCATED || jpeg::is_truncated(bytes);
        let accept = match self.policy {
            DecodePolicy::Strict => false,
            DecodePolicy::Tolerant => !truncated,
            DecodePolicy::Lenient => true,
        };
        if !accept {
            if truncated && w.message != TRUNCATED {
                // The first warning was about corrupt data; the cut is what makes it fatal.
                let message = format!("jpeg: {TRUNCATED} (first warning: {})", w.message);
                return Err(Error::new(ErrorKind::Decode, message).with_source(w));
            }
            return Err(jpeg_error(w));
        }
        self.set_warning(format_args!("jpeg: {}", w.message));
        Ok(())
    }

    fn set_warning(&mut self, message: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        self.warning.clear();
        let _ = self.warning.write_fmt(message);
        self.warned = true;
    }

    /// Decodes a PNG into `self.decoded` as `channels` u8 values per pixel; returns its size.
    /// Under [`DecodePolicy::Lenient`], a PNG cut inside its image data gives the rows that
    /// decode and gray (128) below them, with a warning, as Pillow's `LOAD_TRUNCATED_IMAGES`.
    fn decode_png(&mut self, bytes: &[u8], channels: usize) -> Result<(usize, usize)> {
        match self.decode_png_whole(bytes, channels) {
            Err(e) if self.policy == DecodePolicy::Lenient => {
                self.decode_png_rows(bytes, channels).ok_or(e)
            }
            r => r,
        }
    }

    /// The rows of a truncated, non-interlaced PNG that decode (at least one), the rest gray;
    /// `None` when the image is whole, interlaced, or no row decodes.
    fn decode_png_rows(&mut self, bytes: &[u8], channels: usize) -> Option<(usize, usize)> {
        let mut d = png::Decoder::new(Cursor::new(bytes));
        d.set_transformations(png::Transformations::EXPAND);
        let mut reader = d.read_info().ok()?;
        let info = reader.info();
        let (w, h) = (info.width as usize, info.height as usize);
        if info.interlaced || w == 0 || h == 0 {
            return None;
        }
        let n = check_pixels(w, h, channels).ok()?;
        let (color, depth) = reader.output_color_type();
        let stored = color.samples();
        let wide = depth == png::BitDepth::Sixteen;
        let out = scratch(&mut self.decoded, n);
        let mut row_ne = Vec::new();
        let mut rows = 0;
        while rows < h {
            let Ok(Some(row)) = reader.next_row() else {
                break;
            };
            let dst = &mut out[rows * w * channels..(rows + 1) * w * channels];
            if wide {
                // PNG stores 16-bit samples big-endian; `convert` reads native-endian pairs.
                row_ne.clear();
                row_ne.extend(
                    row.data()
                        .chunks_exact(2)
                        .flat_map(|b| u16::from_be_bytes([b[0], b[1]]).to_ne_bytes()),
                );
                convert::<2>(&row_ne, stored, dst, channels);
            } else {
                convert::<1>(row.data(), stored, dst, channels);
            }
            rows += 1;
        }
        if rows == 0 || rows == h {
            return None;
        }
        out[rows * w * channels..].fill(128);
        self.set_warning(format_args!(
            "png: truncated image data: {rows} of {h} rows decoded, the rest gray"
        ));
        Some((w, h))
    }

    /// Decodes a whole PNG through the `image` crate.
    fn decode_png_whole(&mut self, bytes: &[u8], channels: usize) -> Result<(usize, usize)> {
        let png = PngDecoder::with_limits(Cursor::new(bytes), image::Limits::default())
            .map_err(png_error)?;
        let (w, h) = png.dimensions();
        let (w, h) = (w as usize, h as usize);
        if w == 0 || h == 0 {
            return Err(Error::new(ErrorKind::Decode, "png: empty image"));
        }
        let n = check_pixels(w, h, channels)?;
        let color = png.color_type();
        let raw_len = usize::try_from(png.total_bytes())
            .map_err(|_| Error::new(ErrorKind::Decode, "png: image too large"))?;
        if matches!((color, channels), (ColorType::L8, 1) | (ColorType::Rgb8, 3)) {
            png.read_image(scratch(&mut self.decoded, n))
                .map_err(png_error)?;
            return Ok((w, h));
        }
        let (stored, wide) = match color {
            ColorType::L8 => (1, false),
            ColorType::La8 => (2, false),
            ColorType::Rgb8 => (3, false),
            ColorType::Rgba8 => (4, false),
            ColorType::L16 => (1, true),
            ColorType::La16 => (2, true),
            ColorType::Rgb16 => (3, true),
            ColorType::Rgba16 => (4, true),
            other => {
                return Err(Error::new(
                    ErrorKind::Decode,
                    format!("png: unsupported colour type {other:?}"),
                ));
            }
        };
        let raw = scratch(&mut self.raw, raw_len);
        png.read_image(raw).map_err(png_error)?;
        let out = scratch(&mut self.decoded, n);
        if wide {
            convert::<2>(raw, stored, out, channels);
        } else {
            convert::<1>(raw, stored, out, channels);
        }
        Ok((w, h))
    }
}

/// An encoded image format, told by its first bytes: the one sniffing rule of the crate.
///
/// ```
/// use stoker::decode::ImageFormat;
/// assert_eq!(ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some(ImageFormat::Jpeg));
/// assert_eq!(ImageFormat::sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageFormat::Png));
/// assert_eq!(ImageFormat::sniff(b"GIF89a"), None);
/// assert_eq!(ImageFormat::Png.extension(), "png");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImageFormat {
    /// JPEG (`FF D8 FF`).
    Jpeg,
    /// PNG (the 8-byte PNG signature).
    Png,
}

impl ImageFormat {
    /// The format of `bytes`, or `None` when they are neither JPEG nor PNG.
    pub fn sniff(bytes: &[u8]) -> Option<ImageFormat> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
            Some(ImageFormat::Png)
        } else {
            None
        }
    }

    /// The usual file extension, `"jpg"` or `"png"`.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Jpeg => "jpg",
            ImageFormat::Png => "png",
        }
    }
}

/// [`ImageFormat::sniff`], or a decode error that shows the first bytes.
fn sniff(bytes: &[u8]) -> Result<ImageFormat> {
    if bytes.is_empty() {
        return Err(Error::new(ErrorKind::Decode, "empty file"));
    }
    ImageFormat::sniff(bytes).ok_or_else(|| {
        let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
        Error::new(
            ErrorKind::Decode,
            format!("not a jpeg or png (starts with {})", head.join(" ")),
        )
    })
}

fn check_channels(channels: usize) -> Result<()> {
    match channels {
        1 | 3 => Ok(()),
        _ => Err(Error::usage(format!(
            "channels must be 1 or 3, not {channels}"
        ))),
    }
}

/// `w * h * channels` when the image has at most [`MAX_PIXELS`] pixels.
fn check_pixels(w: usize, h: usize, channels: usize) -> Result<usize> {
    match w.checked_mul(h) {
        Some(px) if px <= MAX_PIXELS => Ok(px * channels),
        _ => Err(Error::new(
            ErrorKind::Decode,
            format!("image {w}x{h} exceeds {MAX_PIXELS} pixels"),
        )),
    }
}

/// The first `n` values of `buf`, which is replaced (not copied) by a larger one when short.
fn scratch<T: Copy + Default>(buf: &mut Vec<T>, n: usize) -> &mut [T] {
    if buf.len() < n {
        // Drop the old buffer first, and take zeroed memory from the allocator (lazily
        // committed) rather than copying contents that are about to be overwritten.
        *buf = Vec::new();
        *buf = vec![T::default(); n];
    }
    &mut buf[..n]
}

fn view<'a>(width: usize, height: usize, channels: usize, pixels: Pixels<'a>) -> ImageView<'a> {
    ImageView {
        width,
        height,
        channels,
        pixels,
    }
}

/// Resizes `src` (bytes, width, height) into `dst`, both of `pixel` type, tightly packed.
fn resize_bytes(
    resizer: &mut fr::Resizer,
    options: &fr::ResizeOptions,
    pixel: fr::PixelType,
    src: (&[u8], usize, usize),
    dst: (&mut [u8], usize, usize),
) -> Result<()> {
    let fail = |e: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Decode,
            format!("resize: {}", e.to_string().to_lowercase()),
        )
    };
    // Sizes were checked against MAX_PIXELS, so they fit in u32.
    let src = FrImageRef::new(src.1 as u32, src.2 as u32, src.0, pixel).map_err(|e| fail(&e))?;
    let mut dst =
        FrImage::from_slice_u8(dst.1 as u32, dst.2 as u32, dst.0, pixel).map_err(|e| fail(&e))?;
    resizer
        .resize(&src, &mut dst, options)
        .map_err(|e| fail(&e))
}

/// libjpeg-turbo's RGB→gray weights (FIX(0.299), FIX(0.587), FIX(0.114) at 16 bits, rounded):
/// the Y that a JPEG encoder stores, so gray PNGs and gray JPEG decodes agree.
fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((19595 * r as u32 + 38470 * g as u32 + 7471 * b as u32 + 32768) >> 16) as u8
}

/// Converts `stored` samples per pixel of `BYTES` bytes each (native-endian u16 when 2) to
/// `channels` u8 values per pixel: drops alpha, replicates gray, takes luma of RGB.
fn convert<const BYTES: usize>(raw: &[u8], stored: usize, out: &mut [u8], channels: usize) {
    let sample = |p: &[u8], i: usize| -> u8 {
        if BYTES == 1 {
            p[i]
        } else {
            let v = u16::from_ne_bytes([p[2 * i], p[2 * i + 1]]) as u32;
            ((v + 128) / 257) as u8
        }
    };
    let color = stored >= 3;
    for (p, o) in raw
        .chunks_exact(stored * BYTES)
        .zip(out.chunks_exact_mut(channels))
    {
        match (color, channels) {
            (false, _) => o.fill(sample(p, 0)),
            (true, 1) => o[0] = luma(sample(p, 0), sample(p, 1), sample(p, 2)),
            (true, _) => {
                o[0] = sample(p, 0);
                o[1] = sample(p, 1);
                o[2] = sample(p, 2);
            }
        }
    }
}

/// libjpeg's message for a file that ends before its last scan does.
const TRUNCATED: &str = "premature end of jpeg file";

fn jpeg_error(e: JpegError) -> Error {
    Error::new(ErrorKind::Decode, format!("jpeg: {}", e.message)).with_source(e)
}

fn png_error(e: image::ImageError) -> Error {
    Error::new(
        ErrorKind::Decode,
        format!("png: {}", e.to_string().to_lowercase()),
    )
    .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};
    use turbojpeg::PixelFormat;

    const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures");

    fn fixture(path: &str) -> Vec<u8> {
        std::fs::read(format!("{FIXTURES}/{path}")).unwrap()
    }

    fn photo(n: usize) -> Vec<u8> {
        let class = ["a", "b", "c", "d"][n % 4];
        fixture(&format!("photos-256x144/class-{class}/photo-{n:02}.jpg"))
    }

    fn u8_pixels(img: ImageView<'_>) -> Vec<u8> {
        match img.pixels {
            Pixels::U8(p) => p.to_vec(),
            Pixels::F32(_) => panic!("expected u8 pixels"),
        }
    }

    fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
        assert_eq!(a.len(), b.len());
        let sum: u64 = a.iter().zip(b).map(|(&x, &y)| x.abs_diff(y) as u64).sum();
        sum as f64 / a.len() as f64
    }

    fn encode_jpeg(px: &[u8], w: usize, h: usize, format: PixelFormat) -> Vec<u8> {
        let image = turbojpeg::Image {
            pixels: px,
            width: w,
            pitch: w * format.size(),
            height: h,
            format,
        };
        let subsamp = if format == PixelFormat::GRAY {
            turbojpeg::Subsamp::Gray
        } else {
            turbojpeg::Subsamp::Sub2x2
        };
        turbojpeg::compress(image, 90, subsamp).unwrap().to_vec()
    }

    fn encode_png(px: &[u8], w: u32, h: u32, color: ExtendedColorType) -> Vec<u8> {
        let mut out = Vec::new();
        PngEncoder::new(&mut out)
            .write_image(px, w, h, color)
            .unwrap();
        out
    }

    /// A 1920×1080 JPEG of real photographic content: a mosaic of the 256×144 fixtures.
    fn mosaic_1080p() -> Vec<u8> {
        let (w, h) = (1920, 1080);
        let mut d = Decoder::new().unwrap();
        let mut px = vec![0u8; w * h * 3];
        for ty in 0..h.div_ceil(144) {
            for tx in 0..w.div_ceil(256) {
                let tile = u8_pixels(d.decode(&photo((ty * 8 + tx) % 16), 3, None).unwrap());
                for y in 0..144.min(h - ty * 144) {
                    let cols = 256.min(w - tx * 256);
                    let dst = ((ty * 144 + y) * w + tx * 256) * 3;
                    px[dst..dst + cols * 3].copy_from_slice(&tile[y * 256 * 3..][..cols * 3]);
                }
            }
        }
        encode_jpeg(&px, w, h, PixelFormat::RGB)
    }

    /// Asserts that `bytes` fail to decode with kind Decode and a lowercase message, and that
    /// the decoder still decodes a good JPEG (and PNG) correctly afterwards.
    fn assert_decode_error(d: &mut Decoder, bytes: &[u8], what: &str) -> String {
        let message = match d.decode(bytes, 3, Some((64, 36))) {
            Ok(_) => panic!("{what}: decoded without error"),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Decode, "{what}: {e}");
                assert_eq!(e.message(), e.message().to_lowercase(), "{what}");
                e.message().to_string()
            }
        };
        let good = photo(1);
        let expected = u8_pixels(
            Decoder::new()
                .unwrap()
                .decode(&good, 3, Some((64, 36)))
                .unwrap(),
        );
        let after = d.decode(&good, 3, Some((64, 36)));
        assert_eq!(
            after.map(u8_pixels).ok(),
            Some(expected),
            "decoding after {what}"
        );
        message
    }

    #[test]
    fn jpeg_scale_picks_smallest_factor_that_covers_target() {
        assert_eq!(jpeg_scale((1920, 1080), (256, 144)), 4);
        assert_eq!(jpeg_scale((512, 288), (256, 144)), 2);
        assert_eq!(jpeg_scale((300, 200), (256, 144)), 1);
        assert_eq!(jpeg_scale((256, 144), (512, 288)), 1);
        assert_eq!(jpeg_scale((2048, 1152), (256, 144)), 8);
        // Rounding up: 2041 / 8 = 255.1 -> 256 columns, enough for 1/8.
        assert_eq!(jpeg_scale((2041, 1152), (256, 144)), 8);
        assert_eq!(jpeg_scale((2040, 1152), (256, 144)), 4);
        // Both dimensions must be covered.
        assert_eq!(jpeg_scale((1920, 300), (256, 144)), 2);
    }

    #[test]
    fn dct_downscale_is_close_to_full_decode_and_resize() {
        let jpeg = mosaic_1080p();
        let mut d = Decoder::new().unwrap();
        let full = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
        assert_eq!(full.len(), 1920 * 1080 * 3);
        let full_view = ImageView::new(1920, 1080, 3, Pixels::U8(&full)).unwrap();
        let reference = u8_pixels(d.resize(full_view, 256, 144).unwrap());

        let fast = d.decode(&jpeg, 3, Some((256, 144))).unwrap();
        assert_eq!((fast.width, fast.height, fast.channels), (256, 144, 3));
        let fast = u8_pixels(fast);
        assert_eq!(d.jpeg.denom(), 4);
        let mad = mean_abs_diff(&fast, &reference);
        assert!(mad < 2.0, "mean abs difference {mad}");
    }

    #[test]
    fn gray_jpeg_decode_is_the_luma_of_rgb() {
        let mut d = Decoder::new().unwrap();
        let bytes = photo(5);
        let rgb = u8_pixels(d.decode(&bytes, 3, None).unwrap());
        let gray = d.decode(&bytes, 1, None).unwrap();
        assert_eq!((gray.width, gray.height, gray.channels), (256, 144, 1));
        let gray = u8_pixels(gray);
        let luma_of_rgb: Vec<u8> = rgb.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect();
        let mad = mean_abs_diff(&gray, &luma_of_rgb);
        assert!(mad < 1.0, "mean abs difference {mad}");
        // Resized gray output has the requested shape.
        let small = d.decode(&bytes, 1, Some((100, 50))).unwrap();
        assert_eq!((small.width, small.height, small.channels), (100, 50, 1));
    }

    #[test]
    fn gray_jpeg_decodes_to_replicated_rgb() {
        let (w, h) = (40, 24);
        let px: Vec<u8> = (0..w * h).map(|i| (i * 7 % 251) as u8).collect();
        let jpeg = encode_jpeg(&px, w, h, PixelFormat::GRAY);
        let mut d = Decoder::new().unwrap();
        let gray = u8_pixels(d.decode(&jpeg, 1, None).unwrap());
        let rgb = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
        assert_eq!(rgb.len(), gray.len() * 3);
        for (p, &g) in rgb.chunks(3).zip(&gray) {
            assert_eq!(p, [g, g, g]);
        }
    }

    #[test]
    fn png_decodes_to_the_pixels_written() {
        let (w, h) = (7usize, 5usize);
        let n = w * h;
        let rgb: Vec<u8> = (0..n * 3).map(|i| (i * 37 % 256) as u8).collect();
        let gray: Vec<u8> = (0..n).map(|i| (i * 53 % 256) as u8).collect();
        let rgba: Vec<u8> = rgb
            .chunks(3)
            .enumerate()
            .flat_map(|(i, p)| [p[0], p[1], p[2], (i * 11) as u8])
            .collect();
        let gray_alpha: Vec<u8> = gray.iter().flat_map(|&g| [g, 255 - g]).collect();
        // 16-bit samples: v * 257 is exactly v, others round to the nearest 8-bit level.
        let wide = |v: &[u8], tweak: u16| -> Vec<u8> {
            v.iter()
                .enumerate()
                .flat_map(|(i, &x)| {
                    let s = x as u16 * 257;
                    let s = if i % 2 == 0 {
                        s
                    } else {
                        s.saturating_sub(tweak)
                    };
                    s.to_ne_bytes()
                })
                .collect()
        };
        let rgb16 = wide(&rgb, 128);
        let gray16 = wide(&gray, 100);
        let rgba16 = wide(&rgba, 0);
        let to_gray =
            |v: &[u8]| -> Vec<u8> { v.chunks(3).map(|p| luma(p[0], p[1], p[2])).collect() };
        let to_rgb = |v: &[u8]| -> Vec<u8> { v.iter().flat_map(|&g| [g, g, g]).collect() };
        let (w32, h32) = (w as u32, h as u32);
        let cases = [
            (
                "rgb8",
                encode_png(&rgb, w32, h32, ExtendedColorType::Rgb8),
                &rgb,
            ),
            (
                "rgba8",
                encode_png(&rgba, w32, h32, ExtendedColorType::Rgba8),
                &rgb,
            ),
            (
                "l8",
                encode_png(&gray, w32, h32, ExtendedColorType::L8),
                &gray,
            ),
            (
                "la8",
                encode_png(&gray_alpha, w32, h32, ExtendedColorType::La8),
                &gray,
            ),
            (
                "rgb16",
                encode_png(&rgb16, w32, h32, ExtendedColorType::Rgb16),
                &rgb,
            ),
            (
                "rgba16",
                encode_png(&rgba16, w32, h32, ExtendedColorType::Rgba16),
                &rgb,
            ),
            (
                "l16",
                encode_png(&gray16, w32, h32, ExtendedColorType::L16),
                &gray,
            ),
        ];
        let mut d = Decoder::new().unwrap();
        for (name, png, expected) in &cases {
            let colour = expected.len() == n * 3;
            let (want3, want1) = if colour {
                ((*expected).clone(), to_gray(expected))
            } else {
                (to_rgb(expected), (*expected).clone())
            };
            let img = d.decode(png, 3, None).unwrap();
            assert_eq!((img.width, img.height, img.channels), (w, h, 3), "{name}");
            assert_eq!(u8_pixels(img), want3, "{name} as rgb");
            let img = d.decode(png, 1, None).unwrap();
            assert_eq!(u8_pixels(img), want1, "{name} as gray");
            let img = d.decode(png, 3, Some((3, 2))).unwrap();
            assert_eq!((img.width, img.height, img.channels), (3, 2, 3), "{name}");
        }
    }

    #[test]
    fn png_and_jpeg_agree_on_gray() {
        // The same RGB pixels as a PNG and as a (near-lossless) JPEG, both decoded to gray:
        // libjpeg-turbo's Y and our luma of the PNG agree up to the JPEG's rounding.
        let (w, h) = (64, 48);
        let px: Vec<u8> = (0..w * h)
            .flat_map(|i| {
                let (x, y) = (i % w, i / w);
                [(x * 4) as u8, (y * 5) as u8, ((x + y) * 2) as u8]
            })
            .collect();
        let image = turbojpeg::Image {
            pixels: &px[..],
            width: w,
            pitch: w * 3,
            height: h,
            format: PixelFormat::RGB,
        };
        let mut c = turbojpeg::Compressor::new().unwrap();
        c.set_quality(100).unwrap();
        c.set_subsamp(turbojpeg::Subsamp::None).unwrap();
        let jpeg = c.compress_to_vec(image).unwrap();
        let png = encode_png(&px, w as u32, h as u32, ExtendedColorType::Rgb8);
        let mut d = Decoder::new().unwrap();
        let from_jpeg = u8_pixels(d.decode(&jpeg, 1, None).unwrap());
        let from_png = u8_pixels(d.decode(&png, 1, None).unwrap());
        let mad = mean_abs_diff(&from_jpeg, &from_png);
        assert!(mad < 0.6, "mean abs difference {mad}");
        // Other weights (BT.709) would not agree as well.
        let bt709: Vec<u8> = px
            .chunks(3)
            .map(|p| {
                (0.2126 * p[0] as f64 + 0.7152 * p[1] as f64 + 0.0722 * p[2] as f64).round() as u8
            })
            .collect();
        assert!(mean_abs_diff(&from_jpeg, &bt709) > 2.0 * mad);
    }

    #[test]
    fn bad_input_is_a_decode_error() {
        let mut d = Decoder::new().unwrap();
        let jpeg = photo(2);
        let msg = assert_decode_error(&mut d, &jpeg[..jpeg.len() / 2], "truncated jpeg");
        assert!(msg.contains("premature end"), "{msg}");
        // Cut just before the EOI marker: still flagged.
        assert_decode_error(&mut d, &jpeg[..jpeg.len() - 2], "jpeg without eoi");
        assert_decode_error(&mut d, &jpeg[..3], "jpeg magic only");
        assert_decode_error(&mut d, &jpeg[..200], "jpeg header only");
        assert_eq!(assert_decode_error(&mut d, b"", "empty"), "empty file");

        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut random = |n: usize| -> Vec<u8> {
            (0..n)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect()
        };
        let noise = random(4096);
        let msg = assert_decode_error(&mut d, &noise, "random bytes");
        assert!(msg.starts_with("not a jpeg or png"), "{msg}");
        let mut fake_jpeg = vec![0xFF, 0xD8, 0xFF];
        fake_jpeg.extend(random(4096));
        assert_decode_error(&mut d, &fake_jpeg, "jpeg magic then random bytes");
        let mut fake_png = b"\x89PNG\r\n\x1a\n".to_vec();
        fake_png.extend(random(4096));
        assert_decode_error(&mut d, &fake_png, "png magic then random bytes");

        let text = fixture("manifest.csv");
        let msg = assert_decode_error(&mut d, &text, "text file");
        assert_eq!(msg, "not a jpeg or png (starts with 70 61 74 68)");

        let px: Vec<u8> = (0..64 * 64 * 3).map(|i| (i * 31 % 256) as u8).collect();
        let png = encode_png(&px, 64, 64, ExtendedColorType::Rgb8);
        assert_decode_error(&mut d, &png[..png.len() / 2], "truncated png");
        // Corrupt bytes in the middle of a JPEG's entropy data: an error only when strict;
        // by default the image decodes with libjpeg-turbo's warning.
        let mut corrupt = jpeg.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid..mid + 64].fill(0xFF);
        d.set_policy(DecodePolicy::Strict);
        let msg = assert_decode_error(&mut d, &corrupt, "corrupt jpeg, strict");
        d.set_policy(DecodePolicy::Tolerant);
        d.decode(&corrupt, 3, None).unwrap();
        assert_eq!(d.warning(), Some(msg.as_str()));
        // Every policy refuses what is not an image, and the default refuses truncation.
        assert_decode_error(&mut d, &jpeg[..jpeg.len() / 2], "truncated jpeg, tolerant");
        d.set_policy(DecodePolicy::Lenient);
        assert_decode_error(&mut d, &fake_jpeg, "jpeg magic then random bytes, lenient");
        d.set_policy(DecodePolicy::Tolerant);

        // The decoder still works after all those errors.
        let ok = d.decode(&jpeg, 3, None).unwrap();
        assert_eq!((ok.width, ok.height), (256, 144));
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        let mut d = Decoder::new().unwrap();
        let jpeg = photo(0);
        for channels in [0, 2, 4] {
            let e = d.decode(&jpeg, channels, None).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Usage);
        }
        let e = d.decode(&jpeg, 3, Some((0, 10))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        let e = d.decode(&jpeg, 3, Some((1 << 20, 1 << 20))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Usage);
        // A view whose fields do not agree with its pixels (fields are public).
        let px = [0u8; 10];
        let bad = ImageView {
            width: 4,
            height: 4,
            channels: 3,
            pixels: Pixels::U8(&px),
        };
        assert_eq!(d.resize(bad, 2, 2).unwrap_err().kind(), ErrorKind::Usage);
        let ok = ImageView::new(2, 5, 1, Pixels::U8(&px)).unwrap();
        assert_eq!(d.resize(ok, 0, 2).unwrap_err().kind(), ErrorKind::Usage);
    }

    #[test]
    fn same_bytes_give_same_pixels_and_buffers_do_not_grow() {
        let mut d = Decoder::new().unwrap();
        let jpeg = mosaic_1080p();
        let capacities = |d: &Decoder| {
            (
                d.decoded.capacity(),
                d.raw.capacity(),
                d.resized.capacity(),
                d.resized_f32.capacity(),
                d.resizer.size_of_internal_buffers(),
            )
        };
        for size in [Some((256, 144)), Some((300, 200)), None] {
            let first = u8_pixels(d.decode(&jpeg, 3, size).unwrap());
            let after_first = capacities(&d);
            let second = u8_pixels(d.decode(&jpeg, 3, size).unwrap());
            assert_eq!(first, second, "{size:?}");
            assert_eq!(capacities(&d), after_first, "{size:?}");
        }
        // A smaller image after a larger one reuses the buffers too.
        let before = capacities(&d);
        d.decode(&photo(3), 3, Some((128, 72))).unwrap();
        assert_eq!(capacities(&d), before);
        // PNG: same pixels twice, no growth of the crate's buffers.
        let px: Vec<u8> = (0..50 * 30 * 4).map(|i| (i * 13 % 256) as u8).collect();
        let png = encode_png(&px, 50, 30, ExtendedColorType::Rgba8);
        let first = u8_pixels(d.decode(&png, 1, Some((20, 10))).unwrap());
        let after_first = capacities(&d);
        let second = u8_pixels(d.decode(&png, 1, Some((20, 10))).unwrap());
        assert_eq!(first, second);
        assert_eq!(capacities(&d), after_first);
    }

    #[test]
    fn resize_u8_and_f32() {
        let mut d = Decoder::new().unwrap();
        // A constant image stays constant under every filter.
        let px = vec![77u8; 40 * 30 * 3];
        let fpx = vec![0.25f32; 40 * 30];
        for filter in [Filter::Nearest, Filter::Bilinear, Filter::Lanczos3] {
            d.set_filter(filter);
            let src = ImageView::new(40, 30, 3, Pixels::U8(&px)).unwrap();
            let out = u8_pixels(d.resize(src, 13, 9).unwrap());
            assert_eq!(out, vec![77u8; 13 * 9 * 3], "{filter:?}");
            let src = ImageView::new(40, 30, 1, Pixels::F32(&fpx)).unwrap();
            let out = d.resize(src, 61, 7).unwrap();
            assert_eq!((out.width, out.height, out.channels), (61, 7, 1));
            let Pixels::F32(out) = out.pixels else {
                panic!("expected f32 pixels")
            };
            assert!(out.iter().all(|&v| (v - 0.25).abs() < 1e-5), "{filter:?}");
        }
        // f32 RGB: a horizontal ramp stays a ramp (monotonic) after downscaling.
        let ramp: Vec<f32> = (0..32 * 4)
            .flat_map(|i| [(i % 32) as f32, 0.0, -((i % 32) as f32)])
            .collect();
        d.set_filter(Filter::Bilinear);
        let src = ImageView::new(32, 4, 3, Pixels::F32(&ramp)).unwrap();
        let out = d.resize(src, 8, 2).unwrap();
        let Pixels::F32(out) = out.pixels else {
            panic!("expected f32 pixels")
        };
        assert_eq!(out.len(), 8 * 2 * 3);
        for x in 1..8 {
            assert!(out[x * 3] > out[(x - 1) * 3]);
            assert!((out[x * 3] + out[x * 3 + 2]).abs() < 1e-4);
        }
    }

    #[test]
    fn filter_choice_changes_the_output() {
        let jpeg = photo(7);
        let mut d = Decoder::new().unwrap();
        let bilinear = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        d.set_filter(Filter::Nearest);
        let nearest = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        d.set_filter(Filter::Lanczos3);
        let lanczos = u8_pixels(d.decode(&jpeg, 3, Some((100, 60))).unwrap());
        assert_ne!(bilinear, nearest);
        assert_ne!(bilinear, lanczos);
        // All three are the same picture.
        assert!(mean_abs_diff(&bilinear, &lanczos) < 8.0);
    }

    /// The u8 payload and shape of a C-order NPY file, parsed by hand.
    fn read_npy(bytes: &[u8]) -> (String, Vec<usize>, &[u8]) {
        assert_eq!(&bytes[..6], b"\x93NUMPY");
        let (len, start) = match bytes[6] {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            _ => (
                u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                12,
            ),
        };
        let header = std::str::from_utf8(&bytes[start..start + len]).unwrap();
        assert!(header.contains("'fortran_order': False"), "{header}");
        let descr = header.split("'descr': '").nth(1).unwrap();
        let descr = descr[..descr.find('\'').unwrap()].to_string();
        let shape = header.split("'shape': (").nth(1).unwrap();
        let shape: Vec<usize> = shape[..shape.find(')').unwrap()]
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().parse().unwrap())
            .collect();
        (descr, shape, &bytes[start + len..])
    }

    #[test]
    fn npy_fixtures_equal_the_decoded_jpeg_fixtures() {
        let manifest = String::from_utf8(fixture("manifest.csv")).unwrap();
        let mut lines = manifest.lines();
        assert_eq!(lines.next(), Some("path,label"));
        let samples: Vec<(&str, i64)> = lines
            .map(|l| {
                let (path, label) = l.split_once(',').unwrap();
                (path, label.parse().unwrap())
            })
            .collect();
        assert_eq!(samples.len(), 32);
        let mut d = Decoder::new().unwrap();
        for shard in 0..2 {
            let images = fixture(&format!("npy/images-{shard:03}.npy"));
            let labels = fixture(&format!("npy/labels-{shard:03}.npy"));
            let (descr, shape, data) = read_npy(&images);
            assert_eq!(descr, "|u1");
            assert_eq!(shape, [16, 144, 256, 3]);
            let (ldescr, lshape, ldata) = read_npy(&labels);
            assert_eq!((ldescr.as_str(), lshape.as_slice()), ("<i8", &[16][..]));
            let row = 144 * 256 * 3;
            for i in 0..16 {
                let (path, label) = samples[shard * 16 + i];
                let stored = i64::from_le_bytes(ldata[i * 8..i * 8 + 8].try_into().unwrap());
                assert_eq!(stored, label, "{path}");
                let decoded = u8_pixels(d.decode(&fixture(path), 3, None).unwrap());
                assert!(
                    decoded == data[i * row..(i + 1) * row],
                    "{path}: pixels differ"
                );
            }
        }
    }

    #[test]
    fn ycbcr_planes_at_the_reduced_scale_for_every_subsampling() {
        let rgb = u8_pixels(Decoder::new().unwrap().decode(&photo(3), 3, None).unwrap());
        let mut d = Decoder::new().unwrap();
        for (subsamp, factors) in [
            (turbojpeg::Subsamp::None, (1, 1)),
            (turbojpeg::Subsamp::Sub2x1, (2, 1)),
            (turbojpeg::Subsamp::Sub2x2, (2, 2)),
            (turbojpeg::Subsamp::Sub1x2, (1, 2)),
            (turbojpeg::Subsamp::Sub4x1, (4, 1)),
        ] {
            let image = turbojpeg::Image {
                pixels: &rgb[..],
                width: 256,
                pitch: 256 * 3,
                height: 144,
                format: PixelFormat::RGB,
            };
            let bytes = turbojpeg::compress(image, 90, subsamp).unwrap().to_vec();
            // Full size, then the 1/2 scale that keeps 100x60.
            for (min, (w, h)) in [((256, 144), (256, 144)), ((100, 60), (128, 72))] {
                let v = d.decode_ycbcr(&bytes, min).unwrap().unwrap();
                assert_eq!((v.width(), v.height(), v.subsampling), (w, h, factors));
                let c = (w.div_ceil(factors.0), h.div_ceil(factors.1));
                assert_eq!(
                    ((v.cb.width, v.cb.height), (v.cr.width, v.cr.height)),
                    (c, c)
                );
                for p in [v.y, v.cb, v.cr] {
                    assert!(p.data.len() >= (p.height - 1) * p.stride + p.width + PLANE_PAD);
                }
                // The luma plane is libjpeg-turbo's gray decode, exactly.
                let gray = u8_pixels(
                    Decoder::new()
                        .unwrap()
                        .decode_reduced(&bytes, 1, min)
                        .unwrap(),
                );
                let y: Vec<u8> = (0..h)
                    .flat_map(|r| v.y.data[r * v.y.stride..][..w].to_vec())
                    .collect();
                assert_eq!(y, gray, "{factors:?} {min:?}");
            }
        }
        // 1920x1080 for a 256x144 output: the 1/4 scale, 480x270, chroma 240x135.
        let v = d
            .decode_ycbcr(&mosaic_1080p(), (256, 144))
            .unwrap()
            .unwrap();
        assert_eq!(
            (v.width(), v.height(), v.cb.width, v.cb.height),
            (480, 270, 240, 135)
        );
    }

    #[test]
    fn ycbcr_planes_only_for_ycbcr_jpegs() {
        let mut d = Decoder::new().unwrap();
        let gray = encode_jpeg(&[90u8; 16 * 8], 16, 8, PixelFormat::GRAY);
        assert!(d.decode_ycbcr(&gray, (16, 8)).unwrap().is_none());
        let png = encode_png(&[9u8; 4 * 2 * 3], 4, 2, ExtendedColorType::Rgb8);
        assert!(d.decode_ycbcr(&png, (4, 2)).unwrap().is_none());
        let e = d.decode_ycbcr(b"GIF89a", (4, 2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert_eq!(
            d.decode_ycbcr(&photo(0), (0, 2)).unwrap_err().kind(),
            ErrorKind::Usage
        );
        // Damage follows the policy, as on the pixel path; the handle is fine afterwards.
        let jpeg = photo(0);
        let cut = &jpeg[..jpeg.len() * 2 / 3];
        let e = d.decode_ycbcr(cut, (256, 144)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Decode);
        assert!(e.message().starts_with("jpeg: premature end"), "{e}");
        d.set_policy(DecodePolicy::Lenient);
        assert!(d.decode_ycbcr(cut, (256, 144)).unwrap().is_some());
        assert_eq!(d.warning(), Some("jpeg: premature end of jpeg file"));
        assert!(d.decode_ycbcr(&jpeg, (256, 144)).unwrap().is_some());
        assert_eq!(d.warning(), None);
    }
}
