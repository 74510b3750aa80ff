//! Kernel matrices: one command, one run per kernel, side by side on the
//! dashboard.

use std::path::Path;

use crate::runs::Area;
use crate::{btrfsqa, need_root, run, text};

/// The stored reports of `results`, by their `kernel` label.
fn reports_by_kernel(results: &Path) -> Vec<(String, serde_json::Value)> {
    let mut reports: Vec<(String, serde_json::Value)> = std::fs::read_dir(results)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("report.json"))
        .filter(|p| p.is_file())
        .map(|p| {
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            (
                report["labels"]["kernel"].as_str().unwrap_or("").to_owned(),
                report,
            )
        })
        .collect();
    reports.sort_by(|a, b| a.0.cmp(&b.0));
    reports
}

/// The site's file `path` on the published branch.
fn site_file(area: &Area, path: &str) -> String {
    let out = run(std::process::Command::new("git")
        .arg("-C")
        .arg(area.path("site.git"))
        .args(["show", &format!("gh-pages:{path}")]));
    assert!(out.status.success(), "{path} is published");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two kernels of a matrix (both the installed one: the provider is this
/// machine) run at once, each on its own machine: two reports labelled with
/// their kernel and one matrix, a line per kernel, the dashboard's matrix
/// with both under one heading, and nothing left behind.
#[test]
fn a_kernel_matrix_runs_each_kernel_on_its_own_machine_and_shows_them_side_by_side() {
    if !need_root("a_kernel_matrix_runs_each_kernel_on_its_own_machine_and_shows_them_side_by_side")
    {
        return;
    }
    let area = Area::new();
    area.scripts(
        "checks",
        &[
            ("001_mkfs-mount", "mkfs.btrfs -q -f \"$TEST_DEV\" && mount \"$TEST_DEV\" \"$TEST_DIR\" && umount \"$TEST_DIR\""),
            ("002_fails", "echo 'expected 1, got 2' >&2; exit 1"),
        ],
    );
    let config = area.config(
        "\"checks\"",
        "\n[suites.scripts.checks]\ndir = \"checks\"\ntimeout-secs = 60\n\n\
         [[kernel.matrix]]\nname = \"stable\"\n\n\
         [[kernel.matrix]]\nname = \"for-next\"\nsource = \"installed\"\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&config));
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a test fails\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("kernel matrix:"), "{stdout}");
    for kernel in ["stable", "for-next"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with(kernel) && l.contains("1 passed, 1 failed")),
            "a line for {kernel}: {stdout}"
        );
    }

    let reports = reports_by_kernel(&area.path("results"));
    let kernels: Vec<&str> = reports.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kernels, ["for-next", "stable"]);
    let matrix = reports[0].1["labels"]["matrix"].as_str().unwrap();
    assert_eq!(reports[1].1["labels"]["matrix"], matrix, "one matrix");
    assert_ne!(reports[0].1["run_id"], reports[1].1["run_id"]);
    for (kernel, report) in &reports {
        let machines: Vec<&str> = report["provenance"]["machines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(machines, [format!("local-{kernel}-0")], "its own machine");
        assert_eq!(report["summary"]["pass"], 1);
        assert_eq!(report["summary"]["fail"], 1);
    }

    let page = site_file(&area, "matrix.html");
    assert!(
        page.contains("<th class=\"group\" colspan=\"2\">kernel matrix</th>"),
        "{page}"
    );
    for kernel in ["stable", "for-next"] {
        assert!(
            page.contains(&format!("<span class=\"kernel-name\">{kernel}</span>")),
            "{kernel} in the matrix: {page}"
        );
    }
    area.assert_nothing_left();

    // A kernel name that cannot be one is refused before anything starts.
    let bad = area.config(
        "\"checks\"",
        "\n[suites.scripts.checks]\ndir = \"checks\"\n\n[[kernel.matrix]]\nname = \"for next\"\n",
    );
    let out = run(btrfsqa().arg("run").arg("--config").arg(&bad));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("kernel.matrix[0].name"), "{stderr}");
}
