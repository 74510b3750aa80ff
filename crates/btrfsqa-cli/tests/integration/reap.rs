//! `btrfsqa reap` on the aws provider, against moto's EC2 emulator on
//! 127.0.0.1 (`scripts/moto-server.sh --install-only` installs it;
//! `BTRFSQA_MOTO_SERVER` names another `moto_server`). Without it the test
//! says so and skips. Resources are made with EC2's query API directly, the
//! way a controller killed after provisioning leaves them.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{btrfsqa, run, text};

const RUN_ID: &str = "20261124-100000-ab12";

/// A moto server on a free port, stopped on drop.
struct Moto {
    child: Child,
    port: u16,
}

impl Moto {
    fn start() -> Option<Moto> {
        let binary = std::env::var_os("BTRFSQA_MOTO_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/tmp/btrfsqa-moto/bin/moto_server"));
        if !binary.exists() {
            eprintln!(
                "skipped: no EC2 emulator at `{}` (run scripts/moto-server.sh --install-only, \
                 or set BTRFSQA_MOTO_SERVER)",
                binary.display()
            );
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let moto = Moto { child, port };
        let started = Instant::now();
        while moto.ec2("Action=DescribeRegions").is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "moto_server did not answer in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    /// One EC2 query API call (moto checks no signature); the response body.
    fn ec2(&self, query: &str) -> std::io::Result<String> {
        let body = format!("{query}&Version=2016-11-15");
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\
             Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(answer)
        } else {
            Err(std::io::Error::other(answer))
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tags(kind: &str) -> String {
    format!(
        "TagSpecification.1.ResourceType={kind}\
         &TagSpecification.1.Tag.1.Key=btrfsqa%3Arun-id&TagSpecification.1.Tag.1.Value={RUN_ID}\
         &TagSpecification.1.Tag.2.Key=btrfsqa%3Amachine&TagSpecification.1.Tag.2.Value=aws-0"
    )
}

/// A reap that terminates and deletes everything a run left is a success:
/// exit 0, every line says what was done.
#[test]
fn reap_on_aws_exits_0_after_terminating_and_deleting() {
    let Some(moto) = Moto::start() else {
        return;
    };
    moto.ec2(&format!(
        "Action=RunInstances&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&InstanceType=t3.micro&{}",
        tags("instance")
    ))
    .unwrap();
    moto.ec2(&format!(
        "Action=CreateVolume&AvailabilityZone=us-east-1a&Size=1&{}",
        tags("volume")
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("btrfsqa.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nprovider = \"aws\"\nresults-dir = \"results\"\n\n\
             [providers.aws]\nregion = \"us-east-1\"\nendpoint-url = \"http://127.0.0.1:{}\"\n",
            moto.port
        ),
    )
    .unwrap();
    let reap = |dry_run: bool| {
        let mut command = btrfsqa();
        command
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE")
            .env("HOME", dir.path())
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .args(["reap", "--run", RUN_ID, "--config"])
            .arg(&config);
        if dry_run {
            command.arg("--dry-run");
        }
        run(&mut command)
    };

    let out = reap(true);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("would terminate"), "{stdout}");

    let out = reap(false);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("terminated"), "{stdout}");
    assert!(stdout.contains("deleted"), "{stdout}");

    // Again: nothing is left, which is no failure either.
    let out = reap(false);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
}
