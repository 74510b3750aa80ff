//! How the pages word a run's status, colour its badge and write a
//! duration; the bottom of the dashboard, which every page uses.

use btrfsqa_model::{Counts, RunStatus};

pub(super) fn status_text(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Running => "running",
        RunStatus::Completed => "completed",
        RunStatus::Errored => "errored",
        RunStatus::Interrupted => "interrupted",
    }
}

/// The badge colour of a run: green only when it completed with nothing bad.
pub(super) fn status_class(status: RunStatus, counts: &Counts) -> &'static str {
    match status {
        RunStatus::Completed if counts.bad() == 0 => "ok",
        RunStatus::Completed | RunStatus::Errored => "bad",
        RunStatus::Running | RunStatus::Interrupted => "warn",
    }
}

/// `2h 03m`, `4m 05s`, `12 s`, `0.4 s`.
pub(super) fn human_duration(secs: f64) -> Option<String> {
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    if secs < 10.0 {
        return Some(format!("{secs:.1} s"));
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    Some(if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s} s")
    })
}
