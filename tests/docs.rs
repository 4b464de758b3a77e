//! The README and the guide under `docs/`: every relative link reaches a file that exists, and
//! every anchor (`file.md#section`, `#section`) is a heading of that file under GitHub's slug
//! rules; the guide's table of contents reaches every chapter; every chapter with a Rust block
//! is compiled as a doc test (`src/lib.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every `docs/*.md`.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut chapters: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

/// The lines of a Markdown text outside fenced code blocks, with their 1-based numbers.
fn prose_lines(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut fence: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        let marker = if t.starts_with("```") {
            Some("```")
        } else if t.starts_with("~~~") {
            Some("~~~")
        } else {
            None
        };
        match (fence, marker) {
            (None, Some(m)) => fence = Some(m),
            (Some(f), Some(m)) if f == m => fence = None,
            (None, None) => out.push((i + 1, line)),
            _ => {}
        }
    }
    out
}

/// A line with its inline code spans removed (links inside them are not links).
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut parts = line.split('`');
    if let Some(first) = parts.next() {
        out.push_str(first);
    }
    for (k, part) in parts.enumerate() {
        // The pieces after the first alternate: inside a span (k even), outside (k odd).
        if k % 2 == 1 {
            out.push_str(part);
        } else {
            out.push(' ');
        }
    }
    out
}

/// The text a heading renders to: code spans keep their text, links their text, emphasis
/// markers go.
fn heading_text(raw: &str) -> String {
    let mut s = raw.trim().trim_end_matches('#').trim().replace('`', "");
    // [text](target) -> text
    while let Some(open) = s.find("](") {
        let Some(start) = s[..open].rfind('[') else {
            break;
        };
        let Some(close) = s[open..].find(')') else {
            break;
        };
        let text = s[start + 1..open].to_string();
        s.replace_range(start..open + close + 1, &text);
    }
    s.replace("**", "").replace('*', "")
}

/// GitHub's anchor for a heading's text (github-slugger): lowercase; letters, digits, `-`, `_`
/// and spaces kept, every other character dropped; each space becomes `-`.
fn slug(text: &str) -> String {
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of a Markdown text: its headings' slugs (a repeated slug gets `-1`, `-2`, ...
/// as on GitHub) and explicit `<a id="...">` / `<a name="...">` targets.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(text) {
        let t = line.trim_start();
        let hashes = t.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && t[hashes..].starts_with(' ') {
            let base = slug(&heading_text(&t[hashes..]));
            let n = seen.entry(base.clone()).or_insert(0);
            out.insert(if *n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            });
            *n += 1;
        }
        for key in ["<a id=\"", "<a name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(key) {
                let after = &rest[at + key.len()..];
                if let Some(end) = after.find('"') {
                    out.insert(after[..end].to_string());
                }
                rest = after;
            }
        }
    }
    out
}

/// The link targets of a Markdown text with their line numbers: inline links and images
/// `[..](target)`, reference definitions `[ref]: target`, and HTML `src="..."`/`href="..."`.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in prose_lines(text) {
        let line = without_code_spans(line);
        let mut rest = line.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let end = after.find(')').unwrap_or(after.len());
            let target = after[..end].split_whitespace().next().unwrap_or("");
            out.push((n, target.trim_matches(['<', '>']).to_string()));
            rest = &after[end..];
        }
        let t = line.trim_start();
        if t.starts_with('[')
            && let Some(close) = t.find("]:")
        {
            let target = t[close + 2..].split_whitespace().next().unwrap_or("");
            out.push((n, target.to_string()));
        }
        for key in ["src=\"", "href=\""] {
            let mut rest = line.as_str();
            while let Some(at) = rest.find(key) {
                let after = &rest[at + key.len()..];
                let end = after.find('"').unwrap_or(after.len());
                out.push((n, after[..end].to_string()));
                rest = &after[end..];
            }
        }
    }
    out
}

