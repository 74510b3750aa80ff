//! The pages of the store's bisections.

use btrfsqa_model::bisect::{Bisection, Mark, Outcome, Step};

use super::*;

fn step(commit: &str, purpose: &str, verdict: Verdict, mark: Mark, run: &str) -> Step {
    Step {
        commit: commit.into(),
        purpose: purpose.into(),
        verdicts: vec![Some(verdict)],
        runs: vec![run.into()],
        mark,
        note: None,
        at: at("2026-11-25T10:00:00Z"),
    }
}

fn bisection() -> Bisection {
    let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
    Bisection {
        id: "0123abcd".into(),
        test: "btrfs-progs/cli/003".into(),
        profile: None,
        source: "btrfs-progs".into(),
        url: "/srv/btrfs-progs".into(),
        good: "9".repeat(40),
        bad: c.clone(),
        commits: vec![
            format!("{a} tests: tidy"),
            format!("{b} mkfs: <script>alert(1)</script> breaks cli/003"),
            format!("{c} docs"),
        ],
        runs: 1,
        failure: Some(Verdict::Fail),
        steps: vec![
            step(&c, "bad", Verdict::Fail, Mark::Bad, RUN),
            step(
                &a,
                "search",
                Verdict::Pass,
                Mark::Good,
                "20261125-100000-0001",
            ),
            step(
                &b,
                "culprit",
                Verdict::Fail,
                Mark::Bad,
                "20261125-100100-0002",
            ),
        ],
        outcome: Some(Outcome::Found {
            commit: b.clone(),
            subject: "mkfs: <script>alert(1)</script> breaks cli/003".into(),
        }),
    }
}

#[test]
fn a_bisection_has_a_page_with_its_steps_runs_and_journal() {
    let store_dir = tempfile::tempdir().unwrap();
    let site = tempfile::tempdir().unwrap();
    let store = fixed_store(store_dir.path());
    let journal = store_dir.path().join(".bisect/0123abcd");
    fs::create_dir_all(&journal).unwrap();
    fs::write(
        journal.join("bisect.json"),
        serde_json::to_vec(&bisection()).unwrap(),
    )
    .unwrap();
    // A journal that is not one is named, and does not stop the site.
    fs::create_dir_all(store_dir.path().join(".bisect/broken")).unwrap();
    fs::write(store_dir.path().join(".bisect/broken/bisect.json"), b"{").unwrap();
    let stats = Dashboard::new().render(&store, site.path()).unwrap();
    assert!(
        stats
            .unreadable
            .iter()
            .any(|u| u.starts_with("bisection broken:")),
        "{:?}",
        stats.unreadable
    );

    let list = read(site.path().join("bisect/index.html"));
    assert!(
        list.contains(
            "<a href=\"0123abcd/index.html\"><code class=\"tn\">btrfs-progs/cli/003</code></a>"
        ),
        "{list}"
    );
    assert!(
        list.contains("first bad commit bbbbbbbbbbbb mkfs: &lt;script&gt;"),
        "{list}"
    );
    let page = read(site.path().join("bisect/0123abcd/index.html"));
    assert_only_template_markup(&page);
    assert!(!page.contains("<script>alert"), "escaped: {page}");
    // Each step: its commit and subject, why, its mark and verdicts, its run.
    assert!(
        page.contains(&format!(
            "<a href=\"../../runs/{RUN}/index.html\"><code>{RUN}</code></a>"
        )),
        "{page}"
    );
    assert!(
        page.contains("<code>20261125-100000-0001</code>"),
        "a run without a page is named: {page}"
    );
    assert!(page.contains("<span class=\"badge bisect-good\">good</span>"));
    assert!(page.contains("<td data-label=\"why\">culprit</td>"));
    let json: Bisection =
        serde_json::from_str(&read(site.path().join("bisect/0123abcd/bisect.json"))).unwrap();
    assert_eq!(json.steps.len(), 3);
    assert!(
        read(site.path().join("index.html"))
            .contains("<a href=\"bisect/index.html\">Bisections</a>")
    );
    assert_links_resolve(site.path());
}
