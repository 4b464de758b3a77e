//! `stoker inspect`: format, samples, shape, labels and the fast-layout verdict.

mod common;

use common::{stdout, stoker_ok};

use stoker::Pixels;
use stoker::source::{Hdf5Layout, save_hdf5};

fn inspect(path: &str, extra: &[&str]) -> String {
    stdout(&stoker_ok(&[&["inspect", path], extra].concat()))
}

#[test]
fn reports_each_format() {
    let npy = inspect(
        "fixtures/npy/images-*.npy",
        &["--labels", "fixtures/npy/labels-*.npy"],
    );
    for line in [
        "format: npy",
        "samples: 32",
        "shape: 144x256x3 (HxWxC), u8",
        "fast layout: yes",
        "labels: 4 classes",
        "       3        8 ",
    ] {
        assert!(npy.contains(line), "{line}: {npy}");
    }
    let folder = inspect("fixtures/photos-256x144", &[]);
    assert!(folder.contains("format: image folder"), "{folder}");
    assert!(folder.contains("first sample 144x256"), "{folder}");
    assert!(folder.contains("fast layout: no"), "{folder}");

    let dir = tempfile::tempdir().unwrap();
    for (name, layout, verdict) in [
        ("flat.h5", Hdf5Layout::Contiguous, "fast layout: yes"),
        (
            "chunked.h5",
            Hdf5Layout::Chunked {
                rows: 2,
                deflate: Some(1),
            },
            "fast layout: yes (chunked (2, 1, 3, 1) deflate, read from the memory map by chunk \
             address, lock-free, inflated in the workers)",
        ),
    ] {
        let p = dir.path().join(name);
        save_hdf5(
            &p,
            Pixels::F32(&[0.5; 12]),
            [4, 1, 3, 1],
            Some(&[1, 1, 2, 9]),
            layout,
        )
        .unwrap();
        let text = inspect(p.to_str().unwrap(), &[]);
        assert!(text.contains(verdict), "{name}: {text}");
        assert!(text.contains("shape: 1x3x1 (HxWxC), f32"), "{text}");
        assert!(text.contains("labels: 3 classes"), "{text}");
        assert!(text.contains("       1        2 "), "{text}");
    }
}

#[test]
fn json_report() {
    let out = stoker_ok(&[
        "inspect",
        "fixtures/npy/images-*.npy",
        "--labels",
        "fixtures/npy/labels-*.npy",
        "--json",
    ]);
    let j = common::json(&out);
    assert_eq!(j["format"], "npy");
    assert_eq!(j["samples"], 32);
    assert_eq!(j["shape"], "144x256x3 (HxWxC), u8");
    assert_eq!(
        (&j["height"], &j["width"], &j["channels"]),
        (&144.into(), &256.into(), &3.into())
    );
    assert_eq!(j["dtype"], "u8");
    assert!(j["encoding"].is_null());
    assert_eq!(j["fast"], true);
    let labels = j["labels"].as_array().unwrap();
    assert_eq!(labels.len(), 4);
    assert!(labels.iter().all(|l| l["count"] == 8), "{j}");
    assert_eq!(j["unreadable_samples"], 0);

    let j = common::json(&stoker_ok(&[
        "inspect",
        "fixtures/photos-256x144",
        "--json",
    ]));
    assert_eq!(j["format"], "image folder");
    assert_eq!(j["encoding"], "jpeg");
    assert_eq!(j["fast"], false);
    assert_eq!((&j["height"], &j["width"]), (&144.into(), &256.into()));
    assert!(common::text(&j, "fast_layout").starts_with("no: one file per sample"));
}
