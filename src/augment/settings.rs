//! Every augmentation setting, declared once: its spec keys, how its value is written, how it
//! is set, shown and checked. [`Augment::from_spec`](super::Augment::from_spec) (and its list
//! of known keys), [`Display`](std::fmt::Display) and
//! [`AugmentBuilder::build`](super::AugmentBuilder::build)'s checks all read [`SETTINGS`]; a
//! new setting is a `Config` field, its builder method and one entry here.

use super::{Config, FillMode, Interpolation};

/// How a setting's value is written in a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Arg {
    /// No value: `hflip`.
    Flag,
    /// A number: `rotation=15`.
    Num,
    /// `LO:HI`.
    Range,
    /// `LO:HI`, or `R` for `1-R:1+R`.
    Spread,
    /// A fill mode name.
    Fill,
    /// `SLO:SHI[/RLO:RHI]`.
    Crop,
}

/// A parsed spec value.
#[derive(Clone, Copy, Debug)]
pub(super) enum Value {
    Flag,
    Num(f64),
    Range(f64, f64),
    Fill(FillMode),
    Crop((f64, f64), (f64, f64)),
}

impl Value {
    fn num(self) -> f64 {
        match self {
            Value::Num(v) => v,
            _ => unreachable!("parsed as its Arg says"),
        }
    }
    fn range(self) -> (f64, f64) {
        match self {
            Value::Range(lo, hi) => (lo, hi),
            _ => unreachable!("parsed as its Arg says"),
        }
    }
}

/// One setting.
pub(super) struct Setting {
    /// Spec keys; the first is the one [`Display`](std::fmt::Display) writes.
    pub keys: &'static [&'static str],
    /// How the value is written.
    pub arg: Arg,
    /// Sets it from a spec value.
    pub set: fn(&mut Config, Value),
    /// Its spec item, `None` at the default (or for a key that only sets others).
    pub show: fn(&Config) -> Option<String>,
    /// `Some(message)` when its value cannot work.
    pub check: fn(&Config) -> Option<&'static str>,
}

fn fin(v: f64) -> bool {
    v.is_finite()
}

/// `0 < lo <= hi`, both finite, `hi <= max`.
fn range_ok((lo, hi): (f64, f64), max: f64) -> bool {
    fin(lo) && fin(hi) && lo > 0.0 && lo <= hi && hi <= max
}

fn frange_ok((lo, hi): (f32, f32)) -> bool {
    range_ok((lo as f64, hi as f64), 1e3)
}

fn shift_ok(r: f64) -> bool {
    fin(r) && r >= 0.0 && (r < 1.0 || r.fract() == 0.0) && r < 1e6
}

fn none(_: &Config) -> Option<&'static str> {
    None
}

fn hidden(_: &Config) -> Option<String> {
    None
}

