//! A libjpeg-turbo decompressor on TurboJPEG's raw API, which tells a warning (the image was
//! decoded, some data was bad) from a fatal error (no image), and a truncated file from
//! corrupt scan data.
//!
//! The `turbojpeg` crate's safe wrapper returns every warning as the same error string as a
//! fatal error, so this module keeps its own handle and reads `tj3GetErrorCode`.

use std::ffi::{CStr, c_int};
use std::fmt;
use std::ptr::NonNull;

use turbojpeg::raw;

/// Progressive JPEGs with more scans than this are refused: libjpeg-turbo's advice for
/// untrusted input (a crafted file with thousands of scans takes minutes to decode).
const SCAN_LIMIT: c_int = 500;

/// What libjpeg-turbo said about a JPEG that did not decode cleanly: the
/// [`source`](std::error::Error::source) of a JPEG [`Decode`](crate::ErrorKind::Decode) error.
///
/// ```
/// use std::error::Error as _;
/// let mut decoder = stoker::decode::Decoder::new()?;
/// let e = decoder.decode(b"\xFF\xD8\xFF\xE0 not really", 3, None).unwrap_err();
/// let jpeg = e.source().unwrap().downcast_ref::<stoker::decode::JpegError>().unwrap();
/// assert!(!jpeg.is_warning());
/// assert_eq!(format!("jpeg: {}", jpeg.message()), e.message());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JpegError {
    /// libjpeg-turbo's message, trimmed and lowercased.
    pub(crate) message: String,
    /// Whether it was a warning (`TJERR_WARNING`): the output was written in full.
    pub(crate) warning: bool,
}

impl JpegError {
    /// libjpeg-turbo's message, trimmed and lowercased.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether libjpeg-turbo reported a warning (the image was decoded, partly made up)
    /// rather than a fatal error; under [`DecodePolicy::Strict`](super::DecodePolicy::Strict), or
    /// for a truncated file, a warning is still refused.
    pub fn is_warning(&self) -> bool {
        self.warning
    }
}

impl fmt::Display for JpegError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JpegError {}

/// The header fields the decoder needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) lossless: bool,
    /// `TJCS_*`: how the components are coded (YCbCr, RGB, gray, CMYK, YCCK).
    pub(crate) colorspace: c_int,
    /// `TJSAMP_*`: the chroma subsampling, `TJSAMP_UNKNOWN` (-1) when TurboJPEG has no name
    /// for it.
    pub(crate) subsamp: c_int,
}

impl Header {
    /// Whether the components are CMYK or YCCK: libjpeg-turbo decodes those to CMYK only.
    pub(crate) fn cmyk(&self) -> bool {
        [raw::TJCS_TJCS_CMYK, raw::TJCS_TJCS_YCCK].contains(&(self.colorspace as raw::TJCS))
    }

    /// Luma samples per chroma sample (across, down) of a YCbCr JPEG that TurboJPEG can
    /// decode to planes; `None` for gray, RGB, CMYK and YCCK JPEGs, lossless ones, and
    /// subsamplings without a name.
    pub(crate) fn ycbcr_subsampling(&self) -> Option<(usize, usize)> {
        if self.lossless || self.colorspace != raw::TJCS_TJCS_YCbCr as c_int {
            return None;
        }
        Some(match self.subsamp as raw::TJSAMP {
            raw::TJSAMP_TJSAMP_444 => (1, 1),
            raw::TJSAMP_TJSAMP_422 => (2, 1),
            raw::TJSAMP_TJSAMP_420 => (2, 2),
            raw::TJSAMP_TJSAMP_440 => (1, 2),
            raw::TJSAMP_TJSAMP_411 => (4, 1),
            raw::TJSAMP_TJSAMP_441 => (1, 4),
            _ => return None,
        })
    }
}

/// A TurboJPEG decompression instance (one per decoder; not shared between threads).
#[derive(Debug)]
pub(crate) struct Jpeg {
    handle: NonNull<std::ffi::c_void>,
    /// The DCT scaling denominator set on the handle (1, 2, 4 or 8).
    denom: usize,
}

// SAFETY: a TurboJPEG instance may move between threads; it is used by one at a time (`&mut`).
unsafe impl Send for Jpeg {}

