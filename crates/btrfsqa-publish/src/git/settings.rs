//! The settings of a [`GitPublisher`](super::GitPublisher): where the
//! site repository is, the branch, the cache, the commit author and how
//! `git` authenticates.

use std::path::PathBuf;

use btrfsqa_model::redact_url;

use crate::dashboard::DashboardSettings;

/// Resolved settings of a [`GitPublisher`](super::GitPublisher).
#[derive(Clone, PartialEq, Eq)]
pub struct GitPublisherSettings {
    /// The repository: a local path (created as a bare repository when it
    /// does not exist), a `file://`, `https://` or `ssh://` URL, or `user@host:path`.
    pub repo: String,
    /// The branch the site lives on (`gh-pages`).
    pub branch: String,
    /// Where the publisher keeps its mirror of the repository and its staging
    /// directory. Publishers sharing it take turns (a lock file in it).
    pub cache_dir: PathBuf,
    /// Author and committer name of the commits.
    pub author_name: String,
    /// Author and committer email of the commits.
    pub author_email: String,
    /// How the site is rendered.
    pub dashboard: DashboardSettings,
    /// How many pushes to try when others keep publishing meanwhile (at least 1).
    pub push_attempts: u32,
    /// For an HTTPS repository: the environment variables a token is read
    /// from, first set wins (`GITHUB_TOKEN`, `GH_TOKEN`). The token reaches
    /// `git` through `GIT_ASKPASS`, never the URL or a command line.
    pub token_env: Vec<String>,
    /// For an SSH repository: a deploy key to push with.
    pub ssh_key: Option<PathBuf>,
}

impl GitPublisherSettings {
    /// Settings for `repo` with the mirror in `cache_dir`: branch `gh-pages`,
    /// author `btrfsqa <btrfsqa@localhost>`, default dashboard, 5 push attempts.
    pub fn new(repo: impl Into<String>, cache_dir: impl Into<PathBuf>) -> Self {
        GitPublisherSettings {
            repo: repo.into(),
            branch: "gh-pages".to_owned(),
            cache_dir: cache_dir.into(),
            author_name: "btrfsqa".to_owned(),
            author_email: "btrfsqa@localhost".to_owned(),
            dashboard: DashboardSettings::default(),
            push_attempts: 5,
            token_env: crate::credentials::TOKEN_ENV_VARS
                .iter()
                .map(|v| (*v).to_owned())
                .collect(),
            ssh_key: None,
        }
    }
}

/// The repository URL may hold a token: Debug shows it redacted.
impl std::fmt::Debug for GitPublisherSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitPublisherSettings")
            .field("repo", &redact_url(&self.repo))
            .field("branch", &self.branch)
            .field("cache_dir", &self.cache_dir)
            .field("author_name", &self.author_name)
            .field("author_email", &self.author_email)
            .field("dashboard", &self.dashboard)
            .field("push_attempts", &self.push_attempts)
            .field("token_env", &self.token_env)
            .field("ssh_key", &self.ssh_key)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_does_not_show_tokens() {
        let settings = GitPublisherSettings::new("https://x:secret@example.com/s.git", "/tmp/c");
        assert!(!format!("{settings:?}").contains("secret"));
    }
}
