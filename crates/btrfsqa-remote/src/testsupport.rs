//! Test support (feature `test-support`): a throwaway OpenSSH server.
//!
//! [`TestSshd`] runs the system's `/usr/sbin/sshd` with a private
//! configuration on a free port of 127.0.0.1, with a host key and a client
//! key generated for it, so tests of anything built on [`crate::OpenSshHost`]
//! talk to a real server. It needs root (sshd only lets other users log in
//! as root) and the `openssh-server` package. Everything lives in a temporary
//! directory and the server dies with the value.
//!
//! ```no_run
//! use btrfsqa_remote::testsupport::TestSshd;
//! use btrfsqa_remote::{ExecRequest, OpenSshHost, RemoteHost};
//!
//! # async fn demo() {
//! let Some(sshd) = TestSshd::start() else { return }; // prints why it skips
//! let host = OpenSshHost::connect("t", sshd.target()).await.unwrap();
//! let out = host.exec(ExecRequest::new("echo hi"), None).await.unwrap();
//! assert_eq!(out.stdout_text(), "hi\n");
//! # }
//! ```
//!
//! Test code: it panics when something that should work does not.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::SshTarget;

const SSHD: &str = "/usr/sbin/sshd";
/// How long sshd may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// A private sshd on 127.0.0.1, killed on drop.
#[derive(Debug)]
pub struct TestSshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl TestSshd {
    /// Why a [`TestSshd`] cannot run on this machine, if it cannot.
    pub fn unavailable() -> Option<String> {
        if !nix::unistd::geteuid().is_root() {
            return Some("the sshd tests need root".to_owned());
        }
        if !Path::new(SSHD).exists() {
            return Some(format!(
                "`{SSHD}` is missing (apt-get install openssh-server)"
            ));
        }
        for tool in ["ssh-keygen", "ssh"] {
            if find_on_path(tool).is_none() {
                return Some(format!(
                    "`{tool}` is not on PATH (apt-get install openssh-client)"
                ));
            }
        }
        None
    }

    /// Starts a server, or returns `None` after printing to stderr why this
    /// machine cannot run one (see [`TestSshd::unavailable`]). Panics if the
    /// prerequisites are there but the server does not start.
    pub fn start() -> Option<TestSshd> {
        if let Some(why) = Self::unavailable() {
            eprintln!("skipping: {why}");
            return None;
        }
        // Privilege separation directory; sshd refuses to start without it.
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd");
        let dir = tempfile::Builder::new()
            .prefix("btrfsqa-sshd-")
            .tempdir()
            .expect("temporary directory");
        keygen(&dir.path().join("host_key"), "btrfsqa-test-host");
        keygen(&dir.path().join("client_key"), "btrfsqa-test-client");
        std::fs::copy(
            dir.path().join("client_key.pub"),
            dir.path().join("authorized_keys"),
        )
        .expect("write authorized_keys");
        // The sessions' TMPDIR: what commands leave there goes with the server.
        std::fs::create_dir(dir.path().join("tmp")).expect("create tmp");

        let mut sshd = TestSshd {
            dir,
            port: 0,
            child: None,
        };
        // A port found free may be taken by someone else before sshd binds
        // it; then sshd exits and another port is tried.
        let mut last_log = String::new();
        for _ in 0..5 {
            sshd.port = free_port();
            sshd.write_files();
            match sshd.spawn() {
                Ok(()) => return Some(sshd),
                Err(log) => last_log = log,
            }
        }
        panic!("sshd did not start; its log:\n{last_log}");
    }

    /// How to reach it: user root with the client key, the host key pinned.
    pub fn target(&self) -> SshTarget {
        SshTarget {
            host: "127.0.0.1".to_owned(),
            port: self.port,
            user: "root".to_owned(),
            identity_file: Some(self.dir.path().join("client_key")),
            known_hosts_file: Some(self.known_hosts()),
        }
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A known_hosts file that holds its host key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// Its directory: keys, configuration, log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// Kills the server with every connection and every command it runs, as
    /// a crash or a lost network would end them for the client.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = i32::try_from(child.id()).expect("pid fits");
            kill_tree(pid);
            let _ = child.wait();
        }
    }

    /// Kills the server if it runs and starts it again on the same port with
    /// the same keys.
    pub fn restart(&mut self) {
        self.kill();
        let mut last_log = String::new();
        // The port can stay busy for a moment while the old sockets close.
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return,
                Err(log) => last_log = log,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "sshd did not restart on port {}; its log:\n{last_log}",
            self.port
        );
    }

    /// Gives the server a new host key (as a reinstalled machine would have),
    /// updates [`TestSshd::known_hosts`] and restarts it.
    pub fn rotate_host_key(&mut self) {
        for file in ["host_key", "host_key.pub"] {
            let _ = std::fs::remove_file(self.dir.path().join(file));
        }
        keygen(&self.dir.path().join("host_key"), "btrfsqa-test-host");
        self.write_files();
        self.restart();
    }

    fn write_files(&self) {
        let dir = self.dir.path();
        let config = format!(
            "\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PrintMotd no
PrintLastLog no
MaxStartups 100:30:200
SetEnv TMPDIR={dir}/tmp
",
            port = self.port,
            dir = dir.display(),
        );
        std::fs::write(dir.join("sshd_config"), config).expect("write sshd_config");
        let host_key = std::fs::read_to_string(dir.join("host_key.pub")).expect("host key");
        let key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            self.known_hosts(),
            format!("[127.0.0.1]:{} {}\n", self.port, key.join(" ")),
        )
        .expect("write known_hosts");
    }

    /// Starts sshd and waits until it listens; `Err` with its log if it
    /// exits instead.
    fn spawn(&mut self) -> Result<(), String> {
        let dir = self.dir.path();
        let log_path = dir.join("sshd.log");
        let log = std::fs::File::create(&log_path).expect("create sshd.log");
        let mut child = Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("run sshd");
        let listening = format!("Server listening on 127.0.0.1 port {}", self.port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            if text.contains(&listening) {
                self.child = Some(child);
                return Ok(());
            }
            if child.try_wait().expect("poll sshd").is_some() || Instant::now() > deadline {
                let pid = i32::try_from(child.id()).expect("pid fits");
                kill_tree(pid);
                let _ = child.wait();
                return Err(std::fs::read_to_string(&log_path).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn keygen(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(status.success(), "ssh-keygen failed: {status}");
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a port on 127.0.0.1")
        .port()
}

fn find_on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(tool))
        .find(|path| path.is_file())
}

/// Stops `root` and all its descendants, then kills them. Stopping first
/// keeps the tree intact (a killed parent's children move to init) and stops
/// anyone from forking past us.
fn kill_tree(root: i32) {
    let mut stopped = HashSet::new();
    for _ in 0..50 {
        let fresh: Vec<i32> = tree(root)
            .into_iter()
            .filter(|pid| !stopped.contains(pid))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for pid in fresh {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for pid in stopped {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// `root` and its descendants, from /proc.
fn tree(root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok())
            else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // "pid (comm) state ppid ...", and comm may hold anything.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<i32>().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let mut all = vec![root];
    let mut next = 0;
    while next < all.len() {
        if let Some(kids) = children.get(&all[next]) {
            all.extend(kids);
        }
        next += 1;
    }
    all
}