impl Drop for Jpeg {
    fn drop(&mut self) {
        // SAFETY: the handle came from tj3Init and is destroyed once.
        unsafe { raw::tj3Destroy(self.handle.as_ptr()) };
    }
}

impl Jpeg {
    /// A new instance, with the scan limit set.
    pub(crate) fn new() -> Result<Jpeg, JpegError> {
        // SAFETY: plain FFI call; a null handle is checked.
        let ptr = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as c_int) };
        let Some(handle) = NonNull::new(ptr) else {
            return Err(JpegError {
                // SAFETY: with a null handle, tj3GetErrorStr returns the global message.
                message: unsafe { message(std::ptr::null_mut()) },
                warning: false,
            });
        };
        let mut jpeg = Jpeg { handle, denom: 1 };
        jpeg.set(raw::TJPARAM_TJPARAM_SCANLIMIT, SCAN_LIMIT)?;
        Ok(jpeg)
    }

    fn ptr(&mut self) -> raw::tjhandle {
        self.handle.as_ptr()
    }

    fn set(&mut self, param: raw::TJPARAM, value: c_int) -> Result<(), JpegError> {
        // SAFETY: a live handle and a parameter id from the bindings.
        let rc = unsafe { raw::tj3Set(self.ptr(), param as c_int, value) };
        if rc == 0 { Ok(()) } else { Err(self.error()) }
    }

    fn get(&mut self, param: raw::TJPARAM) -> c_int {
        // SAFETY: as in `set`.
        unsafe { raw::tj3Get(self.ptr(), param as c_int) }
    }

    /// The last call's error: its message and whether it was only a warning.
    ///
    /// TurboJPEG reports `TJERR_WARNING` whenever a warning came earlier in the call, even when
    /// a fatal error followed and the output was never written (junk before the tables, then
    /// "quantization table 0x00 was not defined"); its message is then the fatal error's. So a
    /// warning is a `TJERR_WARNING` whose message is one of libjpeg's warnings.
    fn error(&mut self) -> JpegError {
        // SAFETY: a live handle.
        let code = unsafe { raw::tj3GetErrorCode(self.ptr()) };
        // SAFETY: a live handle.
        let message = unsafe { message(self.ptr()) };
        let warning = code == raw::TJERR_TJERR_WARNING as c_int && is_libjpeg_warning(&message);
        JpegError { message, warning }
    }

    /// Reads the header of `bytes`. A warning while reading it (e.g. extraneous bytes before
    /// a table marker) comes back beside the header, which is complete.
    pub(crate) fn header(
        &mut self,
        bytes: &[u8],
    ) -> Result<(Header, Option<JpegError>), JpegError> {
        // SAFETY: `bytes` is valid for its length for the duration of the call.
        let rc = unsafe { raw::tj3DecompressHeader(self.ptr(), bytes.as_ptr(), bytes.len() as _) };
        let warning = if rc == 0 {
            None
        } else {
            let e = self.error();
            if !e.warning {
                return Err(e);
            }
            Some(e)
        };
        let width = self.get(raw::TJPARAM_TJPARAM_JPEGWIDTH);
        let height = self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT);
        // A header that ends before its first scan (a file cut in its header) reads as a
        // tables-only stream: TurboJPEG returns success and keeps the last image's size.
        if width <= 0 || height <= 0 || !super::markers::has_scan(bytes) {
            return Err(JpegError {
                message: warning
                    .map_or_else(|| "no image size in the header".into(), |w| w.message),
                warning: false,
            });
        }
        let header = Header {
            width: width as usize,
            height: height as usize,
            lossless: self.get(raw::TJPARAM_TJPARAM_LOSSLESS) == 1,
            colorspace: self.get(raw::TJPARAM_TJPARAM_COLORSPACE),
            subsamp: self.get(raw::TJPARAM_TJPARAM_SUBSAMP),
        };
        Ok((header, warning))
    }

    /// The DCT scaling denominator in use.
    #[cfg(test)]
    pub(crate) fn denom(&self) -> usize {
        self.denom
    }

    /// Sets the DCT-domain downscale to 1/`denom` for later decodes.
    pub(crate) fn set_scale(&mut self, denom: usize) -> Result<(), JpegError> {
        if self.denom != denom {
            let factor = raw::tjscalingfactor {
                num: 1,
                denom: denom as c_int,
            };
            // SAFETY: a live handle; the factor is one TurboJPEG supports (1/1..1/8).
            if unsafe { raw::tj3SetScalingFactor(self.ptr(), factor) } != 0 {
                return Err(self.error());
            }
            self.denom = denom;
        }
        Ok(())
    }

    /// Decodes `bytes` (whose header was just read) into `out`: `width`×`height` pixels of
    /// `channels` (1: gray, 3: RGB, 4: CMYK, for a CMYK or YCCK JPEG) bytes, rows packed.
    /// `Ok(Some(warning))` when libjpeg-turbo warned: every pixel was written, but some are
    /// made up (gray or smeared blocks after bad scan data).
    pub(crate) fn decompress(
        &mut self,
        bytes: &[u8],
        out: &mut [u8],
        (width, height, channels): (usize, usize, usize),
    ) -> Result<Option<JpegError>, JpegError> {
        assert!(out.len() >= width * height * channels && matches!(channels, 1 | 3 | 4));
        let format = match channels {
            1 => raw::TJPF_TJPF_GRAY,
            3 => raw::TJPF_TJPF_RGB,
            _ => raw::TJPF_TJPF_CMYK,
        };
        // SAFETY: `out` holds `height` rows of `width * channels` bytes (asserted) and the
        // scaled size of this header is (width, height) (the caller computed it from the
        // header and the scale set on this handle); `bytes` is valid for its length.
        let rc = unsafe {
            raw::tj3Decompress8(
                self.ptr(),
                bytes.as_ptr(),
                bytes.len() as _,
                out.as_mut_ptr(),
                (width * channels) as c_int,
                format as c_int,
            )
        };
        if rc == 0 {
            return Ok(None);
        }
        let e = self.error();
        if e.warning { Ok(Some(e)) } else { Err(e) }
    }

    /// Decodes `bytes` (whose header was just read, with the scale set) into its three YCbCr
    /// planes: plane `i` is `rows[i]` rows of `strides[i]` bytes at the start of `planes[i]`
    /// (TurboJPEG's plane sizes for the scaled image, asserted). Warnings as in
    /// [`Jpeg::decompress`].
    pub(crate) fn decompress_planes(
        &mut self,
        bytes: &[u8],
        planes: [&mut [u8]; 3],
        strides: [usize; 3],
        rows: [usize; 3],
    ) -> Result<Option<JpegError>, JpegError> {
        for i in 0..3 {
            assert!(planes[i].len() >= strides[i] * rows[i]);
        }
        let mut ptrs = planes.map(|p| p.as_mut_ptr());
        let mut pitches = strides.map(|s| s as c_int);
        // SAFETY: each plane holds `rows[i]` rows of `strides[i]` bytes (asserted), which the
        // caller computed with tj3YUVPlaneWidth/Height for this header, scale and subsampling;
        // `bytes` is valid for its length.
        let rc = unsafe {
            raw::tj3DecompressToYUVPlanes8(
                self.ptr(),
                bytes.as_ptr(),
                bytes.len() as _,
                ptrs.as_mut_ptr(),
                pitches.as_mut_ptr(),
            )
        };
        if rc == 0 {
            return Ok(None);
        }
        let e = self.error();
        if e.warning { Ok(Some(e)) } else { Err(e) }
    }
}

