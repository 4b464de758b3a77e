//! Chunked HDF5 datasets read from the memory map by chunk address, without the library's
//! global lock: each chunk's file address is looked up once (`H5Dget_chunk_info_by_coord`,
//! under the lock, at the chunk's first use) and kept; after that a read is a slice of the map,
//! or an inflate and unshuffle in the worker ([`super::filters`]).

use std::sync::OnceLock;

use ::hdf5 as h5;
use hdf5_sys::h5::haddr_t;

use super::filters::{self, Filter};

/// `HADDR_UNDEF`: the address of a chunk that was never written (it reads as the fill value).
const UNDEF: haddr_t = haddr_t::MAX;

/// Past this many bytes, a slab assembled from chunks that cut images holds fewer rows than
/// the chunk (a chunk of 1,000 rows would otherwise need 1,000 images per worker).
const SLAB_MAX: usize = 32 << 20;

/// Where one chunk lies in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Loc {
    /// Byte address ([`UNDEF`] when the chunk was never written).
    pub addr: u64,
    /// Stored (filtered) bytes.
    pub size: u64,
    /// Bit k set: filter k of the pipeline was skipped for this chunk.
    pub mask: u32,
}

/// The chunk grid of an `[N, H, W, C]` dataset (C = 1 and a rank-3 dataset for gray images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Grid {
    /// The dataset's extent, `[N, H, W, C]`.
    pub dims: [usize; 4],
    /// One chunk's extent.
    pub chunk: [usize; 4],
    /// Chunks along each axis.
    pub count: [usize; 4],
    /// Bytes per element.
    pub elem: usize,
    /// The dataset's rank (3 or 4).
    pub rank: usize,
}

impl Grid {
    /// The grid of `dims` in chunks of `chunk` (both `[N, H, W, C]`), or why not.
    pub fn new(
        dims: [usize; 4],
        chunk: [usize; 4],
        elem: usize,
        rank: usize,
    ) -> Result<Grid, String> {
        if chunk.contains(&0) {
            return Err(format!("zero chunk extent {chunk:?}"));
        }
        let mut count = [0; 4];
        for k in 0..4 {
            count[k] = dims[k].div_ceil(chunk[k]);
        }
        // HDF5 keeps a chunk under 4 GiB.
        chunk
            .iter()
            .try_fold(elem, |a, &c| a.checked_mul(c))
            .filter(|&b| b <= u32::MAX as usize)
            .ok_or_else(|| format!("chunk {chunk:?} is too large"))?;
        count
            .iter()
            .try_fold(1usize, |a, &c| a.checked_mul(c))
            .ok_or_else(|| "too many chunks".to_string())?;
        Ok(Grid {
            dims,
            chunk,
            count,
            elem,
            rank,
        })
    }

    /// Bytes of one chunk, unfiltered (edge chunks are stored at full size).
    pub fn chunk_bytes(&self) -> usize {
        self.chunk.iter().product::<usize>() * self.elem
    }

    /// Bytes of one image.
    pub fn sample_bytes(&self) -> usize {
        self.dims[1..].iter().product::<usize>() * self.elem
    }

    /// Whether a chunk holds whole images (it spans H, W and C).
    pub fn whole(&self) -> bool {
        self.chunk[1..] == self.dims[1..]
    }

    /// Chunks in all.
    pub fn len(&self) -> usize {
        self.count.iter().product()
    }

    /// Chunks per chunk row (the chunks that share one range of images).
    pub fn per_row(&self) -> usize {
        self.count[1..].iter().product()
    }

    /// The linear number of chunk `(row, k)`, `k` counting the chunks of chunk row `row`.
    pub fn linear(&self, row: usize, k: usize) -> usize {
        row * self.per_row() + k
    }

    /// Chunk `lin`'s element offset along each axis, as the library takes it.
    pub fn offset(&self, lin: usize) -> [u64; 4] {
        let mut rest = lin;
        let mut at = [0u64; 4];
        for a in (0..4).rev() {
            at[a] = ((rest % self.count[a]) * self.chunk[a]) as u64;
            rest /= self.count[a];
        }
        at
    }

    /// The images a slab holding image `index` covers: `(first, rows)`, inside one chunk row.
    /// A chunk of whole images is one slab; chunks that cut images, when `filtered`, give
    /// slabs of their whole chunk row (one inflate per chunk serves all its images) up to
    /// [`SLAB_MAX`] bytes, else of the one image (copied from the map).
    pub fn slab(&self, index: usize, filtered: bool) -> (usize, usize) {
        let c0 = self.chunk[0];
        let row_start = index / c0 * c0;
        let per = if self.whole() {
            c0
        } else if filtered {
            (SLAB_MAX / self.sample_bytes().max(1)).clamp(1, c0)
        } else {
            1
        };
        let first = row_start + (index - row_start) / per * per;
        let rows = per.min(row_start + c0 - first).min(self.dims[0] - first);
        (first, rows)
    }

