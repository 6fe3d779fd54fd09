//! Listing a collection: the image files under an input folder, with their paths relative
//! to it. Names and directory-entry types only: no image is opened and no regular file is
//! stat'ed (symbolic links are followed with one stat each), so 100,000 files list in well
//! under a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The extensions read as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "tif", "tiff", "webp"];

pub fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// An image found under a root.
#[derive(Debug, Clone)]
pub struct Found {
    pub path: PathBuf,
    /// Relative to the root, `/`-separated: the shard key and the output's place under OUT.
    pub rel: String,
}

/// What a walk found and what it passed over.
#[derive(Debug, Default)]
pub struct Listing {
    pub images: Vec<Found>,
    /// Without `--recursive`: images in subfolders, and how many subfolders hold them.
    pub images_in_skipped_subfolders: usize,
    pub skipped_subfolders_with_images: usize,
    /// Files whose extension is not an image's (hidden files excluded).
    pub non_images: Vec<PathBuf>,
    /// Symlink loops, unreadable folders, broken links: one line each.
    pub problems: Vec<String>,
}

#[cfg(unix)]
type DirId = (u64, u64);

#[cfg(unix)]
fn dir_id(md: &std::fs::Metadata) -> Option<DirId> {
    use std::os::unix::fs::MetadataExt;
    Some((md.dev(), md.ino()))
}

#[cfg(not(unix))]
type DirId = PathBuf;

#[cfg(not(unix))]
fn dir_id(_md: &std::fs::Metadata) -> Option<DirId> {
    None
}