/// TurboJPEG's (width, height) of plane `component` (0 luma, 1 and 2 chroma) of an image of
/// `size` with subsampling `subsamp`: luma padded to whole chroma samples, chroma rounded up.
pub(crate) fn plane_size(component: usize, size: (usize, usize), subsamp: c_int) -> (usize, usize) {
    let c = component as c_int;
    // SAFETY: plain functions of their arguments.
    let (w, h) = unsafe {
        (
            raw::tj3YUVPlaneWidth(c, size.0 as c_int, subsamp),
            raw::tj3YUVPlaneHeight(c, size.1 as c_int, subsamp),
        )
    };
    (w.max(0) as usize, h.max(0) as usize)
}

/// Whether `message` (lowercased) is one of libjpeg's warnings (the `JWRN_*` messages of
/// libjpeg-turbo's `jerror.h`), not a fatal error.
fn is_libjpeg_warning(message: &str) -> bool {
    const PREFIXES: [&str; 7] = [
        "corrupt jpeg data:", // extraneous bytes, bad Huffman or arithmetic code, hit marker, …
        "premature end of jpeg file",
        "invalid sos parameters for sequential jpeg",
        "inconsistent progression sequence for component",
        "unknown adobe color transform code",
        "warning: unknown jfif revision number",
        "application transferred too many scanlines",
    ];
    PREFIXES.iter().any(|p| message.starts_with(p))
}