/// Every setting, in the order [`Display`](std::fmt::Display) writes them.
pub(super) const SETTINGS: &[Setting] = &[
    Setting {
        keys: &["rotation", "rot"],
        arg: Arg::Num,
        set: |c, v| c.rotation = v.num(),
        show: |c| (c.rotation != 0.0).then(|| format!("rotation={}", c.rotation)),
        check: |c| {
            (!(fin(c.rotation) && c.rotation >= 0.0))
                .then_some("rotation_range must be finite and >= 0")
        },
    },
    Setting {
        keys: &["shift"],
        arg: Arg::Num,
        set: |c, v| (c.width_shift, c.height_shift) = (v.num(), v.num()),
        show: hidden,
        check: none,
    },
    Setting {
        keys: &["wshift"],
        arg: Arg::Num,
        set: |c, v| c.width_shift = v.num(),
        show: |c| (c.width_shift != 0.0).then(|| format!("wshift={}", c.width_shift)),
        check: |c| {
            (!shift_ok(c.width_shift))
                .then_some("width_shift_range must be a fraction in [0, 1) or whole pixels")
        },
    },
    Setting {
        keys: &["hshift"],
        arg: Arg::Num,
        set: |c, v| c.height_shift = v.num(),
        show: |c| (c.height_shift != 0.0).then(|| format!("hshift={}", c.height_shift)),
        check: |c| {
            (!shift_ok(c.height_shift))
                .then_some("height_shift_range must be a fraction in [0, 1) or whole pixels")
        },
    },
    Setting {
        keys: &["zoom"],
        arg: Arg::Spread,
        set: |c, v| c.zoom = v.range(),
        show: |c| (c.zoom != (1.0, 1.0)).then(|| format!("zoom={}:{}", c.zoom.0, c.zoom.1)),
        check: |c| (!range_ok(c.zoom, 1e3)).then_some("zoom_range must be 0 < lo <= hi <= 1000"),
    },
    Setting {
        keys: &["isozoom"],
        arg: Arg::Flag,
        set: |c, _| c.isotropic = true,
        show: |c| c.isotropic.then(|| "isozoom".into()),
        check: none,
    },
    Setting {
        keys: &["crop"],
        arg: Arg::Crop,
        set: |c, v| {
            if let Value::Crop(s, r) = v {
                c.crop = Some((s, r));
            }
        },
        show: |c| {
            c.crop
                .map(|(s, r)| format!("crop={}:{}/{}:{}", s.0, s.1, r.0, r.1))
        },
        check: |c| match c.crop {
            Some((scale, _)) if !range_ok(scale, 1.0) => {
                Some("random_resized_crop scale must be 0 < lo <= hi <= 1")
            }
            Some((_, ratio)) if !range_ok(ratio, 1e3) || ratio.0 < 1e-3 => {
                Some("random_resized_crop ratio must be 0.001 <= lo <= hi <= 1000")
            }
            _ => None,
        },
    },
    Setting {
        keys: &["hflip"],
        arg: Arg::Flag,
        set: |c, _| c.hflip = true,
        show: |c| c.hflip.then(|| "hflip".into()),
        check: none,
    },
    Setting {
        keys: &["vflip"],
        arg: Arg::Flag,
        set: |c, _| c.vflip = true,
        show: |c| c.vflip.then(|| "vflip".into()),
        check: none,
    },
    Setting {
        keys: &["fill"],
        arg: Arg::Fill,
        set: |c, v| {
            if let Value::Fill(f) = v {
                c.fill = f;
            }
        },
        show: |c| (c.fill != FillMode::default()).then(|| format!("fill={}", c.fill.as_str())),
        check: none,
    },
    Setting {
        keys: &["cval"],
        arg: Arg::Num,
        set: |c, v| c.cval = v.num() as f32,
        show: |c| (c.cval != 0.0).then(|| format!("cval={}", c.cval)),
        check: |c| (!c.cval.is_finite()).then_some("cval must be finite"),
    },
    Setting {
        keys: &["nearest"],
        arg: Arg::Flag,
        set: |c, _| c.interpolation = Interpolation::Nearest,
        show: |c| (c.interpolation == Interpolation::Nearest).then(|| "nearest".into()),
        check: none,
    },
    Setting {
        keys: &["brightness"],
        arg: Arg::Range,
        set: |c, v| {
            let (lo, hi) = v.range();
            c.brightness = (lo as f32, hi as f32);
        },
        show: |c| {
            (c.brightness != (1.0, 1.0))
                .then(|| format!("brightness={}:{}", c.brightness.0, c.brightness.1))
        },
        check: |c| {
            (!frange_ok(c.brightness)).then_some("brightness_range must be 0 < lo <= hi <= 1000")
        },
    },
    Setting {
        keys: &["contrast"],
        arg: Arg::Range,
        set: |c, v| {
            let (lo, hi) = v.range();
            c.contrast = (lo as f32, hi as f32);
        },
        show: |c| {
            (c.contrast != (1.0, 1.0))
                .then(|| format!("contrast={}:{}", c.contrast.0, c.contrast.1))
        },
        check: |c| {
            (!frange_ok(c.contrast)).then_some("contrast_range must be 0 < lo <= hi <= 1000")
        },
    },
    Setting {
        keys: &["noise"],
        arg: Arg::Num,
        set: |c, v| c.noise_std = v.num() as f32,
        show: |c| (c.noise_std != 0.0).then(|| format!("noise={}", c.noise_std)),
        check: |c| {
            (!(c.noise_std.is_finite() && c.noise_std >= 0.0))
                .then_some("noise_std must be finite and >= 0")
        },
    },
    Setting {
        keys: &["saltpepper", "sp"],
        arg: Arg::Num,
        set: |c, v| c.salt_pepper = v.num() as f32,
        show: |c| (c.salt_pepper != 0.0).then(|| format!("saltpepper={}", c.salt_pepper)),
        check: |c| {
            (!(0.0..=1.0).contains(&c.salt_pepper)).then_some("salt_pepper must be in [0, 1]")
        },
    },
    Setting {
        keys: &["ycbcr"],
        arg: Arg::Flag,
        set: |c, _| c.ycbcr = true,
        show: |c| c.ycbcr.then(|| "ycbcr".into()),
        check: |c| {
            (c.ycbcr && c.interpolation != Interpolation::Bilinear)
                .then_some("ycbcr needs bilinear interpolation (not nearest)")
        },
    },
];

