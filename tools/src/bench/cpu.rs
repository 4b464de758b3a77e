//! The machine a figure was measured on, and the kernels the loader ran there: every A/B
//! figure is quoted with it, since the fastest kernel depends on the CPU model, not only on
//! the instruction sets it reports.

use serde::Serialize;
use stoker::augment::Augment;
use stoker::simd::{SimdLevel, Vbmi};

/// `cpu` in `stoker bench --json`.
#[derive(Debug, Serialize)]
pub struct CpuReport {
    /// The CPU's model name (`/proc/cpuinfo`), or `unknown`.
    pub model: String,
    /// The widest kernel set this CPU runs (`scalar`, `avx2`, `avx512`).
    pub simd: &'static str,
    /// Whether the CPU has AVX-512 VBMI (the permute loops).
    pub has_vbmi: bool,
    /// The VBMI setting in force (`STOKER_VBMI`: `auto`, `on`, `off`).
    pub vbmi: &'static str,
    /// What the augmentation ran, per kernel: `true` the VBMI permutes, `false` the gathers,
    /// `null` still timing them (or no augmentation).
    pub vbmi_rgb: Option<bool>,
    pub vbmi_ycbcr: Option<bool>,
}

impl CpuReport {
    /// This machine, and what `augment` (if any) chose on it.
    pub fn new(augment: Option<&Augment>) -> stoker::Result<CpuReport> {
        let (rgb, ycbcr) = augment.map_or((None, None), Augment::vbmi_choice);
        Ok(CpuReport {
            model: model(),
            simd: SimdLevel::detect().as_str(),
            has_vbmi: Vbmi::available(),
            vbmi: Vbmi::from_env()?.as_str(),
            vbmi_rgb: rgb,
            vbmi_ycbcr: ycbcr,
        })
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        let kept = |v: Option<bool>| match v {
            Some(true) => "permutes",
            Some(false) => "gathers",
            None => "-",
        };
        format!(
            "cpu: {}, {} kernels, VBMI {} ({}; kept: rgb {}, ycbcr {})",
            self.model,
            self.simd,
            if self.has_vbmi { "present" } else { "absent" },
            self.vbmi,
            kept(self.vbmi_rgb),
            kept(self.vbmi_ycbcr)
        )
    }
}

/// The CPU's model name, from the first `model name` line of `/proc/cpuinfo`.
pub fn model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "unknown".to_string())
}
