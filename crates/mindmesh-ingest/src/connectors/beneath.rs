//! A directory tree read strictly beneath one folder, `openat`-style: every step from
//! the root down is opened relative to the directory above it with `O_NOFOLLOW`, so a
//! symbolic link anywhere on the way — there when the folder was connected, or put there
//! between a listing and a read — is refused by the kernel instead of followed, and no
//! path can leave the folder, whatever it spells (`link/`, `link/.`, `a/../..`).
//!
//! A file is read only if it is still the file that was listed (same device and inode),
//! and only if it is a regular file: a FIFO or device swapped in is neither waited on
//! (`O_NONBLOCK`) nor read.

use std::ffi::CStr;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

/// Deepest folder nesting listed below the folder.
const MAX_DEPTH: usize = 64;

/// Why a folder or a file could not be opened beneath the root.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Nothing is there.
    Missing,
    /// Something is there, but it is a link, or not of the kind expected (a folder where
    /// a file was wanted, a device, a FIFO), or not the file that was listed.
    NotPlain,
    /// Larger than the limit given.
    TooLarge,
    /// The operating system failed otherwise (permissions, I/O); its error kind.
    Io(std::io::ErrorKind),
}

impl From<Errno> for Refused {
    fn from(e: Errno) -> Self {
        match e {
            Errno::NOENT => Refused::Missing,
            // O_NOFOLLOW on a link, O_DIRECTORY on a file.
            Errno::LOOP | Errno::NOTDIR => Refused::NotPlain,
            other => Refused::Io(std::io::Error::from(other).kind()),
        }
    }
}

/// Which file a listing saw, so that a read can tell it is still the same one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
}

/// One regular file found below the folder.
#[derive(Clone, Debug)]
pub struct Listed {
    /// Its path relative to the folder, `/`-separated.
    pub path: String,
    /// Which file it is.
    pub id: FileId,
    /// Its size in bytes.
    pub len: u64,
    /// Its modification time, nanoseconds since the epoch.
    pub modified_ns: i64,
}

/// A folder opened beneath a root without following any link below the root.
#[derive(Debug)]
pub struct Beneath {
    folder: OwnedFd,
}

