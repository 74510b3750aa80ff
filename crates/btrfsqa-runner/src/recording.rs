//! Terminal recordings of each machine, with a marker at every test.
//!
//! Every connected machine is wrapped in a [`RecordingHost`] that writes
//! `RUN_DIR/casts/<machine>.cast` (asciicast v2) as its output streams, with
//! the run's secrets removed. Every `TestStarted` event of that machine adds
//! a marker to its recording, and once a suite's report is back each of
//! that machine's tests gets a `Cast` artifact saying where in the recording
//! it starts, so the dashboard opens the player there.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use btrfsqa_model::EventSink;
use btrfsqa_model::{Artifact, ArtifactKind, Event, SuiteReport, safe_file_name};
use btrfsqa_remote::{CastRecorder, RecordingHost, Redactor, RemoteHost};

/// The environment variables whose values never appear in a recording, a
/// log or a report: the credentials a run may use.
pub const SECRET_ENV_VARS: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The terminal size recordings claim (fstests lines fit in it).
const WIDTH: u16 = 120;
const HEIGHT: u16 = 36;

/// One machine's recording and where each of its tests started in it.
pub(crate) struct MachineRecording {
    machine: String,
    recorder: Arc<CastRecorder>,
    /// The recording's path relative to the run directory.
    rel_path: String,
    /// (suite, test) -> the start of each run of it, in order (a test can
    /// run once per profile).
    starts: Mutex<HashMap<(String, String), Vec<f64>>>,
    /// What is removed from the recording (kept for reconnections).
    redactor: Redactor,
}

/// Wraps `host` so everything it runs is recorded into
/// `run_dir/casts/<machine>.cast`. When the file cannot be created the
/// host is returned as it was, with a warning event: a run is not lost
/// for want of a recording.
pub(crate) fn record(
    run_dir: &Path,
    machine: &str,
    host: Arc<dyn RemoteHost>,
    sink: &EventSink,
    redactor: Redactor,
) -> (Arc<dyn RemoteHost>, Option<Arc<MachineRecording>>) {
    let rel_path = format!("casts/{}.cast", safe_file_name(machine));
    match CastRecorder::create(&run_dir.join(&rel_path), WIDTH, HEIGHT, Some(machine)) {
        Ok(recorder) => {
            let recorder = Arc::new(recorder);
            let wrapped = RecordingHost::new(host, recorder.clone(), redactor.clone());
            let recording = MachineRecording {
                machine: machine.to_owned(),
                recorder,
                rel_path,
                starts: Mutex::new(HashMap::new()),
                redactor,
            };
            (Arc::new(wrapped), Some(Arc::new(recording)))
        }
        Err(error) => {
            sink(Event::Warning {
                machine: Some(machine.to_owned()),
                message: format!(
                    "no terminal recording: {}",
                    crate::error::error_chain(&error)
                ),
            });
            (host, None)
        }
    }
}

/// `host` recorded into an existing recording (a machine reconnected
/// after a reset goes on in the same file).
pub(crate) fn rewrap(
    recording: Option<&Arc<MachineRecording>>,
    host: Arc<dyn RemoteHost>,
) -> Arc<dyn RemoteHost> {
    match recording {
        Some(recording) => Arc::new(RecordingHost::new(
            host,
            recording.recorder.clone(),
            recording.redactor.clone(),
        )),
        None => host,
    }
}

/// `sink`, plus a marker in the recording at each of the machine's tests.
pub(crate) fn marking_sink(
    recording: Option<&Arc<MachineRecording>>,
    sink: &EventSink,
) -> EventSink {
    let Some(recording) = recording.cloned() else {
        return sink.clone();
    };
    let sink = sink.clone();
    Arc::new(move |event: Event| {
        if let Event::TestStarted {
            machine,
            suite,
            test,
        } = &event
            && *machine == recording.machine
        {
            let at = recording.recorder.marker(&format!("{suite}: {test}"));
            recording
                .starts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry((suite.clone(), test.clone()))
                .or_default()
                .push(at);
        }
        sink(event);
    })
}

