use super::*;
use crate::{ConfigSource, RunOverrides};

#[test]
fn a_branch_wins_over_a_tag_and_a_tag_is_peeled_to_its_commit() {
    let a = "a".repeat(40);
    let b = "b".repeat(40);
    let c = "c".repeat(40);
    let out = format!(
        "{a}\trefs/heads/for-next\n{b}\trefs/tags/v6.19\n{c}\trefs/tags/v6.19^{{}}\nnot a line\n"
    );
    assert_eq!(head_of(&out, "for-next"), Some(a));
    assert_eq!(head_of(&out, "v6.19"), Some(c));
    assert_eq!(head_of(&out, "missing"), None);
    assert_eq!(head_of("", "x"), None);
}

fn git(dir: &std::path::Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@t"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn settings(dir: &std::path::Path, repo: &std::path::Path) -> Settings {
    let source = ConfigSource {
        name: "watch.toml".into(),
        base_dir: dir.to_owned(),
        text: format!(
            "[run]\nresults-dir = \"results\"\n\
             [watch]\ninterval-secs = 10\nmax-backoff-secs = 35\n\
             [[watch.refs]]\nsource = \"btrfs-progs\"\nurl = \"{}\"\nref = \"main\"\n",
            repo.display()
        ),
    };
    Settings::resolve(&source, RunOverrides::default()).unwrap()
}

#[tokio::test]
async fn heads_come_from_the_repository_and_one_watcher_holds_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["commit", "-q", "--allow-empty", "-m", "one"]);
    let first = git(&repo, &["rev-parse", "HEAD"]);
    let settings = settings(dir.path(), &repo);
    let (watcher, stale) = Watcher::start(settings.clone()).unwrap();
    assert!(stale.is_none());
    let heads = watcher.heads().await.unwrap();
    assert_eq!(heads[0].commit, first);
    assert_eq!(heads[0].source, WatchSource::Suite("btrfs-progs".into()));
    let err = Watcher::start(settings.clone()).unwrap_err();
    assert!(
        err.to_string().contains("another `btrfsqa watch` watches"),
        "{err}"
    );
    // The pinned run: the source at the head, the trigger recorded.
    let pinned = pinned(&settings, &heads, &heads);
    assert_eq!(
        pinned
            .config
            .suites
            .get::<btrfsqa_suites::BtrfsProgsConfig>()
            .unwrap()
            .git_ref,
        first
    );
    assert_eq!(
        pinned.config.run.labels["trigger"],
        format!("btrfs-progs main {}", &first[..12])
    );
    drop(watcher);
    Watcher::start(settings).expect("free once the first is gone");
}

#[tokio::test]
async fn failed_polls_back_off_up_to_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings(dir.path(), &dir.path().join("no-such-repo"));
    let (mut watcher, _) = Watcher::start(settings).unwrap();
    assert_eq!(watcher.next_wait(), Duration::from_secs(10));
    let waits: Vec<u64> = (0..3)
        .map(|_| {
            watcher.failures += 1;
            watcher.next_wait().as_secs()
        })
        .collect();
    assert_eq!(waits, [20, 35, 35]);
    let err = watcher.heads().await.unwrap_err();
    assert!(err.to_string().contains("cannot poll `main`"), "{err}");
}

#[test]
fn a_confirmed_new_failure_after_one_moved_source_is_bisected_from_the_baseline() {
    use btrfsqa_model::compare::{Class, ClassCounts, ComparisonSummary, TestComparison};
    use btrfsqa_model::{Provenance, RunId, RunReport, SourceInfo, SuiteReport, Verdict};
    let commit = |c: char| c.to_string().repeat(40);
    let mut baseline = RunReport::start(
        RunId::parse("run-base").unwrap(),
        chrono::Utc::now(),
        Provenance::default(),
    );
    let mut suite = SuiteReport::new("btrfs-progs");
    suite.source = Some(SourceInfo::new(
        "btrfs-progs",
        "/srv/progs",
        None,
        Some(commit('a')),
    ));
    baseline.suites.push(suite);
    let mut run = RunReport::start(
        RunId::parse("run-new").unwrap(),
        chrono::Utc::now(),
        Provenance::default(),
    );
    let failure = |attempts: Vec<Verdict>| TestComparison {
        suite: "btrfs-progs".into(),
        profile: None,
        name: "cli/001-btrfs".into(),
        class: Class::NewFailure,
        verdict: Some(Verdict::Fail),
        baseline_verdict: Some(Verdict::Pass),
        attempts,
        message: None,
    };
    let summary = |regressions| ComparisonSummary {
        run_id: run.run_id.clone(),
        baseline: Some(baseline.run_id.clone()),
        counts: ClassCounts::default(),
        regressions,
        notable: Vec::new(),
        droppable: Vec::new(),
        slower: Vec::new(),
        dashboard_url: None,
    };
    let head = |source| Head {
        source,
        url: "/srv/progs".into(),
        git_ref: "devel".into(),
        commit: commit('b'),
    };
    // Not confirmed by a rerun: no bisection.
    run.comparison = Some(summary(vec![failure(Vec::new())]));
    assert!(
        bisect_request(
            &run,
            Some(&baseline),
            &[head(WatchSource::Suite("btrfs-progs".into()))]
        )
        .is_none()
    );
    // Confirmed: from the baseline's commit to the new head.
    run.comparison = Some(summary(vec![failure(vec![Verdict::Fail, Verdict::Fail])]));
    let request = bisect_request(
        &run,
        Some(&baseline),
        &[head(WatchSource::Suite("btrfs-progs".into()))],
    )
    .unwrap();
    assert_eq!((request.good, request.bad), (commit('a'), commit('b')));
    assert_eq!(request.test, "cli/001-btrfs");
    // Two sources moved: which one broke it is unknown.
    assert!(
        bisect_request(
            &run,
            Some(&baseline),
            &[
                head(WatchSource::Suite("btrfs-progs".into())),
                head(WatchSource::Kernel)
            ]
        )
        .is_none()
    );
}
