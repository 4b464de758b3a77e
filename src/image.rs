//! Borrowed views of decoded images: interleaved HWC pixels (u8 or f32), and a JPEG's YCbCr
//! planes.

/// The pixels of an image, borrowed, rows tightly packed, channels interleaved (HWC).
#[derive(Clone, Copy, Debug)]
pub enum Pixels<'a> {
    /// 8-bit pixels (0..=255).
    U8(&'a [u8]),
    /// 32-bit float pixels, in whatever scale the data set stores.
    F32(&'a [f32]),
}

/// A decoded image: `height` rows of `width` pixels of `channels` interleaved values.
///
/// ```
/// use stoker::{ImageView, Pixels};
/// let px = [0u8; 2 * 3 * 3];
/// let img = ImageView::new(3, 2, 3, Pixels::U8(&px)).unwrap();
/// assert_eq!((img.width, img.height, img.channels), (3, 2, 3));
/// assert!(ImageView::new(4, 2, 3, Pixels::U8(&px)).is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct ImageView<'a> {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Values per pixel (1 or 3).
    pub channels: usize,
    /// `width * height * channels` values.
    pub pixels: Pixels<'a>,
}

impl<'a> ImageView<'a> {
    /// A view, or `None` when the pixel count does not match the shape.
    pub fn new(width: usize, height: usize, channels: usize, pixels: Pixels<'a>) -> Option<Self> {
        let n = match pixels {
            Pixels::U8(p) => p.len(),
            Pixels::F32(p) => p.len(),
        };
        (n == width * height * channels).then_some(ImageView {
            width,
            height,
            channels,
            pixels,
        })
    }
}

/// One 8-bit plane of a [`YCbCrView`]: `height` rows of `width` samples, `stride` bytes apart.
///
/// `data` may run past the last row's last sample (a decoder pads its planes so that vector
/// loads near the end stay inside the buffer).
///
/// ```
/// use stoker::image::Plane;
/// let px = [7u8; 4 * 3];
/// let p = Plane::new(&px, 3, 3, 4).unwrap();
/// assert_eq!(p.at(2, 2), 7);
/// assert!(Plane::new(&px, 5, 3, 4).is_none()); // wider than its stride
/// assert!(Plane::new(&px, 4, 4, 4).is_none()); // more rows than the data holds
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    /// The samples: row `r` starts at `r * stride`.
    pub data: &'a [u8],
    /// Samples per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// Bytes from one row to the next (at least `width`).
    pub stride: usize,
}

impl<'a> Plane<'a> {
    /// A plane, or `None` when it is empty, `width > stride`, or `data` is too short for
    /// `height` rows.
    pub fn new(data: &'a [u8], width: usize, height: usize, stride: usize) -> Option<Self> {
        let need = (height.checked_sub(1)?)
            .checked_mul(stride)?
            .checked_add(width)?;
        (width > 0 && width <= stride && data.len() >= need).then_some(Plane {
            data,
            width,
            height,
            stride,
        })
    }

    /// The sample at column `x`, row `y` (both inside the plane).
    pub fn at(&self, x: usize, y: usize) -> u8 {
        self.data[y * self.stride + x]
    }
}

/// A JPEG decoded to its YCbCr planes, without colour conversion or chroma upsampling
/// (libjpeg-turbo's `tj3DecompressToYUVPlanes8`): the luma plane at the image's size and the
/// two chroma planes at `1 / subsampling` of it in each direction (rounded up), with JPEG's
/// centred chroma siting. What [`Transform::apply_ycbcr`](crate::transform::Transform::apply_ycbcr)
/// receives when the transform asks for it.
///
/// ```
/// use stoker::image::{Plane, YCbCrView};
/// let (y, c) = ([100u8; 4 * 2], [128u8; 2]);
/// let v = YCbCrView::new(
///     Plane::new(&y, 4, 2, 4).unwrap(),
///     Plane::new(&c, 2, 1, 2).unwrap(),
///     Plane::new(&c, 2, 1, 2).unwrap(),
///     (2, 2),
/// )
/// .unwrap();
/// assert_eq!((v.width(), v.height()), (4, 2));
/// // 4:2:0 chroma of a 4x2 image is 2x1: 3x1 is not.
/// let wide = [128u8; 3];
/// let bad = Plane::new(&wide, 3, 1, 3).unwrap();
/// assert!(YCbCrView::new(Plane::new(&y, 4, 2, 4).unwrap(), bad, bad, (2, 2)).is_none());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct YCbCrView<'a> {
    /// Luma, at the image's size.
    pub y: Plane<'a>,
    /// Blue-difference chroma.
    pub cb: Plane<'a>,
    /// Red-difference chroma.
    pub cr: Plane<'a>,
    /// Luma samples per chroma sample across and down: (1, 1) for 4:4:4, (2, 1) for 4:2:2,
    /// (2, 2) for 4:2:0, (1, 2) for 4:4:0, (4, 1) for 4:1:1, (1, 4) for 4:4:1.
    pub subsampling: (usize, usize),
}

impl<'a> YCbCrView<'a> {
    /// A view, or `None` when a subsampling factor is not 1, 2 or 4, or a chroma plane is
    /// not the luma plane's size divided by it (rounded up).
    pub fn new(
        y: Plane<'a>,
        cb: Plane<'a>,
        cr: Plane<'a>,
        subsampling: (usize, usize),
    ) -> Option<Self> {
        let (hs, vs) = subsampling;
        let factor = |f: usize| matches!(f, 1 | 2 | 4);
        let size = (y.width.div_ceil(hs.max(1)), y.height.div_ceil(vs.max(1)));
        (factor(hs) && factor(vs) && (cb.width, cb.height) == size && (cr.width, cr.height) == size)
            .then_some(YCbCrView {
                y,
                cb,
                cr,
                subsampling,
            })
    }

    /// The image's width (the luma plane's).
    pub fn width(&self) -> usize {
        self.y.width
    }

    /// The image's height (the luma plane's).
    pub fn height(&self) -> usize {
        self.y.height
    }
}
