//! Decode: JPEG (libjpeg-turbo, with DCT-domain downscale) and PNG bytes to pixels, and resize.
//!
//! One [`Decoder`] per worker thread: it owns the libjpeg-turbo handle, the resizer and every
//! scratch buffer, and reuses them from sample to sample. Its buffers grow only when a larger
//! image arrives. On the JPEG path the crate itself allocates nothing in steady state (libjpeg-turbo
//! and fast_image_resize still make small allocations of their own per call: the codec's working
//! memory and the filter coefficient tables).
//!
//! One concept per file: `mod.rs` (the [`Decoder`], format sniffing, dispatch), `jpeg.rs` (its
//! JPEG paths), `cmyk.rs` (CMYK and YCCK JPEGs to RGB), `turbo.rs` (the libjpeg-turbo handle),
//! `markers.rs` (stoker's own walk over a JPEG's marker segments), `limits.rs` (how large an
//! image may be), `planes.rs` (YCbCr planes), `png.rs`, `color.rs` (luma, PNG samples),
//! `resize.rs`, `policy.rs` (what damaged data decodes to).

use fast_image_resize as fr;

use crate::{Error, ErrorKind, ImageView, Pixels, Result};

mod cmyk;
mod color;
mod jpeg;
mod limits;
mod markers;
mod planes;
mod png;
mod policy;
mod resize;
#[cfg(test)]
mod testutil;
mod turbo;

use jpeg::jpeg_error;
pub use jpeg::jpeg_scale;
use limits::check_pixels;
pub use limits::{DEFAULT_MAX_IMAGE_PIXELS, MAX_PIXELS};
pub use planes::PLANE_PAD;
pub use policy::DecodePolicy;
pub use resize::Filter;
use resize::resize_bytes;
use turbo::Jpeg;
pub use turbo::JpegError;

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
    /// The largest stored size, in pixels, decoded ([`Decoder::set_max_image_pixels`]).
    max_image_pixels: u64,
    /// The last decode's warning, when `warned` (kept allocated from sample to sample).
    warning: String,
    warned: bool,
    /// Decoded pixels at the decoded size, `channels` per pixel.
    decoded: Vec<u8>,
    /// Samples as stored, before conversion: a PNG's (any colour type, 8 or 16 bits), a CMYK
    /// or YCCK JPEG's four.
    raw: Vec<u8>,
    /// u8 pixels at the requested size.
    resized: Vec<u8>,
    /// f32 pixels at the requested size.
    resized_f32: Vec<f32>,
    /// A JPEG's Y, Cb and Cr planes, each followed by [`PLANE_PAD`] bytes.
    planes: Vec<u8>,
}

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
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
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
    /// The format is sniffed from the magic bytes. An image stored larger than
    /// [`max_image_pixels`](Self::max_image_pixels) is refused from its header. A JPEG much
    /// larger than `size` is downscaled in the DCT domain first (see [`jpeg_scale`]), then
    /// resized with the decoder's [`Filter`]. A CMYK or YCCK JPEG comes back as the RGB Pillow
    /// gives (its luma for one channel). What a damaged file gives depends on the decoder's
    /// [`DecodePolicy`]: by default corrupt scan data decodes with a [`warning`](Self::warning)
    /// and a truncated file is an error. PNGs of any bit depth and colour type are converted:
    /// alpha is dropped, gray is replicated to RGB, RGB goes to gray with libjpeg-turbo's luma
    /// weights (0.299, 0.587, 0.114), 16-bit samples are rounded to 8 bits. The PNG path may
    /// allocate inside the `image` crate.
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

    /// The stored (width, height) of JPEG or PNG `bytes`, read from the header alone: nothing
    /// is decoded. A JPEG header that libjpeg-turbo reads whole despite damage (junk between
    /// two segments, a segment whose length field is too short) gives its size; the decode
    /// then follows the [`DecodePolicy`]. The size is not checked against
    /// [`max_image_pixels`](Self::max_image_pixels): decoding checks it.
    ///
    /// ```
    /// let bytes = std::fs::read(concat!(
    ///     env!("CARGO_MANIFEST_DIR"),
    ///     "/fixtures/photos-256x144/class-a/photo-00.jpg"
    /// ))?;
    /// let mut decoder = stoker::decode::Decoder::new()?;
    /// assert_eq!(decoder.stored_size(&bytes)?, (256, 144));
    /// assert!(decoder.stored_size(&bytes[..100]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stored_size(&mut self, bytes: &[u8]) -> Result<(usize, usize)> {
        match sniff(bytes)? {
            ImageFormat::Jpeg => self.jpeg_size(bytes),
            ImageFormat::Png => png::png_size(bytes),
        }
    }

    fn set_warning(&mut self, message: std::fmt::Arguments<'_>) {
        use std::fmt::Write as _;
        self.warning.clear();
        let _ = self.warning.write_fmt(message);
        self.warned = true;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::testutil::*;
    use image::ExtendedColorType;

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
        // Corrupt bytes in the middle of a JPEG's entropy data (a run of 0xFF, then a stuffed
        // zero): an error only when strict; by default the image decodes with libjpeg-turbo's
        // warning, as Pillow decodes it.
        let mut corrupt = jpeg.clone();
        let mid = corrupt.len() / 2;
        corrupt[mid..mid + 64].fill(0xFF);
        corrupt[mid + 64] = 0;
        // The same run ending in a marker whose length is bogus: libjpeg's fatal error after
        // its warning (TurboJPEG still calls it a warning), refused by every policy, as Pillow
        // refuses it.
        let mut fatal = corrupt.clone();
        fatal[mid + 64] = 0xDA;
        for policy in [DecodePolicy::Tolerant, DecodePolicy::Lenient] {
            d.set_policy(policy);
            let msg = assert_decode_error(&mut d, &fatal, "fatal error after a warning");
            assert_eq!(msg, "jpeg: bogus marker length", "{policy:?}");
        }
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
        // CMYK and YCCK JPEGs: decoded through the raw buffer, reused too.
        for name in ["cmyk.jpg", "ycck.jpg"] {
            let jpeg = fixture(&format!("decode/{name}"));
            let first = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
            let after_first = capacities(&d);
            let second = u8_pixels(d.decode(&jpeg, 3, None).unwrap());
            assert_eq!(first, second, "{name}");
            assert_eq!(capacities(&d), after_first, "{name}");
        }
    }
}