/// TurboJPEG's message for `handle` (or the global one for a null handle), trimmed and
/// lowercased.
///
/// # Safety
/// `handle` is null or a live TurboJPEG handle.
unsafe fn message(handle: raw::tjhandle) -> String {
    // SAFETY: tj3GetErrorStr returns a NUL-terminated string owned by the library.
    let s = unsafe { CStr::from_ptr(raw::tj3GetErrorStr(handle)) };
    s.to_string_lossy().trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photo() -> Vec<u8> {
        crate::decode::testutil::photo(0)
    }

    #[test]
    fn a_warning_comes_with_the_whole_image() {
        let jpeg = photo();
        let mut j = Jpeg::new().unwrap();
        let (h, w) = j.header(&jpeg).unwrap();
        assert_eq!((h.width, h.height, h.lossless, w), (256, 144, false, None));
        let mut clean = vec![0u8; 256 * 144 * 3];
        assert_eq!(j.decompress(&jpeg, &mut clean, (256, 144, 3)), Ok(None));

        let cut = &jpeg[..jpeg.len() * 3 / 4];
        j.header(cut).unwrap();
        let mut out = vec![7u8; 256 * 144 * 3];
        let warning = j.decompress(cut, &mut out, (256, 144, 3)).unwrap().unwrap();
        assert!(warning.warning);
        assert_eq!(warning.message, "premature end of jpeg file");
        // The rows before the cut are the clean image's, and every pixel was written: a
        // buffer that starts with other values ends the same.
        assert_eq!(out[..256 * 3 * 16], clean[..256 * 3 * 16]);
        assert_ne!(out, clean);
        let mut again = vec![200u8; 256 * 144 * 3];
        j.header(cut).unwrap();
        j.decompress(cut, &mut again, (256, 144, 3)).unwrap();
        assert_eq!(out, again);

        let fatal = Jpeg::new()
            .unwrap()
            .header(b"\xFF\xD8\xFF\xE0garbage")
            .unwrap_err();
        assert!(!fatal.warning, "{fatal:?}");
    }

    #[test]
    fn a_header_cut_short_has_no_size_even_after_another_image() {
        let jpeg = photo();
        let mut j = Jpeg::new().unwrap();
        assert_eq!(j.header(&jpeg).unwrap().0.width, 256);
        // Cut inside the tables: TurboJPEG reads a tables-only stream and reports success.
        let e = j.header(&jpeg[..100]).unwrap_err();
        assert_eq!(e.message, "no image size in the header");
        assert!(!e.warning);
        assert_eq!(j.header(&jpeg).unwrap().0.height, 144);
    }

    #[test]
    fn a_fatal_error_after_a_warning_is_fatal() {
        // Junk over the APP0 and the first quantization table: libjpeg skips it with a
        // warning, finds the second table, and fails for want of the first.
        let mut jpeg = photo();
        jpeg[3..64].fill(0);
        let mut j = Jpeg::new().unwrap();
        let (h, warning) = j.header(&jpeg).unwrap();
        let warning = warning.unwrap();
        assert!(warning.warning, "{warning:?}");
        assert_eq!(
            warning.message,
            "corrupt jpeg data: 87 extraneous bytes before marker 0xdb"
        );
        let mut out = vec![0u8; h.width * h.height * 3];
        let e = j
            .decompress(&jpeg, &mut out, (h.width, h.height, 3))
            .unwrap_err();
        assert_eq!(e.message, "quantization table 0x00 was not defined");
        assert!(!e.warning);
        // Every libjpeg warning stoker meets is one.
        for w in [
            "corrupt jpeg data: premature end of data segment",
            "corrupt jpeg data: bad huffman code",
            "premature end of jpeg file",
        ] {
            assert!(is_libjpeg_warning(w), "{w}");
        }
    }
}
