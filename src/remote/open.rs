//! Opening an `s3://` path: which objects make the data set (a glob of shards, a directory's
//! `stoker.json`, NPY shards with their labels, one object), and a [`RemoteShards`] over them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::S3Url;
use super::cache::Cache;
use super::fetcher::{Budget, Counters, Fetcher, Shard};
use super::loose::RemoteFolder;
use super::shards::RemoteShards;
use super::store::{Object, Store};
use super::url::glob_matches;
use crate::source::{Format, Index, OpenOptions, Part, Source, format_named};
use crate::{Error, ErrorKind, Result};

/// Shards fetched at once.
const FETCH_THREADS: usize = 4;

/// What [`open`] found and opened.
pub(crate) struct Opened {
    pub format: &'static dyn Format,
    pub source: Box<dyn Source>,
    pub counters: Arc<Counters>,
}

/// What a path names: shards, or a prefix of loose images.
enum What {
    Shards(Box<Found>),
    Images {
        prefix: String,
        listing: Vec<Object>,
    },
}

/// The objects of a data set, before anything is fetched.
struct Found {
    format: &'static dyn Format,
    shards: Vec<Shard>,
    /// Samples per shard, when an index says.
    counts: Option<Vec<usize>>,
    /// The index, and its URL, when there is one.
    index: Option<(Index, String)>,
}

/// Opens the data set at `s3://…` `text` (see [`open`](crate::source::open)).
pub(crate) fn open(text: &str, opts: &OpenOptions) -> Result<Opened> {
    let url = S3Url::parse(text)?;
    if opts.labels_override().is_some() {
        return Err(Error::usage(
            "labels cannot be given for an s3:// path (NPY labels pair by name in the bucket)",
        )
        .file(text));
    }
    let store = Store::connect(url.bucket(), opts)?;
    let cache = Cache::new(opts.cache_dir_value())?;
    let found = match find(&store, &cache, &url)? {
        What::Shards(found) => *found,
        What::Images { prefix, listing } => {
            let folder = RemoteFolder::from_listing(store, &prefix, &listing)
                .expect("find saw images under the prefix");
            return Ok(Opened {
                format: format_named("image folder").expect("a built-in format"),
                counters: folder.counters(),
                source: Box::new(folder),
            });
        }
    };
    let format = found.format;
    let found = match found.counts {
        // NPY shards say how many images they hold in their first bytes.
        None if format.name() == "npy" => Found {
            counts: Some(super::count::npy_counts(&store, &found.shards)?),
            ..found
        },
        _ => found,
    };
    let urls: Vec<PathBuf> = found.shards.iter().map(|s| PathBuf::from(&s.url)).collect();
    let n = found.shards.len();
    let budget = Budget {
        ahead: opts.fetch_ahead_value(),
        limit: opts.cache_limit_value(),
    };
    let initial: Vec<u32> = match &found.counts {
        Some(c) => sequence(c),
        None => (0..n as u32).collect(),
    };
    let fetcher = Fetcher::start(
        store,
        cache,
        url.bucket().to_string(),
        found.shards,
        initial,
        budget,
        FETCH_THREADS,
    )?;
    let counts = match found.counts {
        Some(c) => c,
        None => {
            // No index says how many samples each shard holds (tar): open each once to count.
            let mut counts = Vec::with_capacity(n);
            for (k, u) in urls.iter().enumerate() {
                let claim = fetcher.wait(k)?;
                let paths = fetcher.local_paths(k);
                let src = format.open(&paths[..1], opts).map_err(|e| {
                    Error::new(e.kind(), e.message().to_string())
                        .file(u)
                        .with_source(e)
                })?;
                counts.push(src.len());
                drop(claim);
            }
            fetcher.plan(sequence(&counts));
            counts
        }
    };
    if let Some((index, iurl)) = &found.index {
        let sum: usize = counts.iter().sum();
        if sum != index.samples {
            return Err(Error::format(
                iurl,
                format!("lists {} samples but its shards hold {sum}", index.samples),
            ));
        }
    }
    let counters = fetcher.shared.counters.clone();
    let evicting = budget.limit.is_some();
    let source = RemoteShards::new(format, opts.clone(), urls, &counts, fetcher, evicting)?;
    Ok(Opened {
        format,
        source: Box::new(source),
        counters,
    })
}

/// Shard `k` repeated `counts[k]` times: the order read without a plan (sequential).
fn sequence(counts: &[usize]) -> Vec<u32> {
    counts
        .iter()
        .enumerate()
        .flat_map(|(k, &c)| std::iter::repeat_n(k as u32, c))
        .collect()
}

