//! The WebDataset layout: tar members grouped into samples by key (the path up to the first
//! `.` of the file name), one image member per sample, the label in a `.cls` member.

use super::ustar::Member;

/// Image member extensions (lowercase), as WebDataset names them.
const IMAGE_EXTS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One sample of a shard: where its image bytes are in the map, and its label.
#[derive(Clone, Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) start: usize,
    pub(super) len: usize,
    pub(super) label: Option<i64>,
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
}

impl Pending {
    fn finish(self, entries: &mut Vec<Entry>) -> Result<(), String> {
        let (start, len) = self.image.ok_or_else(|| {
            format!(
                "sample '{}' has no image member (.jpg, .jpeg or .png)",
                self.key
            )
        })?;
        entries.push(Entry {
            key: self.key,
            start,
            len,
            label: self.label,
        });
        Ok(())
    }
}

/// Groups consecutive members with one key into samples, as WebDataset does.
pub(super) fn group(members: &[Member], map: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut cur: Option<Pending> = None;
    for m in members {
        let Some((key, ext)) = split_key(&m.name) else {
            continue;
        };
        let ext = ext.to_ascii_lowercase();
        let is_image = IMAGE_EXTS.contains(&ext.as_str());
        if !is_image && ext != "cls" {
            continue;
        }
        let c = match cur.take() {
            Some(c) if c.key == key => cur.insert(c),
            other => {
                if let Some(done) = other {
                    done.finish(&mut entries)?;
                }
                cur.insert(Pending {
                    key: key.to_string(),
                    image: None,
                    label: None,
                })
            }
        };
        if is_image {
            if c.image.is_some() {
                return Err(format!("sample '{key}' has two image members"));
            }
            c.image = Some((m.start, m.len));
        } else {
            let label = parse_label(&map[m.start..m.start + m.len])
                .ok_or_else(|| format!("'{}' is not an integer label", m.name))?;
            c.label = Some(label);
        }
    }
    if let Some(done) = cur {
        done.finish(&mut entries)?;
    }
    Ok(entries)
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
