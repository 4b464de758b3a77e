//! Borrowed views of decoded images: interleaved HWC pixels, u8 or f32.

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
