//! A section of `btrfsqa.toml` that a provider or a suite owns
//! (`[providers.ID]`, `[suites.ID]`): its type declares its keys (serde),
//! their defaults (`Default`), their documentation (`///` on each field) and
//! what serde cannot check ([`Section::validate`]). The runner holds every
//! section through its registry and never reads one field by field.

use std::fmt::Debug;
use std::path::{Component, Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config section owned by a provider or a suite.
pub trait Section: Clone + Debug + Default + DeserializeOwned + Send + Sync + 'static {
    /// Problems serde cannot see, as `(key below the section, message)`:
    /// `("hosts[0].test-dev", "`sdb` is not an absolute device path")`.
    fn validate(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Makes the section's relative paths absolute against `base`, the
    /// config file's directory ([`absolute`], [`resolve_repo`] do the work).
    fn resolve_paths(&mut self, base: &Path) {
        let _ = base;
    }
}

/// `path` made absolute against `base`, `~/` expanded to `$HOME`.
pub fn absolute(base: &Path, path: &Path) -> PathBuf {
    let path = expand_home(path);
    if path.is_absolute() {
        path
    } else {
        // Keep `./x` tidy without touching the filesystem (it may not exist yet).
        base.join(path)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .collect()
    }
}

/// Every path in `paths` made [`absolute`] against `base`.
pub fn absolute_all<'a>(base: &Path, paths: impl IntoIterator<Item = &'a mut PathBuf>) {
    for path in paths {
        *path = absolute(base, path);
    }
}

fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_owned(),
    }
}

/// A repository given as a relative path (a local mirror next to the config
/// file) made absolute; URLs and `host:path` stay as they are.
pub fn resolve_repo(base: &Path, repo: &str) -> String {
    if repo.contains("://")
        || (repo.contains(':') && !repo.starts_with('/') && !repo.starts_with('.'))
    {
        repo.to_owned()
    } else {
        absolute(base, Path::new(repo)).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_base_and_urls_stay() {
        let base = Path::new("/etc/btrfsqa");
        assert_eq!(
            absolute(base, Path::new("./cache")),
            PathBuf::from("/etc/btrfsqa/cache")
        );
        assert_eq!(absolute(base, Path::new("/abs")), PathBuf::from("/abs"));
        assert_eq!(resolve_repo(base, "mirror.git"), "/etc/btrfsqa/mirror.git");
        assert_eq!(
            resolve_repo(base, "https://host/x.git"),
            "https://host/x.git"
        );
        assert_eq!(resolve_repo(base, "git@host:x.git"), "git@host:x.git");
    }
}