/// The format of shard files by their extension.
fn format_of(store: &Store, key: &str) -> Result<&'static dyn Format> {
    let lower = key.to_ascii_lowercase();
    let name = if lower.ends_with(".tar") {
        "tar"
    } else if lower.ends_with(".npy") {
        "npy"
    } else if lower.ends_with(".h5") || lower.ends_with(".hdf5") {
        "hdf5"
    } else {
        ""
    };
    format_named(name).ok_or_else(|| {
        let msg = if name == "hdf5" {
            crate::source::WITHOUT_HDF5.to_string()
        } else {
            "not a shard stoker reads from object storage (.tar, .npy, .h5)".to_string()
        };
        Error::new(ErrorKind::Usage, msg).file(store.url(key))
    })
}

/// The objects of the data set `url` names.
fn find(store: &Store, cache: &Cache, url: &S3Url) -> Result<What> {
    if url.is_glob() {
        let pattern = glob::Pattern::new(url.key()).map_err(|e| {
            Error::usage(format!("bad glob pattern {url}: {}", e.msg)).with_source(e)
        })?;
        let listing = store.list(url.list_prefix())?;
        let objs: Vec<Object> = listing
            .iter()
            .filter(|o| glob_matches(&pattern, &o.key))
            .cloned()
            .collect();
        if objs.is_empty() {
            return Err(
                Error::new(ErrorKind::Remote, "no objects match this pattern")
                    .file(url.to_string()),
            );
        }
        return shards_of(store, objs, &listing).map(|f| What::Shards(Box::new(f)));
    }
    let key = url.key();
    if key == Index::FILE || key.ends_with(&format!("/{}", Index::FILE)) {
        let prefix = &key[..key.len() - Index::FILE.len()];
        let listing = store.list(prefix)?;
        return indexed(store, cache, url, prefix, &listing).map(|f| What::Shards(Box::new(f)));
    }
    if !key.is_empty()
        && !key.ends_with('/')
        && let Some(obj) = store.head(key)?
    {
        let listing = store.list(&key[..key.rfind('/').map_or(0, |s| s + 1)])?;
        return shards_of(store, vec![obj], &listing).map(|f| What::Shards(Box::new(f)));
    }
    let prefix = url.dir_prefix();
    let listing = store.list(&prefix)?;
    let here: Vec<&Object> = listing
        .iter()
        .filter(|o| !o.key[prefix.len()..].contains('/'))
        .collect();
    let name = |o: &Object| o.key[prefix.len()..].to_string();
    if here
        .iter()
        .any(|o| name(o) == Index::FILE || Part::of_index_file(&name(o)).is_some())
    {
        return indexed(store, cache, url, &prefix, &listing).map(|f| What::Shards(Box::new(f)));
    }
    let tars: Vec<Object> = here
        .iter()
        .filter(|o| o.key.to_ascii_lowercase().ends_with(".tar"))
        .map(|o| (*o).clone())
        .collect();
    if !tars.is_empty() {
        return shards_of(store, tars, &listing).map(|f| What::Shards(Box::new(f)));
    }
    let npys: Vec<Object> = here
        .iter()
        .filter(|o| name(o).starts_with("images") && o.key.ends_with(".npy"))
        .map(|o| (*o).clone())
        .collect();
    if !npys.is_empty() {
        return shards_of(store, npys, &listing).map(|f| What::Shards(Box::new(f)));
    }
    let lower = |o: &Object| o.key.to_ascii_lowercase();
    if listing.iter().any(|o| {
        [".jpg", ".jpeg", ".png"]
            .iter()
            .any(|x| lower(o).ends_with(x))
    }) {
        return Ok(What::Images { prefix, listing });
    }
    if listing.is_empty() && store.head(&format!("{prefix}{}", Index::FILE))?.is_none() {
        return Err(Error::new(ErrorKind::Remote, "no such object or prefix").file(url.to_string()));
    }
    Err(Error::new(
        ErrorKind::Format,
        "no data set here: no stoker.json, no shards (*.tar, images-*.npy) and no images",
    )
    .file(url.to_string()))
}

