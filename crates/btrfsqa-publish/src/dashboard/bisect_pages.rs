//! The bisections of the results store (`RESULTS/.bisect/<id>/bisect.json`,
//! written by `btrfsqa bisect`): a list (`bisect/index.html`) and a page per
//! bisection with every step's verdicts and links to its runs, beside its
//! JSON.

use std::collections::HashSet;

use btrfsqa_model::bisect::{Bisection, Mark, Outcome};
use btrfsqa_model::{ResultsStore, safe_file_name};
use serde::Serialize;

use super::Dashboard;
use super::incremental::SiteWriter;
use super::summary::RunSummary;
use crate::PublishError;

/// The bisections in `store`, newest step first; an unreadable journal is
/// described in `unreadable` and left out.
pub(super) fn read_bisections(
    store: &ResultsStore,
    unreadable: &mut Vec<String>,
) -> Vec<Bisection> {
    let dir = store.root().join(".bisect");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut bisections: Vec<Bisection> = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join("bisect.json");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        match serde_json::from_slice::<Bisection>(&bytes) {
            Ok(bisection) => bisections.push(bisection),
            Err(err) => unreadable.push(format!(
                "bisection {}: {err}",
                entry.file_name().to_string_lossy()
            )),
        }
    }
    let last = |b: &Bisection| b.steps.last().map(|s| s.at);
    bisections.sort_by(|a, b| last(b).cmp(&last(a)).then_with(|| a.id.cmp(&b.id)));
    bisections
}

#[derive(Serialize)]
struct ListPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    filter: bool,
    bisections: Vec<ListRow<'a>>,
}

#[derive(Serialize)]
struct ListRow<'a> {
    href: String,
    test: &'a str,
    profile: Option<&'a str>,
    source: &'a str,
    range: String,
    state: &'static str,
    result: String,
    test_runs: usize,
    updated: Option<String>,
}

#[derive(Serialize)]
struct BisectPage<'a> {
    site_title: &'a str,
    root: &'a str,
    player: bool,
    filter: bool,
    bisection: BisectView<'a>,
}

#[derive(Serialize)]
struct BisectView<'a> {
    id: &'a str,
    test: &'a str,
    profile: Option<&'a str>,
    source: &'a str,
    url: &'a str,
    good: &'a str,
    bad: &'a str,
    commits: usize,
    runs_per_step: u32,
    failure: Option<&'static str>,
    state: &'static str,
    result: String,
    test_runs: usize,
    steps: Vec<StepView<'a>>,
}

#[derive(Serialize)]
struct StepView<'a> {
    n: usize,
    commit: &'a str,
    short: &'a str,
    subject: &'a str,
    purpose: &'a str,
    mark: &'static str,
    verdicts: Vec<&'static str>,
    runs: Vec<RunLink<'a>>,
    note: Option<&'a str>,
    at: String,
}

#[derive(Serialize)]
struct RunLink<'a> {
    id: &'a str,
    href: Option<String>,
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

/// `found`, `undecided` or `running`, and what it came to.
fn state_of(bisection: &Bisection) -> (&'static str, String) {
    match &bisection.outcome {
        Some(Outcome::Found { commit, subject }) => (
            "found",
            format!("first bad commit {} {subject}", short(commit)),
        ),
        Some(Outcome::Undecided { why, .. }) => ("undecided", why.clone()),
        None => (
            "running",
            format!("{} step(s) so far", bisection.steps.len()),
        ),
    }
}

fn mark_text(mark: Mark) -> &'static str {
    match mark {
        Mark::Good => "good",
        Mark::Bad => "bad",
        Mark::Skip => "skip",
    }
}

/// `bisect/<id>/`: the id made safe for a path.
fn page_dir(bisection: &Bisection) -> String {
    format!("bisect/{}", safe_file_name(&bisection.id))
}

impl Dashboard {
    /// The list of bisections and a page per bisection, with its JSON.
    pub(super) fn write_bisect_pages(
        &self,
        site: &mut SiteWriter<'_>,
        bisections: &[Bisection],
        summaries: &[RunSummary],
    ) -> Result<(), PublishError> {
        let with_page: HashSet<&str> = summaries
            .iter()
            .filter(|s| s.has_page)
            .map(|s| s.run_id.as_str())
            .collect();
        let rows = bisections
            .iter()
            .map(|b| {
                let (state, result) = state_of(b);
                ListRow {
                    href: format!("{}/index.html", safe_file_name(&b.id)),
                    test: &b.test,
                    profile: b.profile.as_deref(),
                    source: &b.source,
                    range: format!("{}..{}", short(&b.good), short(&b.bad)),
                    state,
                    result,
                    test_runs: b.test_runs(),
                    updated: b
                        .steps
                        .last()
                        .map(|s| s.at.format("%Y-%m-%d %H:%M").to_string()),
                }
            })
            .collect();
        let list = ListPage {
            site_title: &self.settings.title,
            root: "../",
            player: false,
            filter: false,
            bisections: rows,
        };
        site.write(
            "bisect/index.html",
            self.render_template("bisects.html", &list)?.as_bytes(),
        )?;
        for bisection in bisections {
            let dir = page_dir(bisection);
            let page = BisectPage {
                site_title: &self.settings.title,
                root: "../../",
                player: false,
                filter: false,
                bisection: view(bisection, &with_page),
            };
            site.write(
                &format!("{dir}/index.html"),
                self.render_template("bisect.html", &page)?.as_bytes(),
            )?;
            let json = serde_json::to_vec_pretty(bisection).expect("a bisection serializes");
            site.write(&format!("{dir}/bisect.json"), &json)?;
        }
        Ok(())
    }
}

fn view<'a>(bisection: &'a Bisection, with_page: &HashSet<&str>) -> BisectView<'a> {
    let (state, result) = state_of(bisection);
    let subject_of = |commit: &str| -> &'a str {
        bisection
            .commits
            .iter()
            .find_map(|line| {
                let (id, subject) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                (id == commit).then_some(subject)
            })
            .unwrap_or("")
    };
    BisectView {
        id: &bisection.id,
        test: &bisection.test,
        profile: bisection.profile.as_deref(),
        source: &bisection.source,
        url: &bisection.url,
        good: &bisection.good,
        bad: &bisection.bad,
        commits: bisection.commits.len(),
        runs_per_step: bisection.runs,
        failure: bisection.failure.map(|v| v.as_str()),
        state,
        result,
        test_runs: bisection.test_runs(),
        steps: bisection
            .steps
            .iter()
            .enumerate()
            .map(|(i, step)| StepView {
                n: i + 1,
                commit: &step.commit,
                short: short(&step.commit),
                subject: subject_of(&step.commit),
                purpose: &step.purpose,
                mark: mark_text(step.mark),
                verdicts: step
                    .verdicts
                    .iter()
                    .map(|v| v.map_or("none", |v| v.as_str()))
                    .collect(),
                runs: step
                    .runs
                    .iter()
                    .map(|id| RunLink {
                        id,
                        href: with_page
                            .contains(id.as_str())
                            .then(|| format!("../../runs/{id}/index.html")),
                    })
                    .collect(),
                note: step.note.as_deref(),
                at: step.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            })
            .collect(),
    }
}
