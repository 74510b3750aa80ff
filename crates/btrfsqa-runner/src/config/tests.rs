//! Loading, locating errors in and validating `btrfsqa.toml`.

use super::*;

fn source(text: &str) -> ConfigSource {
    ConfigSource {
        name: "btrfsqa.toml".into(),
        base_dir: PathBuf::from("/etc/btrfsqa"),
        text: text.into(),
    }
}

fn error_text(text: &str) -> String {
    source(text).parse().unwrap_err().to_string()
}

#[test]
fn the_embedded_default_parses_and_validates() {
    let config = ConfigSource::embedded_default().parse().unwrap();
    assert_eq!(config.run.provider, "local");
    assert_eq!(config.run.suites, ["raid56-scrub"]);
    assert_eq!(config.machine.data_devices, 6);
}

/// The commented `[suites.xfstests]` and `[suites.btrfs-progs]` of the
/// default, uncommented: the TOML lines of the region (`# [table]`,
/// `# key = value  # note`), not its prose.
fn uncommented_suites() -> String {
    let start = DEFAULT_CONFIG.find("# [suites.xfstests]").unwrap();
    let end = DEFAULT_CONFIG.find("\n[publish]").unwrap();
    let mut out = String::new();
    for line in DEFAULT_CONFIG[start..end].lines() {
        let Some(rest) = line.strip_prefix("# ") else {
            continue;
        };
        let is_key = rest.split_once(" = ").is_some_and(|(key, _)| {
            !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
        if rest.starts_with('[') || is_key {
            out.push_str(rest);
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_default_offers_fstests_and_btrfs_progs_with_every_key() {
    let text = uncommented_suites();
    let config = source(&text).parse().unwrap();
    let xfstests = config
        .suites
        .get::<btrfsqa_suites::XfstestsConfig>()
        .unwrap();
    assert_eq!(xfstests.profiles, ["default"]);
    assert_eq!(xfstests.sections.len(), 1);
    assert_eq!(xfstests.sections[0].scratch_devs, Some(3));
    assert_eq!(
        config
            .suites
            .get::<btrfsqa_suites::BtrfsProgsConfig>()
            .unwrap()
            .exclude,
        ["cli/017-*"]
    );
    // Still only what the README's main job runs.
    let default = ConfigSource::embedded_default().parse().unwrap();
    assert_eq!(default.run.suites, ["raid56-scrub"]);
    // Every key of the three tables, as the types have them.
    let shape = crate::reference::config_shape().unwrap();
    let keys = |path: &[&str]| -> Vec<&'static str> {
        let mut shape = &shape;
        for key in path {
            let crate::reference::Shape::Struct { fields, .. } = shape else {
                panic!("{path:?}")
            };
            shape = &fields.iter().find(|f| f.key == *key).unwrap().shape;
            if let crate::reference::Shape::Array(inner) = shape {
                shape = inner;
            }
        }
        let crate::reference::Shape::Struct { fields, .. } = shape else {
            panic!("{path:?}")
        };
        fields.iter().map(|f| f.key).collect()
    };
    let tables = [
        ("[suites.xfstests]", keys(&["suites", "xfstests"])),
        (
            "[[suites.xfstests.sections]]",
            keys(&["suites", "xfstests", "sections"]),
        ),
        ("[suites.btrfs-progs]", keys(&["suites", "btrfs-progs"])),
    ];
    for (table, keys) in tables {
        let at = text.find(&format!("{table}\n")).unwrap();
        let body = text[at + table.len()..].split("\n[").next().unwrap();
        for key in keys {
            // `sections` is the table that follows.
            if key == "sections" {
                continue;
            }
            assert!(
                body.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "{table}: `{key}` is not in the default configuration"
            );
        }
    }
    for profile in btrfsqa_suites::xfstests::config::PROFILES {
        assert!(
            DEFAULT_CONFIG.lines().any(|l| l.starts_with("#   ")
                && l.contains(profile.name)
                && l.contains(profile.description)),
            "profile `{}` is not described in the default configuration",
            profile.name
        );
    }
}

#[test]
fn an_empty_file_means_all_defaults() {
    let config = source("").parse().unwrap();
    assert_eq!(config.run.timeout_minutes, 240);
    assert_eq!(config.publish.branch, "gh-pages");
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let err = error_text("[run]\nprovider = \"local\"\nsuites = [\n");
    assert!(err.starts_with("btrfsqa.toml:"), "{err}");
    let err = error_text("[run]\n\nprovider = = 3\n");
    assert!(err.starts_with("btrfsqa.toml:3:"), "{err}");
}

#[test]
fn unknown_keys_name_the_table_and_line() {
    let err = error_text("[run]\nprovider = \"local\"\n\n[machine]\ndata-disks = 6\n");
    assert!(err.contains("btrfsqa.toml:5:"), "{err}");
    assert!(err.contains("data-disks"), "{err}");
    assert!(err.contains("`machine.data-disks`: unknown field"), "{err}");
}

#[test]
fn wrong_types_name_the_dotted_key() {
    let err = error_text("[machine]\ndevice-size-gib = \"ten\"\n");
    assert!(
        err.contains("btrfsqa.toml:2: `machine.device-size-gib`"),
        "{err}"
    );
    let err = error_text("[run]\nprovider = \"azure\"\n");
    assert!(err.contains("`run.provider`"), "{err}");
    assert!(err.contains("azure"), "{err}");
}

#[test]
fn validation_errors_point_at_array_elements() {
    let err = error_text("[run]\nsuites = [\n  \"raid56-scrub\",\n  \"nope\",\n]\n");
    assert!(
        err.contains("btrfsqa.toml:4: `run.suites[1]`: unknown suite `nope`"),
        "{err}"
    );
    let err = error_text("[machine]\ndata-devices = 1\n");
    assert!(
        err.contains("btrfsqa.toml:2: `machine.data-devices`: must be at least 2"),
        "{err}"
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = error_text("[run]\ntimeout-minutes = 0\nsuites = []\n");
    assert!(err.contains("run.timeout-minutes"), "{err}");
    assert!(err.contains("run.suites"), "{err}");
}

#[test]
fn static_hosts_are_checked() {
    let text = r#"
[run]
provider = "static"

[[providers.static.hosts]]
host = "192.0.2.1"
test-dev = "vdb"
scratch-devs = ["/dev/vdc", "/dev/vdc"]
"#;
    let err = error_text(text);
    assert!(
        err.contains("btrfsqa.toml:7: `providers.static.hosts[0].test-dev`"),
        "{err}"
    );
    assert!(
        err.contains("`providers.static.hosts[0].scratch-devs[1]`: `/dev/vdc` is used twice"),
        "{err}"
    );
    let err = error_text("[run]\nprovider = \"static\"\n");
    assert!(err.contains("`providers.static.hosts`"), "{err}");
}

#[test]
fn secrets_are_refused_wherever_they_are() {
    let err = error_text("[publish]\nsite-repo = \"x\"\ngithub-token = \"ghp_abc\"\n");
    assert!(
        err.contains("btrfsqa.toml:3: `publish.github-token`: secrets are never read"),
        "{err}"
    );
    assert!(
        !err.contains("ghp_abc"),
        "the secret itself leaked into the message: {err}"
    );
    let err = error_text("[providers.aws]\nsecret_access_key = \"x\"\n");
    assert!(err.contains("secret_access_key"), "{err}");
    let err = error_text("[publish]\nsite-repo = \"https://user:pw@example.com/site.git\"\n");
    assert!(
        err.contains("`publish.site-repo`: must not carry credentials"),
        "{err}"
    );
}

#[test]
fn script_suites_are_known_suites() {
    let text = "[run]\nsuites = [\"smoke\"]\n[suites.scripts.smoke]\ndir = \"suites/smoke\"\n";
    let config = source(text).parse().unwrap();
    assert_eq!(
        config
            .suites
            .get::<btrfsqa_suites::ScriptSuites>()
            .unwrap()
            .0["smoke"]
            .dir,
        PathBuf::from("suites/smoke")
    );
    let err = error_text("[suites.scripts.Bad_Name]\ndir = \"x\"\n");
    assert!(err.contains("suites.scripts.Bad_Name"), "{err}");
}

#[test]
fn key_paths_resolve_to_spans() {
    let text = "[a]\nb = [1, 2]\n[[c]]\nd = 1\n[[c]]\nd = 2\n";
    let doc = DeTable::parse(text).unwrap();
    let src = source(text);
    let line = |key: &str| lookup_span(doc.get_ref(), key).map(|s| src.line_column(s.start).0);
    assert_eq!(line("a.b"), Some(2));
    assert_eq!(line("c[1].d"), Some(6));
    assert_eq!(line("c[1].missing"), Some(5));
    assert_eq!(line("zzz"), None);
}