/// `objs` as shards of one format; NPY images take their labels (`labels-…`, `y_…`) from
/// `listing` by name, when every one has them.
fn shards_of(store: &Store, objs: Vec<Object>, listing: &[Object]) -> Result<Found> {
    let format = format_of(store, &objs[0].key)?;
    for o in &objs[1..] {
        let f = format_of(store, &o.key)?;
        if f.name() != format.name() {
            return Err(Error::usage(format!(
                "objects of two formats: {} ({}) and {} ({})",
                format.name(),
                store.url(&objs[0].key),
                f.name(),
                store.url(&o.key)
            )));
        }
    }
    let by_key: HashMap<&str, &Object> = listing.iter().map(|o| (o.key.as_str(), o)).collect();
    let labels: Vec<Option<Object>> = objs
        .iter()
        .map(|o| {
            if format.name() != "npy" {
                return None;
            }
            let (dir, name) = o
                .key
                .rsplit_once('/')
                .map_or(("", o.key.as_str()), |(d, n)| (d, n));
            let paired = paired_name(name)?;
            let key = if dir.is_empty() {
                paired
            } else {
                format!("{dir}/{paired}")
            };
            by_key.get(key.as_str()).map(|o| (*o).clone())
        })
        .collect();
    let all = labels.iter().all(Option::is_some);
    if !all && labels.iter().any(Option::is_some) {
        let missing = labels.iter().position(Option::is_none).unwrap_or(0);
        return Err(Error::format(
            store.url(&objs[missing].key),
            "no labels object beside it, unlike other image shards",
        ));
    }
    let shards = objs
        .into_iter()
        .zip(labels)
        .map(|(o, l)| Shard {
            url: store.url(&o.key),
            objects: std::iter::once(o).chain(l).collect(),
        })
        .collect();
    Ok(Found {
        format,
        shards,
        counts: None,
        index: None,
    })
}

/// The NPY labels file that pairs with images file `name` (as local NPY shards pair).
fn paired_name(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("images") {
        return Some(format!("labels{rest}"));
    }
    let rest = name.strip_prefix(['x', 'X'])?;
    rest.starts_with(['_', '-', '.'])
        .then(|| format!("y{rest}"))
}

/// The data set described by the index in `prefix` (its `stoker.json`, or its parts'
/// indexes merged): the index files are fetched into the cache and read there.
fn indexed(
    store: &Store,
    cache: &Cache,
    url: &S3Url,
    prefix: &str,
    listing: &[Object],
) -> Result<Found> {
    let local_dir = cache.path(url.bucket(), prefix);
    std::fs::create_dir_all(&local_dir).map_err(|e| Error::io(&local_dir, e))?;
    let is_index = |name: &str| name == Index::FILE || Part::of_index_file(name).is_some();
    let indexes: Vec<&Object> = listing
        .iter()
        .filter(|o| {
            let name = &o.key[prefix.len()..];
            !name.contains('/') && is_index(name)
        })
        .collect();
    if indexes.is_empty() {
        return Err(Error::new(ErrorKind::Remote, "no such object").file(url.to_string()));
    }
    // Index files cached from an earlier listing that the bucket no longer has.
    if let Ok(entries) = std::fs::read_dir(&local_dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if is_index(&name) && !indexes.iter().any(|o| o.key[prefix.len()..] == name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    for o in &indexes {
        let bytes = store.get_bytes(o)?;
        let path = local_dir.join(&o.key[prefix.len()..]);
        crate::source::write_file(&path, |f| std::io::Write::write_all(f, &bytes))?;
    }
    let (index, _) = Index::find(&local_dir)?
        .ok_or_else(|| Error::new(ErrorKind::Remote, "no index found").file(url.to_string()))?;
    let iurl = store.url(&format!("{prefix}{}", Index::FILE));
    let format = format_named(&index.format).ok_or_else(|| {
        Error::format(
            &iurl,
            if index.format == "hdf5" {
                crate::source::WITHOUT_HDF5.to_string()
            } else {
                format!("format {:?} is not one this build reads", index.format)
            },
        )
    })?;
    if index.shards.is_empty() {
        return Err(Error::format(&iurl, "lists no shards"));
    }
    let by_key: HashMap<&str, &Object> = listing.iter().map(|o| (o.key.as_str(), o)).collect();
    let object = |name: &str| -> Result<Object> {
        let key = format!("{prefix}{name}");
        by_key
            .get(key.as_str())
            .map(|o| (*o).clone())
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::Remote,
                    format!(
                        "missing: {} lists it, the bucket does not hold it",
                        Index::FILE
                    ),
                )
                .file(store.url(&key))
            })
    };
    let mut shards = Vec::with_capacity(index.shards.len());
    for (k, name) in index.shards.iter().enumerate() {
        let mut objects = vec![object(name)?];
        if let Some(l) = index.labels.get(k) {
            objects.push(object(l)?);
        }
        shards.push(Shard {
            url: store.url(&objects[0].key),
            objects,
        });
    }
    let counts = (!index.shard_samples.is_empty()).then(|| index.shard_samples.clone());
    Ok(Found {
        format,
        shards,
        counts,
        index: Some((index, iurl)),
    })
}
