//! The git publisher against real bare repositories on disk.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Barrier};

use btrfsqa_model::{RunId, Verdict};
use btrfsqa_publish::{GitPublisher, GitPublisherSettings, Publisher};

use crate::{git, report, require_git, store_with};

const RUN_A: &str = "20261124-101500-aaaa";
const RUN_B: &str = "20261124-111500-bbbb";

fn publisher(repo: &Path, cache: &Path) -> GitPublisher {
    GitPublisher::new(GitPublisherSettings::new(repo.display().to_string(), cache))
}

fn commits(repo: &Path) -> Vec<String> {
    git(repo, &["log", "--format=%s", "gh-pages"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn site_files(repo: &Path) -> Vec<String> {
    git(repo, &["ls-tree", "-r", "--name-only", "gh-pages"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn publishing_to_a_missing_path_creates_a_bare_repository() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("pages/site.git");
    let run = report(
        RUN_A,
        "2026-11-24T10:15:00Z",
        &[
            ("a", Verdict::Pass),
            ("b", Verdict::Pass),
            ("c", Verdict::Fail),
        ],
    );
    let store = store_with(&tmp.path().join("results"), std::slice::from_ref(&run));
    let publisher = publisher(&repo, &tmp.path().join("cache"));
    assert_eq!(publisher.id(), "git");

    let published = publisher.publish(&store, &run.run_id).await.unwrap();

    assert_eq!(published.location, repo.display().to_string());
    assert_eq!(
        git(&repo, &["rev-parse", "--is-bare-repository"]).trim(),
        "true"
    );
    assert_eq!(
        git(&repo, &["symbolic-ref", "HEAD"]).trim(),
        "refs/heads/gh-pages"
    );
    let log = git(&repo, &["log", "--oneline"]);
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(
        log.contains(&format!("btrfsqa: run {RUN_A}, 2 passed, 1 failed")),
        "{log}"
    );
    assert_eq!(
        Some(git(&repo, &["rev-parse", "gh-pages"]).trim().to_owned()),
        published.commit
    );
    let author = git(&repo, &["log", "-1", "--format=%an <%ae>|%cn <%ce>"]);
    assert_eq!(
        author.trim(),
        "btrfsqa <btrfsqa@localhost>|btrfsqa <btrfsqa@localhost>"
    );

    let index = git(&repo, &["show", "gh-pages:index.html"]);
    assert!(index.contains(RUN_A), "{index}");
    let files = site_files(&repo);
    for expected in [
        "index.html".to_owned(),
        "style.css".to_owned(),
        ".nojekyll".to_owned(),
        format!("runs/{RUN_A}/index.html"),
        "report.schema.json".to_owned(),
        format!("runs/{RUN_A}/report.json.gz"),
        format!("runs/{RUN_A}/junit.xml.gz"),
        format!("runs/{RUN_A}/kcidb.json.gz"),
    ] {
        assert!(
            files.contains(&expected),
            "{expected} missing from {files:?}"
        );
    }
    assert!(
        !files.iter().any(|f| f.contains(".btrfsqa-site")),
        "the manifest is not published"
    );
    let gz = std::process::Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["show", &format!("gh-pages:runs/{RUN_A}/junit.xml.gz")])
        .output()
        .unwrap()
        .stdout;
    let mut junit = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(gz.as_slice()), &mut junit)
        .unwrap();
    roxmltree::Document::parse(&junit).unwrap();

    // The repository location never lands in the mirror's config.
    let mirror_config = fs::read_to_string(tmp.path().join("cache/mirror.git/config")).unwrap();
    assert!(!mirror_config.contains("site.git"), "{mirror_config}");
}

#[test]
fn a_second_run_adds_a_commit_and_keeps_the_first() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    let first = report(RUN_A, "2026-11-24T10:15:00Z", &[("a", Verdict::Pass)]);
    let store = store_with(&tmp.path().join("results"), std::slice::from_ref(&first));
    let publisher = publisher(&repo, &tmp.path().join("cache"));
    publisher.publish_blocking(&store, &first.run_id).unwrap();

    let second = report(
        RUN_B,
        "2026-11-24T11:15:00Z",
        &[("a", Verdict::Pass), ("b", Verdict::Hung)],
    );
    store.write_report(&second).unwrap();
    publisher.publish_blocking(&store, &second.run_id).unwrap();

    assert_eq!(
        commits(&repo),
        [
            format!("btrfsqa: run {RUN_B}, 1 passed, 0 failed, 1 other problems"),
            format!("btrfsqa: run {RUN_A}, 1 passed, 0 failed"),
        ]
    );
    let index = git(&repo, &["show", "gh-pages:index.html"]);
    // The table (after the pass-rate chart, which goes oldest first).
    let table = &index[index.find("<table").unwrap()..];
    assert!(
        table.find(RUN_B).unwrap() < table.find(RUN_A).unwrap(),
        "both, newest first"
    );
    // The first run's pages were reused as they were.
    let run_a = format!("runs/{RUN_A}");
    assert_eq!(
        git(&repo, &["rev-parse", &format!("gh-pages:{run_a}")]),
        git(&repo, &["rev-parse", &format!("gh-pages~1:{run_a}")])
    );

    // Publishing again with nothing new makes no commit.
    let again = publisher.publish_blocking(&store, &second.run_id).unwrap();
    assert_eq!(commits(&repo).len(), 2);
    assert_eq!(
        again.commit,
        Some(git(&repo, &["rev-parse", "gh-pages"]).trim().to_owned())
    );
}

#[test]
fn concurrent_publishers_both_land() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    // Neither publisher finds the repository: both race to create it too.
    let repo = tmp.path().join("shared/site.git");
    let rounds = 3;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let (tmp, repo, barrier) = (tmp.path().to_owned(), repo.clone(), barrier.clone());
            std::thread::spawn(move || {
                let store = store_with(&tmp.join(format!("results-{who}")), &[]);
                let mut settings = GitPublisherSettings::new(
                    repo.display().to_string(),
                    tmp.join(format!("cache-{who}")),
                );
                settings.push_attempts = 10;
                let publisher = GitPublisher::new(settings);
                let mut failures = Vec::new();
                for round in 0..rounds {
                    let id = format!("2026112{round}-000000-{who}{who}{who}{who}");
                    let run = report(
                        &id,
                        &format!("2026-11-2{round}T00:00:00Z"),
                        &[("t", Verdict::Pass)],
                    );
                    store.write_report(&run).unwrap();
                    // Every round starts both publishes together; a failure
                    // is recorded, not raised, so the other thread never
                    // waits for a peer that is gone.
                    barrier.wait();
                    if let Err(err) = publisher.publish_blocking(&store, &run.run_id) {
                        failures.push(format!("{who}, round {round}: {err:?}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");

    assert_eq!(commits(&repo).len(), 2 * rounds, "{:?}", commits(&repo));
    let index = git(&repo, &["show", "gh-pages:index.html"]);
    let files = site_files(&repo);
    for round in 0..rounds {
        for who in ["a", "b"] {
            let id = format!("2026112{round}-000000-{who}{who}{who}{who}");
            assert!(index.contains(&id), "{id} missing from the index");
            assert!(
                files.contains(&format!("runs/{id}/index.html")),
                "{id} missing from the tree"
            );
        }
    }
}

/// A push rejected because someone else published meanwhile is retried on
/// the new tip. The race is made deterministic with a pre-receive hook that,
/// on the first push only, moves the branch to another publisher's commit
/// and declines.
#[test]
fn a_rejected_push_is_retried_on_the_new_tip() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    let first = report(RUN_A, "2026-11-24T10:15:00Z", &[("a", Verdict::Pass)]);
    let store = store_with(&tmp.path().join("results"), std::slice::from_ref(&first));
    publisher(&repo, &tmp.path().join("cache"))
        .publish_blocking(&store, &first.run_id)
        .unwrap();

    // Another controller publishes run X into a copy, on top of the same tip.
    let copy = tmp.path().join("copy.git");
    git(
        tmp.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            &repo.display().to_string(),
            &copy.display().to_string(),
        ],
    );
    let other = report(
        "20261124-103000-xxxx",
        "2026-11-24T10:30:00Z",
        &[("x", Verdict::Fail)],
    );
    let other_store = store_with(&tmp.path().join("results-x"), std::slice::from_ref(&other));
    publisher(&copy, &tmp.path().join("cache-x"))
        .publish_blocking(&other_store, &other.run_id)
        .unwrap();
    git(
        &repo,
        &[
            "fetch",
            "--quiet",
            &copy.display().to_string(),
            "gh-pages:refs/pending/other",
        ],
    );

    let hook = repo.join("hooks/pre-receive");
    fs::create_dir_all(hook.parent().unwrap()).unwrap();
    fs::write(
        &hook,
        "#!/bin/sh\n\
         [ -e race-done ] && exit 0\n\
         touch race-done\n\
         unset GIT_QUARANTINE_PATH\n\
         git update-ref refs/heads/gh-pages refs/pending/other || exit 2\n\
         echo 'simulated concurrent publish' >&2\n\
         exit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();

    let second = report(RUN_B, "2026-11-24T11:15:00Z", &[("b", Verdict::Pass)]);
    store.write_report(&second).unwrap();
    publisher(&repo, &tmp.path().join("cache"))
        .publish_blocking(&store, &second.run_id)
        .unwrap();

    assert!(repo.join("race-done").exists(), "the hook ran");
    assert_eq!(
        commits(&repo),
        [
            format!("btrfsqa: run {RUN_B}, 1 passed, 0 failed"),
            "btrfsqa: run 20261124-103000-xxxx, 0 passed, 1 failed".to_owned(),
            format!("btrfsqa: run {RUN_A}, 1 passed, 0 failed"),
        ]
    );
    let index = git(&repo, &["show", "gh-pages:index.html"]);
    for id in [RUN_A, RUN_B, "20261124-103000-xxxx"] {
        assert!(index.contains(id), "{id} missing from the index");
    }
    let files = site_files(&repo);
    assert!(
        files.contains(&"runs/20261124-103000-xxxx/index.html".to_owned()),
        "the other run's page is kept"
    );
}

#[test]
fn a_push_that_fails_for_another_reason_is_reported() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    git(
        tmp.path(),
        &["init", "--quiet", "--bare", &repo.display().to_string()],
    );
    let hook = repo.join("hooks/pre-receive");
    fs::write(
        &hook,
        "#!/bin/sh\necho 'publishing is closed' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&hook, fs::Permissions::from_mode(0o755)).unwrap();
    let run = report(RUN_A, "2026-11-24T10:15:00Z", &[("a", Verdict::Pass)]);
    let store = store_with(&tmp.path().join("results"), std::slice::from_ref(&run));

    let err = publisher(&repo, &tmp.path().join("cache"))
        .publish_blocking(&store, &run.run_id)
        .unwrap_err();

    let text = err.to_string();
    assert!(
        text.contains("git push") && text.contains("publishing is closed"),
        "{text}"
    );
    assert!(
        git(&repo, &["for-each-ref"]).is_empty(),
        "nothing was published"
    );
    // The results are untouched and a later publish can still succeed.
    fs::remove_file(&hook).unwrap();
    publisher(&repo, &tmp.path().join("cache"))
        .publish_blocking(&store, &run.run_id)
        .unwrap();
    assert_eq!(commits(&repo).len(), 1);
}

#[test]
fn a_missing_run_is_an_error_and_publishes_nothing() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    let store = store_with(&tmp.path().join("results"), &[]);
    let err = publisher(&repo, &tmp.path().join("cache"))
        .publish_blocking(&store, &RunId::parse("nope").unwrap())
        .unwrap_err();
    assert!(
        matches!(err, btrfsqa_publish::PublishError::Store { .. }),
        "{err}"
    );
    assert!(!repo.exists());
}

#[test]
fn retention_bounds_the_repository_and_keeps_older_runs_as_rows() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    let first = report(RUN_A, "2026-11-24T10:15:00Z", &[("a", Verdict::Fail)]);
    let second = report(RUN_B, "2026-11-24T11:15:00Z", &[("a", Verdict::Pass)]);
    let store = store_with(&tmp.path().join("results"), std::slice::from_ref(&first));
    let mut settings =
        GitPublisherSettings::new(repo.display().to_string(), tmp.path().join("cache"));
    settings.dashboard.keep_runs = Some(1);
    let publisher = GitPublisher::new(settings);
    publisher.publish_blocking(&store, &first.run_id).unwrap();
    store.write_report(&second).unwrap();
    publisher.publish_blocking(&store, &second.run_id).unwrap();

    let files = site_files(&repo);
    let of_a: Vec<&String> = files
        .iter()
        .filter(|f| f.starts_with(&format!("runs/{RUN_A}/")))
        .collect();
    assert_eq!(of_a, [&format!("runs/{RUN_A}/summary.json")], "{files:#?}");
    assert!(files.contains(&format!("runs/{RUN_B}/index.html")));
    assert!(files.contains(&"matrix.html".to_owned()));
    assert!(files.contains(&"tests/raid56-scrub/a.html".to_owned()));
    assert!(files.contains(&"assets/asciinema-player/asciinema-player.min.js".to_owned()));
    let index = git(&repo, &["show", "gh-pages:index.html"]);
    assert!(index.contains(&format!(
        "<code>{RUN_A}</code> <span class=\"muted\">(page not kept)</span>"
    )));
    // The test's history still has both runs; the fix shows in the matrix.
    let history = git(&repo, &["show", "gh-pages:tests/raid56-scrub/a.html"]);
    assert!(history.contains(RUN_A) && history.contains(RUN_B));
    let matrix = git(&repo, &["show", "gh-pages:matrix.html"]);
    assert!(
        matrix.contains("<span class=\"mark fixed\">fixed</span>"),
        "{matrix}"
    );
}

/// Two btrfsqa processes on one host share the results store and its site
/// cache (`RESULTS/.site-cache`): publishers with their own instances but
/// one cache directory, publishing at once, both land, the site repository
/// and the cache stay sound.
#[test]
fn publishers_sharing_one_site_cache_both_land() {
    require_git!();
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("site.git");
    let store = store_with(&tmp.path().join("results"), &[]);
    let cache = tmp.path().join("results/.site-cache");
    let rounds = 4;
    let barrier = Arc::new(Barrier::new(2));
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|who| {
            let (store, repo, cache, barrier) =
                (store.clone(), repo.clone(), cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut settings = GitPublisherSettings::new(repo.display().to_string(), cache);
                settings.push_attempts = 10;
                let publisher = GitPublisher::new(settings);
                let mut failures = Vec::new();
                for round in 0..rounds {
                    let id = format!("2026112{round}-000000-{who}{who}{who}{who}");
                    let run = report(
                        &id,
                        &format!("2026-11-2{round}T00:00:00Z"),
                        &[("t", Verdict::Pass)],
                    );
                    store.write_report(&run).unwrap();
                    barrier.wait();
                    if let Err(err) = publisher.publish_blocking(&store, &run.run_id) {
                        failures.push(format!("{who}, round {round}: {err}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    git(&repo, &["fsck", "--strict"]);
    git(&cache.join("mirror.git"), &["fsck"]);
    let index = git(&repo, &["show", "gh-pages:index.html"]);
    let files = site_files(&repo);
    for round in 0..rounds {
        for who in ["a", "b"] {
            let id = format!("2026112{round}-000000-{who}{who}{who}{who}");
            assert!(index.contains(&id), "{id} missing from the index");
            assert!(
                files.contains(&format!("runs/{id}/index.html")),
                "{id} missing from the tree"
            );
        }
    }
    assert!(
        !files.iter().any(|f| f.contains(".btrfsqa-tmp")),
        "a temporary file was published"
    );
}