fn open_dir_at(dir: &OwnedFd, name: &str) -> Result<OwnedFd, Refused> {
    Ok(rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn is(stat: &Stat, kind: FileType) -> bool {
    FileType::from_raw_mode(stat.st_mode) == kind
}

fn file_id(stat: &Stat) -> FileId {
    FileId {
        dev: stat.st_dev,
        ino: stat.st_ino,
    }
}

impl Beneath {
    /// Opens `root` (an operator's setting: followed as it is), then each of `steps`
    /// below it as a real folder, never through a link.
    pub fn open(root: &Path, steps: &[&str]) -> Result<Self, Refused> {
        let mut dir = rustix::fs::open(
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for step in steps {
            dir = open_dir_at(&dir, step)?;
        }
        Ok(Beneath { folder: dir })
    }

    /// The folder at `steps` below this one, without following links.
    fn dir(&self, steps: &[&str]) -> Result<OwnedFd, Refused> {
        let mut dir = rustix::fs::openat(
            &self.folder,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        for step in steps {
            dir = open_dir_at(&dir, step)?;
        }
        Ok(dir)
    }

    /// Every regular file below the folder, in path order. Links, hidden entries, names
    /// that are not UTF-8, anything that is neither a file nor a folder, and entries for
    /// which `skip(path)` holds are left out.
    pub fn files(&self, skip: impl Fn(&str) -> bool) -> Result<Vec<Listed>, Refused> {
        let mut out = Vec::new();
        // Folders still to read, as their steps below the folder: each is opened afresh
        // from the folder, so only one chain of descriptors is open at a time.
        let mut pending: Vec<Vec<String>> = vec![Vec::new()];
        while let Some(steps) = pending.pop() {
            let borrowed: Vec<&str> = steps.iter().map(String::as_str).collect();
            let dir = self.dir(&borrowed)?;
            let prefix: String = steps.iter().map(|s| format!("{s}/")).collect();
            for entry in rustix::fs::Dir::read_from(&dir)? {
                let entry = entry?;
                let Some(name) = utf8(entry.file_name()) else {
                    continue; // no id it could have
                };
                if name.starts_with('.') {
                    continue; // hidden, and `.` and `..`
                }
                let path = format!("{prefix}{name}");
                if skip(&path) {
                    continue;
                }
                let stat = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => stat,
                    Err(Errno::NOENT) => continue, // gone since it was listed
                    Err(e) => return Err(e.into()),
                };
                if is(&stat, FileType::Directory) && steps.len() < MAX_DEPTH {
                    let mut below = steps.clone();
                    below.push(name.to_owned());
                    pending.push(below);
                } else if is(&stat, FileType::RegularFile) {
                    out.push(Listed {
                        path,
                        id: file_id(&stat),
                        len: u64::try_from(stat.st_size).unwrap_or(0),
                        modified_ns: stat
                            .st_mtime
                            .saturating_mul(1_000_000_000)
                            .saturating_add(i64::try_from(stat.st_mtime_nsec).unwrap_or(0)),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// The bytes of the regular file at `path` (relative, `/`-separated), at most
    /// `limit` of them. With `expected`, only if it is still that file.
    pub fn read(
        &self,
        path: &str,
        expected: Option<FileId>,
        limit: u64,
    ) -> Result<Vec<u8>, Refused> {
        let steps: Vec<&str> = path.split('/').collect();
        let Some((name, folders)) = steps.split_last() else {
            return Err(Refused::Missing);
        };
        if steps
            .iter()
            .any(|s| s.is_empty() || *s == "." || *s == "..")
        {
            return Err(Refused::NotPlain);
        }
        let dir = self.dir(folders)?;
        let fd = rustix::fs::openat(
            &dir,
            *name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        if !is(&stat, FileType::RegularFile) || expected.is_some_and(|id| id != file_id(&stat)) {
            return Err(Refused::NotPlain);
        }
        if u64::try_from(stat.st_size).unwrap_or(u64::MAX) > limit {
            return Err(Refused::TooLarge);
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|e| Refused::Io(e.kind()))?;
        if bytes.len() as u64 > limit {
            return Err(Refused::TooLarge); // it grew while being read
        }
        Ok(bytes)
    }
}

fn utf8(name: &CStr) -> Option<&str> {
    name.to_str().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("t/acme");
        std::fs::create_dir_all(folder.join("docs")).unwrap();
        std::fs::write(folder.join("docs/a.md"), "a").unwrap();
        std::fs::write(folder.join("b.md"), "bb").unwrap();
        std::fs::write(root.path().join("secret"), "outside").unwrap();
        (root, folder)
    }

    #[test]
    fn lists_and_reads_plain_files() {
        let (root, _) = tree();
        let folder = Beneath::open(root.path(), &["t", "acme"]).unwrap();
        let files = folder.files(|_| false).unwrap();
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b.md", "docs/a.md"]);
        assert_eq!(
            folder.read("docs/a.md", Some(files[1].id), 10).unwrap(),
            b"a"
        );
        assert_eq!(folder.read("b.md", None, 1), Err(Refused::TooLarge));
        assert_eq!(folder.read("nope.md", None, 10), Err(Refused::Missing));
    }

    #[test]
    fn links_are_refused_on_every_step_and_never_listed() {
        let (root, folder) = tree();
        symlink(root.path(), folder.join("up")).unwrap();
        symlink(root.path().join("secret"), folder.join("secret.md")).unwrap();
        symlink(root.path(), root.path().join("t/link")).unwrap();
        for steps in [
            &["t", "link"][..],
            &["t", "link", "t"],
            &["t", "acme", "up"],
        ] {
            assert_eq!(
                Beneath::open(root.path(), steps).unwrap_err(),
                Refused::NotPlain,
                "{steps:?}"
            );
        }
        let opened = Beneath::open(root.path(), &["t", "acme"]).unwrap();
        let paths: Vec<String> = opened
            .files(|_| false)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(paths, ["b.md", "docs/a.md"], "links are not listed");
        for path in [
            "secret.md",
            "up/secret",
            "up/t/acme/b.md",
            "docs/../b.md",
            "./b.md",
        ] {
            assert!(opened.read(path, None, 100).is_err(), "{path}");
        }
    }

    #[test]
    fn a_file_swapped_after_the_listing_is_not_read() {
        let (root, folder) = tree();
        let opened = Beneath::open(root.path(), &["t", "acme"]).unwrap();
        let listed = opened.files(|_| false).unwrap();
        // The folder is replaced by a link to elsewhere with a file of the same name.
        std::fs::rename(folder.join("docs"), folder.join("old")).unwrap();
        std::fs::create_dir(root.path().join("elsewhere")).unwrap();
        std::fs::write(root.path().join("elsewhere/a.md"), "outside").unwrap();
        symlink(root.path().join("elsewhere"), folder.join("docs")).unwrap();
        assert_eq!(
            opened.read("docs/a.md", Some(listed[1].id), 100),
            Err(Refused::NotPlain)
        );
        // The same name, a different file: not the one listed.
        std::fs::write(folder.join("b2.md"), "new").unwrap();
        std::fs::rename(folder.join("b2.md"), folder.join("b.md")).unwrap();
        assert_eq!(
            opened.read("b.md", Some(listed[0].id), 100),
            Err(Refused::NotPlain)
        );
    }
}