/// What is wrong with each relative link of `doc` (empty when every link resolves).
fn dead_links(doc: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(doc).unwrap();
    let dir = doc.parent().unwrap();
    let name = doc
        .strip_prefix(root())
        .unwrap_or(doc)
        .display()
        .to_string();
    let mut dead = Vec::new();
    for (line, target) in links(&text) {
        if target.is_empty()
            || target.contains("://")
            || target.starts_with("mailto:")
            || target.starts_with('/')
        {
            if target.is_empty() || target.starts_with('/') {
                dead.push(format!("{name}:{line}: `{target}`: not a relative link"));
            }
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((p, a)) => (p, Some(a)),
            None => (target.as_str(), None),
        };
        let file = if path.is_empty() {
            doc.to_path_buf()
        } else {
            dir.join(path)
        };
        if !file.exists() {
            dead.push(format!("{name}:{line}: `{target}`: no such file"));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if file.extension().is_some_and(|e| e == "md") {
            let target_text = std::fs::read_to_string(&file).unwrap();
            if !anchors(&target_text).contains(anchor) {
                dead.push(format!("{name}:{line}: `{target}`: no such heading"));
            }
        } else if !(anchor.starts_with('L') && anchor[1..].chars().all(|c| c.is_ascii_digit())) {
            dead.push(format!(
                "{name}:{line}: `{target}`: an anchor into a non-Markdown file"
            ));
        }
    }
    dead
}

#[test]
fn slugs_follow_githubs_rules() {
    let slug_of = |h: &str| slug(&heading_text(h));
    assert_eq!(slug_of("Set up and run"), "set-up-and-run");
    assert_eq!(slug_of("`stoker bench`"), "stoker-bench");
    assert_eq!(
        slug_of("Planning a run: `stoker plan`"),
        "planning-a-run-stoker-plan"
    );
    assert_eq!(
        slug_of("GPU: what is not there yet, and how it will be fenced"),
        "gpu-what-is-not-there-yet-and-how-it-will-be-fenced"
    );
    assert_eq!(
        slug_of("Coming from `DataLoader`, `DistributedSampler` and `ImageDataGenerator`"),
        "coming-from-dataloader-distributedsampler-and-imagedatagenerator"
    );
    assert_eq!(
        slug_of("Processes: `os.fork()` and `torch.utils.data` workers"),
        "processes-osfork-and-torchutilsdata-workers"
    );
    assert_eq!(
        slug_of("1920×1080 → 256×144, **fast**"),
        "19201080--256144-fast"
    );
    assert_eq!(slug_of("See [the guide](docs/README.md)"), "see-the-guide");
    assert_eq!(slug_of("`chunks=(1, H, W, C)` ÷ NPY"), "chunks1-h-w-c--npy");
    assert_eq!(
        slug_of("A/B record of 2026-12-07"),
        "ab-record-of-2026-12-07"
    );
}

#[test]
fn repeated_headings_and_html_anchors() {
    let text =
        "# Figures\n\n```sh\n# not a heading\n```\n## Figures\n### Figures\n<a id=\"x-y\"></a>\n";
    let a = anchors(text);
    let want: BTreeSet<String> = ["figures", "figures-1", "figures-2", "x-y"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(a, want);
}

#[test]
fn links_are_found_outside_code_only() {
    let text = "see [a](a.md#b) and ![pic](img/x.svg), `[not](code.md)`\n\
                ```text\n[nor](fenced.md)\n```\n[ref]: refs.md\n<img src=\"img/y.png\">\n";
    let got: Vec<String> = links(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(got, ["a.md#b", "img/x.svg", "refs.md", "img/y.png"]);
}

#[test]
fn a_dead_link_or_anchor_is_reported() {
    let dir = std::env::temp_dir().join(format!("stoker-docs-links-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("b.md"), "# Real heading\n").unwrap();
    let a = dir.join("a.md");
    std::fs::write(
        &a,
        "[ok](b.md#real-heading) [gone](c.md) [bad](b.md#no-heading) [self](#top)\n# Top\n",
    )
    .unwrap();
    let dead = dead_links(&a);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(dead.len(), 2, "{dead:#?}");
    assert!(dead[0].contains("`c.md`: no such file"), "{dead:#?}");
    assert!(
        dead[1].contains("`b.md#no-heading`: no such heading"),
        "{dead:#?}"
    );
}

#[test]
fn no_dead_link_in_the_readme_or_the_guide() {
    let docs = documents();
    assert!(docs.len() > 5, "{docs:?}");
    let dead: Vec<String> = docs.iter().flat_map(|d| dead_links(d)).collect();
    assert!(dead.is_empty(), "dead links:\n{}", dead.join("\n"));
}

#[test]
fn the_table_of_contents_reaches_every_chapter() {
    let toc = std::fs::read_to_string(root().join("docs/README.md")).unwrap();
    let linked: BTreeSet<String> = links(&toc)
        .into_iter()
        .map(|(_, t)| t.split('#').next().unwrap().to_string())
        .collect();
    let missing: Vec<String> = documents()
        .iter()
        .filter_map(|d| d.strip_prefix(root().join("docs")).ok())
        .map(|d| d.display().to_string())
        .filter(|d| d != "README.md" && !linked.contains(d))
        .collect();
    assert!(missing.is_empty(), "not in docs/README.md: {missing:?}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        links(&readme).iter().any(|(_, t)| t == "docs/README.md"),
        "the README does not link the guide's table of contents"
    );
}

#[test]
fn every_rust_block_is_compiled_as_a_doc_test() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let ignored: Vec<String> = documents()
        .iter()
        .flat_map(|d| {
            let name = d.strip_prefix(root()).unwrap().display().to_string();
            std::fs::read_to_string(d)
                .unwrap()
                .lines()
                .enumerate()
                .filter(|(_, l)| l.trim_start().starts_with("```rust") && l.contains("ignore"))
                .map(|(i, _)| format!("{name}:{}", i + 1))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(
        ignored.is_empty(),
        "`rust,ignore` blocks are never compiled: {ignored:?}"
    );
    let missing: Vec<String> = documents()
        .iter()
        .filter(|d| {
            std::fs::read_to_string(d)
                .unwrap()
                .lines()
                .any(|l| l.trim_start().starts_with("```rust"))
        })
        .map(|d| d.strip_prefix(root()).unwrap().display().to_string())
        .filter(|d| !lib.contains(&format!("include_str!(\"../{d}\")")))
        .collect();
    assert!(
        missing.is_empty(),
        "Rust blocks not compiled as doc tests (add a #[cfg(doctest)] module in src/lib.rs): {missing:?}"
    );
}