/// Lists the images under `root`: its top level, or every subfolder when `recursive`
/// (subfolders are still walked without it, to count what is skipped). Hidden entries
/// (names starting with `.`, such as `.cyclegan` and temporaries) are ignored, and so is
/// the folder `exclude` (the output folder when it lies inside the input). Images are
/// sorted by relative path.
pub fn walk(root: &Path, recursive: bool, exclude: Option<&Path>) -> Result<Listing, String> {
    let root_md = std::fs::metadata(root).map_err(|e| format!("{}: {e}", root.display()))?;
    let mut listing = Listing::default();
    // Every folder listed so far, by device and inode, with its relative path: a symlink
    // to one of them is a loop (an ancestor) or a second way to the same images.
    let mut seen: HashMap<DirId, String> = HashMap::new();
    #[cfg(unix)]
    if let Some(id) = dir_id(&root_md) {
        seen.insert(id, String::new());
    }
    #[cfg(not(unix))]
    let _ = &root_md;
    let excluded: Option<DirId> = exclude
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| dir_id(&m));
    let mut subfolders_with_images = std::collections::HashSet::new();

    // (folder, its path relative to root, "" for the root)
    let mut stack: Vec<(PathBuf, String)> = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, rel_dir)) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                listing.problems.push(format!(
                    "{}: cannot list this folder ({e}); skipped",
                    dir.display()
                ));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    listing.problems.push(format!(
                        "{}: cannot read an entry ({e}); skipped",
                        dir.display()
                    ));
                    continue;
                }
            };
            let name = entry.file_name();
            let name_str = name.to_string_lossy();
            if name_str.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let rel = if rel_dir.is_empty() {
                name_str.into_owned()
            } else {
                format!("{rel_dir}/{name_str}")
            };
            let Ok(mut ft) = entry.file_type() else {
                listing
                    .problems
                    .push(format!("{}: cannot read its type; skipped", path.display()));
                continue;
            };
            let mut dir_md = None;
            if ft.is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(md) => {
                        ft = md.file_type();
                        dir_md = Some(md);
                    }
                    Err(e) => {
                        let what = if e.raw_os_error() == Some(40) {
                            "symlink loop".to_string() // ELOOP
                        } else {
                            format!("broken symlink ({e})")
                        };
                        listing
                            .problems
                            .push(format!("{}: {what}; skipped", path.display()));
                        continue;
                    }
                }
            }
            if ft.is_dir() {
                let md = match dir_md {
                    Some(m) => Some(m),
                    None => std::fs::metadata(&path).ok(),
                };
                if let Some(id) = md.as_ref().and_then(dir_id) {
                    if excluded.as_ref() == Some(&id) {
                        continue;
                    }
                    if let Some(first) = seen.get(&id) {
                        let is_ancestor = first.is_empty()
                            || rel == *first
                            || rel.starts_with(&format!("{first}/"));
                        listing.problems.push(if is_ancestor {
                            format!(
                                "{}: symlink loop (leads back to {}); skipped",
                                path.display(),
                                if first.is_empty() {
                                    "the input folder"
                                } else {
                                    first
                                }
                            )
                        } else {
                            format!(
                                "{}: the same folder as {first}, already listed; skipped",
                                path.display()
                            )
                        });
                        continue;
                    }
                    seen.insert(id, rel.clone());
                }
                stack.push((path, rel));
            } else if ft.is_file() {
                if !is_image_name(&path) {
                    listing.non_images.push(path);
                } else if recursive || rel_dir.is_empty() {
                    listing.images.push(Found { path, rel });
                } else {
                    listing.images_in_skipped_subfolders += 1;
                    subfolders_with_images.insert(rel_dir.clone());
                }
            }
            // Sockets, fifos, devices: not files a user meant as images; ignored.
        }
    }
    listing.skipped_subfolders_with_images = subfolders_with_images.len();
    listing.images.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
    listing.non_images.sort_unstable();
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("cyclegan-walk-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
        fn touch(&self, rel: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"").unwrap();
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn rels(l: &Listing) -> Vec<&str> {
        l.images.iter().map(|f| f.rel.as_str()).collect()
    }

    #[test]
    fn top_level_counts_what_subfolders_hold() {
        let t = Tmp::new("top");
        for f in [
            "a.png",
            "B.JPG",
            "notes.txt",
            ".hidden.png",
            "s1/c.png",
            "s1/d.tif",
            "s1/deep/e.webp",
            "s2/f.jpeg",
            "s3/readme.md",
        ] {
            t.touch(f);
        }
        let l = walk(&t.0, false, None).unwrap();
        assert_eq!(rels(&l), ["B.JPG", "a.png"]);
        assert_eq!(l.images_in_skipped_subfolders, 4);
        assert_eq!(l.skipped_subfolders_with_images, 3); // s1, s1/deep, s2
        assert_eq!(l.non_images.len(), 2);
        let l = walk(&t.0, true, None).unwrap();
        assert_eq!(
            rels(&l),
            [
                "B.JPG",
                "a.png",
                "s1/c.png",
                "s1/d.tif",
                "s1/deep/e.webp",
                "s2/f.jpeg"
            ]
        );
        assert_eq!(l.images_in_skipped_subfolders, 0);
        assert!(l.problems.is_empty(), "{:?}", l.problems);
    }

    #[cfg(unix)]
    #[test]
    fn loops_duplicates_and_broken_links_are_reported_and_skipped() {
        let t = Tmp::new("links");
        t.touch("a/x.png");
        t.touch("b/y.png");
        std::os::unix::fs::symlink(&t.0, t.0.join("a/up")).unwrap();
        std::os::unix::fs::symlink(t.0.join("b"), t.0.join("a/b-again")).unwrap();
        std::os::unix::fs::symlink(t.0.join("nowhere.png"), t.0.join("gone.png")).unwrap();
        std::os::unix::fs::symlink(t.0.join("self"), t.0.join("self")).unwrap();
        std::os::unix::fs::symlink(t.0.join("b/y.png"), t.0.join("link.png")).unwrap();
        let l = walk(&t.0, true, None).unwrap();
        // a/b-again or b (whichever is met first) is listed once.
        let r = rels(&l);
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(r.contains(&"a/x.png") && r.contains(&"link.png"), "{r:?}");
        let all = l.problems.join("\n");
        assert!(all.contains("up: symlink loop"), "{all}");
        assert!(all.contains("already listed"), "{all}");
        assert!(all.contains("gone.png: broken symlink"), "{all}");
        assert!(all.contains("self: symlink loop"), "{all}");
        assert_eq!(l.problems.len(), 4, "{all}");
    }

    #[test]
    fn the_output_folder_inside_the_input_is_not_walked() {
        let t = Tmp::new("excl");
        t.touch("a.png");
        t.touch("out/a.png");
        let l = walk(&t.0, true, Some(&t.0.join("out"))).unwrap();
        assert_eq!(rels(&l), ["a.png"]);
    }

    #[test]
    fn a_missing_root_is_an_error_naming_it() {
        let e = walk(Path::new("/no/such/folder"), true, None).unwrap_err();
        assert!(e.contains("/no/such/folder"), "{e}");
    }
}
