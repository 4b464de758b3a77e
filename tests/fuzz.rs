//! The fuzz targets on stable, in CI: every file of `fuzz/corpus/<target>/` (the seeds) and
//! `fuzz/regressions/<target>/` (each crash the fuzzer found, kept once fixed) replayed, then
//! seeded mutations of the seeds (bit flips, byte values, cuts, splices, length fields), so
//! that the targets run in seconds on every commit. `fuzz/README.md` says how to fuzz for real.

use std::path::Path;

/// The files of `fuzz/<kind>/<target>/`, sorted (none when the folder does not exist).
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| {
            let p = e.unwrap().path();
            (p.display().to_string(), std::fs::read(&p).unwrap())
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: the mutations are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed` (`other` for splices), as libFuzzer's simplest mutators do.
fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let n = b.len();
        match rng.below(7) {
            0 if n > 0 => {
                let i = rng.below(n);
                b[i] ^= 1 << rng.below(8);
            }
            1 if n > 0 => {
                let i = rng.below(n);
                b[i] = [0, 0xff, 0x7f, 0x80, b'0', b'9', b' ', b','][rng.below(8)];
            }
            2 => b.truncate(rng.below(n + 1)),
            3 if n > 0 => {
                // A length or size field: a little-endian word set to an edge value.
                let i = rng.below(n);
                let v: u64 = [0, 1, u64::MAX, u32::MAX as u64, 1 << 31, 1 << 40][rng.below(6)];
                for (k, byte) in v.to_le_bytes().iter().enumerate().take(n - i) {
                    b[i + k] = *byte;
                }
            }
            4 if !other.is_empty() => {
                let (i, j) = (rng.below(n + 1), rng.below(other.len()));
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            5 if n > 0 => {
                let (i, len) = (rng.below(n), 1 + rng.below(16));
                b.drain(i..(i + len).min(n));
            }
            _ => {
                let i = rng.below(n + 1);
                let chunk: Vec<u8> = (0..1 + rng.below(8)).map(|_| rng.next() as u8).collect();
                b.splice(i..i, chunk);
            }
        }
    }
    b
}

/// Replays the corpus and the regressions of `target` through `f`, then `mutations` seeded
/// mutations of its seeds; a panic names the input (for a mutation: its seed and number).
fn replay(target: &str, mutations: usize, f: fn(&[u8])) {
    let seeds = inputs("corpus", target);
    assert!(
        !seeds.is_empty(),
        "no seed corpus for {target}: run fuzz/make-seeds.py"
    );
    for (name, data) in seeds.iter().chain(&inputs("regressions", target)) {
        if std::panic::catch_unwind(|| f(data)).is_err() {
            panic!("{target}: {name} panics");
        }
    }
    let mut rng = Rng(0x5eed ^ target.len() as u64);
    for k in 0..mutations {
        let (name, seed) = &seeds[k % seeds.len()];
        let other = &seeds[rng.below(seeds.len())].1;
        let input = mutate(seed, other, &mut rng);
        if std::panic::catch_unwind(|| f(&input)).is_err() {
            let out = std::env::temp_dir().join(format!("stoker-fuzz-{target}-{k}"));
            std::fs::write(&out, &input).unwrap();
            panic!(
                "{target}: mutation {k} of {name} panics; input written to {} (add it to fuzz/regressions/{target}/)",
                out.display()
            );
        }
    }
}

#[test]
fn npy_header_and_labels() {
    replay("npy", 100_000, stoker::fuzz::npy);
}

#[test]
fn tar_index() {
    replay("tar", 20_000, stoker::fuzz::tar);
}

#[test]
fn manifest_csv() {
    replay("manifest", 50_000, stoker::fuzz::manifest);
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_layout() {
    replay("hdf5", 100_000, stoker::fuzz::hdf5);
}

#[test]
fn decode_and_augment() {
    replay("decode_augment", 5_000, stoker::fuzz::decode_augment);
}

#[test]
fn the_decode_seeds_reach_the_cmyk_path() {
    // A JPEG whose frame has four components decodes through CMYK: the seeds hold a CMYK and
    // a YCCK one, and both decode to RGB.
    let four_components = |b: &[u8]| {
        let sof = b
            .windows(2)
            .position(|w| w[0] == 0xFF && matches!(w[1], 0xC0..=0xC2))
            .unwrap();
        b[sof + 9] == 4
    };
    let mut d = stoker::decode::Decoder::new().unwrap();
    let mut cmyk = Vec::new();
    for (name, data) in inputs("corpus", "decode_augment") {
        if stoker::decode::ImageFormat::sniff(&data) == Some(stoker::decode::ImageFormat::Jpeg)
            && four_components(&data)
        {
            let img = d.decode(&data, 3, None).unwrap();
            assert_eq!(img.channels, 3, "{name}");
            cmyk.push(name.rsplit('/').next().unwrap().to_string());
        }
    }
    assert_eq!(cmyk, ["cmyk.jpg", "ycck.jpg"]);
}

#[test]
fn the_mutations_change_their_seeds() {
    // A replay that never reached bad input would prove nothing: most mutations differ from
    // their seed, and some are rejected by the parser.
    let seeds = inputs("corpus", "npy");
    let mut rng = Rng(1);
    let (mut changed, mut rejected) = (0, 0);
    for k in 0..200 {
        let seed = &seeds[k % seeds.len()].1;
        let m = mutate(seed, &seeds[0].1, &mut rng);
        changed += usize::from(&m != seed);
        rejected += usize::from(stoker::source::NpySource::open(write(&m), None).is_err());
    }
    assert!(changed > 180, "{changed}");
    assert!(rejected > 50, "{rejected}");
}

fn write(data: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("stoker-fuzz-probe-{}.npy", std::process::id()));
    std::fs::write(&p, data).unwrap();
    p
}
