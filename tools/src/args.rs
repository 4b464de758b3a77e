//! Typed command-line values shared by the subcommands: each parser gives clap the error
//! message to show (clap then exits with status 2).

use std::path::{Path, PathBuf};

use stoker::{DType, Layout, Normalize, OnError, SkipBound};

/// `--size WxH`: two positive integers.
pub fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size {s:?} is not WxH"))?;
    let p = |v: &str| {
        v.trim()
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("size {s:?}: {v:?} is not a positive integer"))
    };
    Ok((p(w)?, p(h)?))
}

/// `--dtype`: the library's spellings (`u8`, `f16`/`half`, `bf16`, `f32`/`float`, any case).
pub fn parse_dtype(s: &str) -> Result<DType, String> {
    s.parse()
        .map_err(|e: stoker::Error| e.message().to_string())
}

/// `--layout`: `nchw` or `nhwc`, any case.
pub fn parse_layout(s: &str) -> Result<Layout, String> {
    s.parse()
        .map_err(|e: stoker::Error| e.message().to_string())
}

/// `--on-error`: `raise` (or `error`, `fail`) or `skip`.
pub fn parse_on_error(s: &str) -> Result<OnError, String> {
    s.parse()
        .map_err(|e: stoker::Error| e.message().to_string())
}

/// `--max-skipped`: a count (`12`) or a percentage (`2%`).
pub fn parse_skip_bound(s: &str) -> Result<SkipBound, String> {
    s.parse()
        .map_err(|e: stoker::Error| e.message().to_string())
}

/// Lowercase name of a layout, as reports print it.
pub fn layout_name(l: Layout) -> &'static str {
    match l {
        Layout::Nchw => "nchw",
        Layout::Nhwc => "nhwc",
    }
}

/// `--normalize`: none, or ImageNet's mean and std.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormalizeArg {
    /// No normalisation (8-bit sources map to `[0, 1]` for float dtypes).
    None,
    /// ImageNet's per-channel mean and std.
    Imagenet,
}

impl NormalizeArg {
    /// The loader's normalisation, if any.
    pub fn get(self) -> Option<Normalize> {
        match self {
            NormalizeArg::None => None,
            NormalizeArg::Imagenet => Some(Normalize::imagenet()),
        }
    }
}

/// `--normalize`: `none` or `imagenet` (any case).
pub fn parse_normalize(s: &str) -> Result<NormalizeArg, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(NormalizeArg::None),
        "imagenet" => Ok(NormalizeArg::Imagenet),
        _ => Err(format!("unknown normalisation {s:?} (none, imagenet)")),
    }
}

/// The embedded default data set: `fixtures/` under the current directory, else the one
/// beside the sources this binary was built from.
pub fn default_data() -> PathBuf {
    let here = Path::new("fixtures/photos-256x144");
    if here.is_dir() {
        return here.to_path_buf();
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/photos-256x144")
}

/// An order mode: `global` or `shards:K`.
pub fn parse_order(s: &str) -> Result<stoker::sampler::Order, String> {
    s.parse()
        .map_err(|e: stoker::Error| e.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256x144"), Ok((256, 144)));
        assert_eq!(parse_size("8X4"), Ok((8, 4)));
        assert!(parse_size("12by3").unwrap_err().contains("not WxH"));
        assert!(parse_size("0x3").unwrap_err().contains("positive"));
    }

    #[test]
    fn every_spelling_of_today() {
        assert_eq!(parse_dtype("HALF"), Ok(DType::F16));
        assert_eq!(parse_dtype("float"), Ok(DType::F32));
        assert_eq!(parse_dtype("bfloat16"), Ok(DType::BF16));
        assert!(parse_dtype("f64").unwrap_err().contains("\"f64\""));
        assert_eq!(parse_layout("NHWC"), Ok(Layout::Nhwc));
        assert_eq!(layout_name(parse_layout("Nchw").unwrap()), "nchw");
        assert_eq!(parse_on_error("fail"), Ok(OnError::Raise));
        assert_eq!(parse_on_error("skip"), Ok(OnError::Skip));
        assert!(parse_on_error("ignore").is_err());
        assert_eq!(parse_skip_bound("2%"), Ok(SkipBound::Fraction(0.02)));
        assert_eq!(parse_skip_bound("7"), Ok(SkipBound::Count(7)));
        assert!(parse_skip_bound("lots").unwrap_err().contains("\"lots\""));
        assert_eq!(parse_normalize("none"), Ok(NormalizeArg::None));
        assert_eq!(parse_normalize("ImageNet"), Ok(NormalizeArg::Imagenet));
        assert!(NormalizeArg::Imagenet.get().is_some());
        assert!(parse_normalize("coco").unwrap_err().contains("\"coco\""));
    }
}
