//! What a decoder makes of damaged image data.

/// What a [`Decoder`](super::Decoder) makes of damaged image data: whether an image that
/// libjpeg-turbo could only partly decode comes back (with a [`warning`](super::Decoder::warning),
/// counted in [`Stats::decoded_with_warnings`](crate::Stats::decoded_with_warnings)) or is a
/// [`Decode`](crate::ErrorKind::Decode) error.
///
/// | damage | `Strict` | `Tolerant` (default) | `Lenient` |
/// |---|---|---|---|
/// | corrupt scan data (bad Huffman code, extraneous bytes, a lost restart marker) | error | warning | warning |
/// | header damage libjpeg reads past (junk between two segments, a segment length field too short) | error | warning | warning |
/// | truncated file (premature end of data) | error | error | warning |
/// | header or table damage libjpeg cannot get past (also after a warning), not an image | error | error | error |
///
/// `Tolerant` is what Pillow and torchvision do: they decode corrupt scan data (libjpeg fills
/// what it cannot decode with gray or smeared blocks) and refuse a truncated file (Pillow's
/// `LOAD_TRUNCATED_IMAGES = False`). `Lenient` is `LOAD_TRUNCATED_IMAGES = True`: the missing
/// rows come back gray. A PNG missing only its trailing chunks (the image data complete,
/// `IEND` cut off) decodes under every policy; a PNG cut inside its image data is an error.
///
/// ```
/// use stoker::decode::DecodePolicy;
/// assert_eq!(DecodePolicy::default(), DecodePolicy::Tolerant);
/// assert_eq!("strict".parse::<DecodePolicy>()?, DecodePolicy::Strict);
/// assert_eq!(DecodePolicy::Lenient.as_str(), "lenient");
/// assert!("loose".parse::<DecodePolicy>().is_err());
/// # Ok::<(), stoker::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DecodePolicy {
    /// Every libjpeg-turbo warning is an error: an image is either decoded exactly as encoded
    /// or not at all.
    Strict,
    /// Corrupt scan data decodes with a warning; a truncated file is an error.
    #[default]
    Tolerant,
    /// Corrupt scan data and truncated files decode with a warning.
    Lenient,
}

impl DecodePolicy {
    /// The lowercase name: `"strict"`, `"tolerant"` or `"lenient"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodePolicy::Strict => "strict",
            DecodePolicy::Tolerant => "tolerant",
            DecodePolicy::Lenient => "lenient",
        }
    }
}

impl std::str::FromStr for DecodePolicy {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(DecodePolicy::Strict),
            "tolerant" => Ok(DecodePolicy::Tolerant),
            "lenient" => Ok(DecodePolicy::Lenient),
            _ => Err(crate::Error::usage(format!(
                "unknown decode policy {s:?} (strict, tolerant, lenient)"
            ))),
        }
    }
}