    /// Copies the part of chunk `lin` (its unfiltered bytes `chunk`) that holds images
    /// `first..first + rows` into `slab` (those images, C order).
    pub fn scatter(&self, lin: usize, chunk: &[u8], first: usize, rows: usize, slab: &mut [u8]) {
        let at = self.offset(lin).map(|v| v as usize);
        let e = self.elem;
        let [_, h, w, c] = self.dims;
        let [_, ch, cw, cc] = self.chunk;
        // The valid extent of this chunk along H, W, C (edge chunks are padded).
        let vh = ch.min(h - at[1]);
        let vw = cw.min(w - at[2]);
        let vc = cc.min(c - at[3]);
        let sb = self.sample_bytes();
        for r in first..first + rows {
            let lr = r - at[0];
            for y in 0..vh {
                let src_row = ((lr * ch + y) * cw) * cc * e;
                let dst_row = (r - first) * sb + (((at[1] + y) * w + at[2]) * c + at[3]) * e;
                if vc == c && cc == c {
                    // Whole pixels: one run per image row.
                    let n = vw * c * e;
                    slab[dst_row..dst_row + n].copy_from_slice(&chunk[src_row..src_row + n]);
                } else {
                    // Part of each pixel (chunks that cut C): a short run per pixel, copied
                    // without a call per run.
                    let run = vc * e;
                    let src = &chunk[src_row..src_row + vw * cc * e];
                    let dst = &mut slab[dst_row..dst_row + (vw - 1) * c * e + run];
                    for (d, s) in dst.chunks_mut(c * e).zip(src.chunks_exact(cc * e)) {
                        for (o, i) in d[..run].iter_mut().zip(&s[..run]) {
                            *o = *i;
                        }
                    }
                }
            }
        }
    }
}

/// A chunked dataset's chunk addresses, found at first use and kept.
pub(crate) struct Chunks {
    pub grid: Grid,
    pub pipeline: Vec<Filter>,
    locs: Vec<OnceLock<Loc>>,
}

impl std::fmt::Debug for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chunks")
            .field("grid", &self.grid)
            .field("pipeline", &self.pipeline)
            .finish_non_exhaustive()
    }
}

impl Chunks {
    /// The chunk table of `grid`, every address still unknown.
    pub fn new(grid: Grid, pipeline: Vec<Filter>) -> Chunks {
        let locs = (0..grid.len()).map(|_| OnceLock::new()).collect();
        Chunks {
            grid,
            pipeline,
            locs,
        }
    }

    /// Where chunk `lin` lies: the library asked once, under its lock.
    pub fn locate(&self, ds: &h5::Dataset, lin: usize) -> Result<Loc, String> {
        if let Some(l) = self.locs[lin].get() {
            return Ok(*l);
        }
        let off = self.grid.offset(lin);
        let off = &off[..self.grid.rank];
        let (mut mask, mut addr, mut size) = (0u32, UNDEF, 0u64);
        let id = ds.id();
        // SAFETY: `id` is a live dataset (held by `ds`), `off` has the dataset's rank, and the
        // out-pointers are valid; the call is made under hdf5-metno's global lock.
        let rc = h5::sync::sync(|| unsafe {
            hdf5_sys::h5d::H5Dget_chunk_info_by_coord(
                id,
                off.as_ptr(),
                &mut mask,
                &mut addr,
                &mut size,
            )
        });
        if rc < 0 {
            return Err(format!("hdf5: no chunk at {off:?}"));
        }
        let l = Loc { addr, size, mask };
        let _ = self.locs[lin].set(l);
        Ok(l)
    }

    /// The slab of image `index` ([`Grid::slab`]).
    pub fn slab(&self, index: usize) -> (usize, usize) {
        self.grid.slab(index, !self.pipeline.is_empty())
    }

    /// Whether chunk `l` is stored unfiltered (no filter, or every filter skipped).
    pub fn plain(&self, l: &Loc) -> bool {
        (0..self.pipeline.len()).all(|k| k < 32 && l.mask & (1 << k) != 0)
    }

    /// The stored bytes of chunk `l` in `map`, or `None` when they do not lie inside it (a
    /// truncated file, or one this process still writes through the library).
    pub fn stored<'a>(&self, map: &'a [u8], l: &Loc) -> Option<&'a [u8]> {
        let s = usize::try_from(l.addr).ok()?;
        let n = usize::try_from(l.size).ok()?;
        map.get(s..s.checked_add(n)?)
    }

    /// Undoes the filters of chunk `l` (its stored bytes `raw`) into `out`.
    pub fn unfilter(
        &self,
        l: &Loc,
        raw: &[u8],
        out: &mut [u8],
        tmp: &mut [u8],
    ) -> Result<(), String> {
        filters::undo(&self.pipeline, l.mask, raw, out, tmp)
    }

    /// Whether chunk `l` was ever written.
    pub fn allocated(l: &Loc) -> bool {
        l.addr != UNDEF
    }
}