/// Gives every test of `report` that ran on the recorded machine a `Cast`
/// artifact, starting where its marker is (or at the beginning when the
/// suite never announced the test).
pub(crate) fn attach(recording: Option<&Arc<MachineRecording>>, report: &mut SuiteReport) {
    let Some(recording) = recording else {
        return;
    };
    let starts = recording.starts.lock().unwrap_or_else(|e| e.into_inner());
    let mut used: HashMap<(&str, &str), usize> = HashMap::new();
    for test in &mut report.tests {
        if test
            .machine
            .as_deref()
            .is_some_and(|m| m != recording.machine)
            || test.artifacts.iter().any(|a| a.kind == ArtifactKind::Cast)
        {
            continue;
        }
        let key = (test.suite.clone(), test.name.clone());
        let nth = used.entry((&test.suite, &test.name)).or_default();
        let start = starts
            .get(&key)
            .and_then(|all| all.get(*nth).or(all.last()));
        *nth += 1;
        let mut artifact = Artifact::new(ArtifactKind::Cast, recording.rel_path.clone());
        artifact.start_secs = start.copied();
        test.artifacts.push(artifact);
    }
    if !report
        .artifacts
        .iter()
        .any(|a| a.kind == ArtifactKind::Cast)
    {
        report.artifacts.push(Artifact::new(
            ArtifactKind::Cast,
            recording.rel_path.clone(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use btrfsqa_model::{TestOutcome, Verdict};
    use btrfsqa_remote::{ExecOutput, ExecRequest, MockRemoteHost};

    #[tokio::test]
    async fn tests_get_their_start_in_the_machine_recording() {
        let dir = tempfile::tempdir().unwrap();
        let mut inner = MockRemoteHost::new();
        inner.expect_name().return_const("local-0".to_owned());
        inner.expect_exec().returning(|_, _| {
            Ok(ExecOutput {
                code: Some(0),
                ..Default::default()
            })
        });
        let events: Arc<Mutex<Vec<Event>>> = Arc::default();
        let seen = events.clone();
        let sink: EventSink = Arc::new(move |e| seen.lock().unwrap().push(e));
        let (host, recording) = record(
            dir.path(),
            "local-0",
            Arc::new(inner),
            &sink,
            Redactor::from_env(SECRET_ENV_VARS),
        );
        let recording = recording.expect("recording created");
        let marking = marking_sink(Some(&recording), &sink);
        host.exec(ExecRequest::new("true"), None).await.unwrap();
        for test in ["a", "b"] {
            marking(Event::TestStarted {
                machine: "local-0".into(),
                suite: "s".into(),
                test: test.into(),
            });
        }
        marking(Event::TestStarted {
            machine: "other".into(),
            suite: "s".into(),
            test: "c".into(),
        });
        assert_eq!(
            events.lock().unwrap().len(),
            3,
            "events still reach the sink"
        );

        let mut report = SuiteReport::new("s");
        for name in ["a", "b", "never-announced"] {
            report
                .tests
                .push(TestOutcome::new("s", name, Verdict::Pass));
        }
        let mut elsewhere = TestOutcome::new("s", "c", Verdict::Pass);
        elsewhere.machine = Some("other".into());
        report.tests.push(elsewhere);
        attach(Some(&recording), &mut report);

        let casts: Vec<_> = report
            .tests
            .iter()
            .map(|t| t.artifacts.iter().find(|a| a.kind == ArtifactKind::Cast))
            .collect();
        assert_eq!(casts[0].unwrap().path, "casts/local-0.cast");
        let (a, b) = (
            casts[0].unwrap().start_secs.unwrap(),
            casts[1].unwrap().start_secs.unwrap(),
        );
        assert!(a <= b);
        assert_eq!(casts[2].unwrap().start_secs, None);
        assert!(casts[3].is_none(), "another machine's test");
        assert_eq!(report.artifacts.len(), 1);

        let cast = std::fs::read_to_string(dir.path().join("casts/local-0.cast")).unwrap();
        assert!(
            cast.contains(r#""m","s: a"]"#) && cast.contains("$ true"),
            "{cast}"
        );
        assert!(!cast.contains("s: c"));
    }
}
