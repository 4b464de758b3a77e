//! The WebDataset layout: tar members grouped into samples by key (the path up to the first
//! `.` of the file name), one image member per sample, the label in a `.cls` member.

use super::ustar::Member;

/// Image member extensions (lowercase), as WebDataset names them.
const IMAGE_EXTS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One sample of a shard: where its image bytes are in the map, and its label; or what is
/// wrong with it (an error for this sample alone, which a skip policy may skip).
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) label: Option<i64>,
    /// The extension of the sample's `.cls` member as the archive spells it (`cls`, `CLS`, …),
    /// when it has one (even one that is not an integer): its name is `key.ext`.
    pub(super) cls_ext: Option<[u8; 3]>,
    pub(super) fault: Option<String>,
}

impl Entry {
    /// Whether the sample has a `.cls` member.
    pub(super) fn has_cls(&self) -> bool {
        self.cls_ext.is_some()
    }

    /// The full name of the sample's `.cls` member, when it has one.
    pub(super) fn cls_member(&self) -> Option<String> {
        let ext = self.cls_ext?;
        Some(format!("{}.{}", self.key, String::from_utf8_lossy(&ext)))
    }
}

/// WebDataset's split of a member path: `(key, extension)`, the key up to the first `.` of the
/// file name; `None` when the file name has no `.`.
fn split_key(name: &str) -> Option<(&str, &str)> {
    let base = name.rfind('/').map_or(0, |i| i + 1);
    let dot = name[base..].find('.')? + base;
    (dot > base).then(|| (&name[..dot], &name[dot + 1..]))
}

/// Parses a `.cls` member: ASCII integer, surrounding whitespace allowed.
fn parse_label(data: &[u8]) -> Option<i64> {
    std::str::from_utf8(data).ok()?.trim().parse().ok()
}

/// The sample being gathered while grouping members.
struct Pending {
    key: String,
    image: Option<(usize, usize)>,
    label: Option<i64>,
    cls_ext: Option<[u8; 3]>,
    fault: Option<String>,
}

impl Pending {
    fn finish(self, entries: &mut Vec<Entry>) {
        let (start, len) = self.image.unwrap_or((0, 0));
        let fault = match self.image {
            None => Some(format!(
                "sample '{}' has no image member (.jpg, .jpeg or .png)",
                self.key
            )),
            Some(_) => self.fault,
        };
        entries.push(Entry {
            key: self.key,
            start,
            len,
            label: self.label,
            cls_ext: self.cls_ext,
            fault,
        });
    }
}

/// Groups consecutive members with one key into samples, as WebDataset does. What is wrong
/// with one sample (no image, two images, a `.cls` that is not an integer) is kept as that
/// sample's fault; in a shard where some samples have labels, a sample without one is at
/// fault too.
pub(super) fn group(members: &[Member], map: &[u8]) -> Vec<Entry> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut cur: Option<Pending> = None;
    for m in members {
        let Some((key, written_ext)) = split_key(&m.name) else {
            continue;
        };
        let ext = written_ext.to_ascii_lowercase();
        let is_image = IMAGE_EXTS.contains(&ext.as_str());
        if !is_image && ext != "cls" {
            continue;
        }
        let c = match cur.take() {
            Some(c) if c.key == key => cur.insert(c),
            other => {
                if let Some(done) = other {
                    done.finish(&mut entries);
                }
                cur.insert(Pending {
                    key: key.to_string(),
                    image: None,
                    label: None,
                    cls_ext: None,
                    fault: None,
                })
            }
        };
        if is_image {
            if c.image.is_some() {
                c.fault
                    .get_or_insert(format!("sample '{key}' has two image members"));
            } else {
                c.image = Some((m.start, m.len));
            }
        } else {
            // `cls` in some case: three ASCII bytes.
            c.cls_ext = <[u8; 3]>::try_from(written_ext.as_bytes()).ok();
            c.label = parse_label(&map[m.start..m.start + m.len]);
            if c.label.is_none() {
                c.fault
                    .get_or_insert(format!("member '{}' is not an integer label", m.name));
            }
        }
    }
    if let Some(done) = cur {
        done.finish(&mut entries);
    }
    if entries.iter().any(Entry::has_cls) {
        for e in entries
            .iter_mut()
            .filter(|e| !e.has_cls() && e.fault.is_none())
        {
            e.fault = Some(format!(
                "sample '{}' lacks a .cls label, unlike others in the shard",
                e.key
            ));
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_key_like_webdataset() {
        assert_eq!(split_key("a/b/c.d.jpg"), Some(("a/b/c", "d.jpg")));
        assert_eq!(split_key("x.y/z.png"), Some(("x.y/z", "png")));
        assert_eq!(split_key("noext"), None);
        assert_eq!(split_key("dir/.hidden"), None);
    }
}