/// The setting with spec key `key`.
pub(super) fn find(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.keys.contains(&key))
}

/// Every spec key, comma-separated, for the error of an unknown one.
pub(super) fn known_keys() -> String {
    let names: Vec<&str> = SETTINGS.iter().map(|s| s.keys[0]).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique() {
        let mut keys: Vec<&str> = SETTINGS
            .iter()
            .flat_map(|s| s.keys.iter().copied())
            .collect();
        let n = keys.len();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn every_shown_setting_parses_back() {
        use super::super::Augment;
        let spec = "rotation=12,wshift=0.1,hshift=3,zoom=0.8:1.25,isozoom,crop=0.5:1/0.75:1.5,\
                    hflip,vflip,fill=wrap,cval=7,nearest,brightness=0.9:1.1,contrast=0.8:1.2,\
                    noise=0.02,saltpepper=0.001";
        let a = Augment::from_spec(spec).unwrap();
        assert_eq!(a.to_string(), spec);
        // Every setting but the `shift` alias and `ycbcr` (which `nearest` excludes) is in the
        // spec: none is forgotten by Display.
        let shown = |a: &Augment| {
            SETTINGS
                .iter()
                .filter(|s| (s.show)(&a.cfg).is_some())
                .count()
        };
        assert_eq!(shown(&a), SETTINGS.len() - 2);
        assert_eq!(Augment::from_spec(&a.to_string()).unwrap().cfg, a.cfg);
        let y = Augment::from_spec("rotation=3,ycbcr").unwrap();
        assert_eq!((y.to_string().as_str(), shown(&y)), ("rotation=3,ycbcr", 2));
    }

    #[test]
    fn each_check_names_its_setting() {
        use super::super::Augment;
        for (spec, word) in [
            ("rotation=-1", "rotation_range"),
            ("wshift=1.5", "width_shift_range"),
            ("hshift=-2", "height_shift_range"),
            ("zoom=1.2:0.8", "zoom_range"),
            ("crop=0.5:2", "scale"),
            ("crop=0.5:1/0.0001:1", "ratio"),
            ("brightness=0:1", "brightness_range"),
            ("contrast=2:1", "contrast_range"),
            ("noise=-0.1", "noise_std"),
            ("saltpepper=2", "salt_pepper"),
            ("ycbcr,nearest", "ycbcr"),
        ] {
            let e = Augment::from_spec(spec).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Usage);
            assert!(e.to_string().contains(word), "{spec}: {e}");
        }
        let e = Augment::from_spec("spin=3").unwrap_err();
        assert!(e.to_string().contains(&known_keys()), "{e}");
    }

    #[test]
    fn defaults_show_nothing_and_pass_every_check() {
        let c = Config::default();
        for s in SETTINGS {
            assert_eq!((s.show)(&c), None, "{}", s.keys[0]);
            assert_eq!((s.check)(&c), None, "{}", s.keys[0]);
        }
    }
}
