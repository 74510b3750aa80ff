//! The command line (`*Args`), mapped onto the runner's overrides.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Continuous QA for the btrfs filesystem.
///
/// Provisions a machine with six data devices, runs btrfs test suites on it,
/// records one verdict per test in the results store, publishes a static
/// dashboard to a git repository, and tears everything down on every path.
#[derive(Debug, Parser)]
#[command(name = "btrfsqa", version = crate::VERSION, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the configured suites on a fresh machine and publish the results.
    Run(RunArgs),
    /// Write a commented starter btrfsqa.toml.
    Init(InitArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remove what crashed or killed runs left behind (loop devices, files, machines).
    Reap(ReapArgs),
    /// Publish a run from the results store again (e.g. after a failed push).
    Publish(PublishArgs),
    /// Print the summary of a stored run.
    Show(ShowArgs),
    /// Continue an interrupted run: its tests without a verdict, on a new machine.
    Resume(ResumeArgs),
    /// Print how a sharded run would hand out its tests, and its predicted makespan.
    Plan(PlanArgs),
    /// Make one machine, print it as JSON and leave it up.
    Provision(ProvisionArgs),
    /// Remove the machines of a run (those `provision` or a killed `run` left).
    Teardown(TeardownArgs),
    /// Turn results made elsewhere (an fstests results directory, a
    /// btrfs-progs tree after `make test`) into a run in the results store.
    Import(ImportArgs),
    /// Compare two stored runs test by test: new failures, fixes, flaky tests.
    Compare(CompareArgs),
    /// Show one test's verdicts over the stored runs, newest first.
    History(HistoryArgs),
    /// The qemu provider's guest image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Poll the git refs of `[watch]` and run when one moves (continuous QA).
    Watch(WatchArgs),
    /// Find the first commit of a source after which a test fails.
    Bisect(BisectArgs),
    /// Print a shell completion script (`btrfsqa completions bash >
    /// /etc/bash_completion.d/btrfsqa`).
    Completions(CompletionsArgs),
    /// Print the man page, or write one per command into a directory.
    Man(ManArgs),
}

/// `btrfsqa bisect`.
#[derive(Debug, Args)]
pub struct BisectArgs {
    /// Configuration (the provider and the sources' repositories).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The suite of the test.
    #[arg(long, value_name = "ID")]
    pub suite: String,
    /// The test (`btrfs/011`, `cli/001-btrfs`).
    #[arg(long, value_name = "NAME")]
    pub test: String,
    /// The profile (fstests section) it runs under.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// A commit or ref where the test passes.
    #[arg(long, value_name = "REV")]
    pub good: String,
    /// A later commit or ref where it fails.
    #[arg(long, value_name = "REV")]
    pub bad: String,
    /// Whose commits: `kernel`, `btrfs-progs` or `xfstests` (default: the
    /// suite's own source for those two suites, else the kernel).
    #[arg(long, value_name = "SOURCE", value_parser = ["kernel", "btrfs-progs", "xfstests"])]
    pub source: Option<String>,
    /// Test runs per step (a step is bad if any fails, good if all pass).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub runs: u32,
    /// Output shape.
    #[arg(long, value_enum, default_value_t)]
    pub message_format: MessageFormat,
}

/// `btrfsqa watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Configuration (its `[watch]` section, and the runs it starts).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Poll once, run at most once, and exit (for cron and systemd timers).
    #[arg(long)]
    pub once: bool,
    /// Output shape of the runs' progress.
    #[arg(long, value_enum, default_value_t)]
    pub message_format: MessageFormat,
}

/// `btrfsqa completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `btrfsqa man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `btrfsqa.1` and `btrfsqa-COMMAND.1` for every command here
    /// instead of printing `btrfsqa.1`.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// `btrfsqa image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Make the guest image (Debian with sshd, btrfs-progs and what fstests
    /// needs) from Debian's packages, unless a complete one is cached.
    Build(ImageBuildArgs),
}

/// `btrfsqa image build`.
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Configuration (for `providers.qemu.image-dir`).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Build again even when a complete image is cached.
    #[arg(long)]
    pub force: bool,
    /// Where the image goes (overrides `providers.qemu.image-dir` and
    /// `BTRFSQA_QEMU_IMAGE`).
    #[arg(long, value_name = "DIR")]
    pub image_dir: Option<PathBuf>,
    /// The Debian mirror to debootstrap from.
    #[arg(long, value_name = "URL")]
    pub mirror: Option<String>,
    /// Extra Debian packages (repeatable).
    #[arg(long = "package", value_name = "NAME")]
    pub packages: Vec<String>,
}

/// What `btrfsqa import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKindArg {
    /// An fstests results directory (`result.xml`, `check.log`, per-test files).
    Xfstests,
    /// A btrfs-progs source tree (or its `tests/`) after a test run.
    BtrfsProgs,
}

/// `btrfsqa import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Configuration (for the results store and the site repository).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// What kind of results.
    #[arg(value_enum)]
    pub kind: ImportKindArg,
    /// The directory that holds them.
    pub dir: PathBuf,
    /// btrfs-progs: what the run printed (`make test-cli ... 2>&1 | tee
    /// FILE`). Only the console tells the cases the harness did not run
    /// (`[NOTRUN]`); without it they read as passes.
    #[arg(long, value_name = "FILE")]
    pub console: Option<PathBuf>,
    /// Publish to this git repository too (overrides `publish.site-repo`).
    #[arg(long, value_name = "PATH|URL")]
    pub site_repo: Option<String>,
}

/// How output is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum MessageFormat {
    /// Progress lines on stderr, a summary table on stdout.
    #[default]
    Human,
    /// One JSON event per line on stdout (`{"event":"test-finished",...}`).
    Json,
}

/// Options shared by commands that read the configuration.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (default: the embedded default).
    #[arg(long, short, value_name = "FILE", env = "BTRFSQA_CONFIG")]
    pub config: Option<PathBuf>,
    /// The results store (overrides `run.results-dir`).
    #[arg(long, value_name = "DIR")]
    pub results_dir: Option<PathBuf>,
}

/// `btrfsqa run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where machines come from (overrides `run.provider`).
    #[arg(long, value_name = "PROVIDER", value_parser = ["local", "static", "aws", "qemu"])]
    pub provider: Option<String>,
    /// A suite to run (repeatable; replaces `run.suites`).
    #[arg(long = "suite", value_name = "ID")]
    pub suites: Vec<String>,
    /// An fstests profile to run, one `./check` section each (repeatable;
    /// replaces `suites.xfstests.profiles`): a built-in profile (default,
    /// compress, holes, no-free-space-tree, block-group-tree, nodatacow,
    /// discard, raid, raid56-scrub) or the name of a configured
    /// `[[suites.xfstests.sections]]`. Needs the xfstests suite in the run.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// The git repository that receives the dashboard (overrides `publish.site-repo`).
    #[arg(long, value_name = "PATH|URL")]
    pub site_repo: Option<String>,
    /// Spread the tests over this many machines (overrides `run.shards`).
    #[arg(long, value_name = "N")]
    pub shards: Option<u32>,
    /// Output shape.
    #[arg(long, value_enum, default_value_t)]
    pub message_format: MessageFormat,
}

/// `btrfsqa init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Where to write it.
    #[arg(default_value = "btrfsqa.toml")]
    pub file: PathBuf,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

/// `btrfsqa config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file; exit 2 naming the file, line and key of every problem.
    Check {
        /// The file (default: the embedded default).
        file: Option<PathBuf>,
    },
    /// Print the embedded default configuration.
    Default,
    /// Print the reference of every key of every table (docs/config.md),
    /// made from the configuration types.
    Reference,
}

/// `btrfsqa reap`.
#[derive(Debug, Args)]
pub struct ReapArgs {
    /// Configuration (for provider settings).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Which provider to reap (default: `run.provider`).
    #[arg(long, value_name = "PROVIDER", value_parser = ["local", "static", "aws", "qemu"])]
    pub provider: Option<String>,
    /// Only what this run left.
    #[arg(long, value_name = "RUN_ID")]
    pub run: Option<String>,
    /// List what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// AWS regions to search (repeatable; default `providers.aws.reap-regions`).
    #[arg(long = "region", value_name = "REGION")]
    pub regions: Vec<String>,
}

/// `btrfsqa publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The run to publish.
    pub run_id: String,
    /// The git repository (overrides `publish.site-repo`).
    #[arg(long, value_name = "PATH|URL")]
    pub site_repo: Option<String>,
}

/// `btrfsqa show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The run (default: the newest).
    pub run_id: Option<String>,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `btrfsqa provision`.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Where the machine comes from (overrides `run.provider`).
    #[arg(long, value_name = "PROVIDER", value_parser = ["local", "static", "aws", "qemu"])]
    pub provider: Option<String>,
}

/// `btrfsqa teardown`.
#[derive(Debug, Args)]
pub struct TeardownArgs {
    /// Configuration.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The run whose machines go.
    pub run_id: String,
    /// The provider to ask when the run recorded no machine (default `run.provider`).
    #[arg(long, value_name = "PROVIDER", value_parser = ["local", "static", "aws", "qemu"])]
    pub provider: Option<String>,
}

/// `btrfsqa compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Configuration (results store, known failures).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The baseline run; with only one run given, that run, compared with
    /// its automatic baseline (`expectations.baseline` or the newest earlier
    /// run of its profile on another kernel).
    pub run_a: String,
    /// The run compared with RUN_A.
    pub run_b: Option<String>,
    /// List every test, steady passes too.
    #[arg(long)]
    pub all: bool,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `btrfsqa history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Configuration (results store).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The test's name (`btrfs/011`, `003_raid1-balance`).
    pub test: String,
    /// Only this suite.
    #[arg(long, value_name = "ID")]
    pub suite: Option<String>,
    /// Only this profile (the test's fstests section or the run's `profile` label).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Show at most this many runs, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print the history as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `btrfsqa plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Configuration (suites, and the results store for recorded durations).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// How many machines.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub shards: usize,
    /// Plan the tests of an fstests `check.time` file with its durations
    /// instead of the configured suites.
    #[arg(long, value_name = "FILE")]
    pub durations: Option<PathBuf>,
    /// One line comparing btrfsqa's scheduler with one test per batch,
    /// round-robin and fstests' own order (the last two without set-up
    /// costs), each as makespan / lower bound.
    #[arg(long)]
    pub compare: bool,
    /// Which suites to plan (repeatable; replaces `run.suites`).
    #[arg(long = "suite", value_name = "ID")]
    pub suites: Vec<String>,
    /// The fstests profiles to plan, as `btrfsqa run --profile` (repeatable).
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<String>,
    /// What each batch costs besides its tests, in seconds (default: each
    /// suite's measured set-up).
    #[arg(long, value_name = "SECS")]
    pub setup_secs: Option<f64>,
}

/// `btrfsqa resume`.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Configuration (the same as the run's, normally).
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The run to continue.
    pub run_id: String,
    /// Where the new machine comes from (overrides `run.provider`).
    #[arg(long, value_name = "PROVIDER", value_parser = ["local", "static", "aws", "qemu"])]
    pub provider: Option<String>,
    /// The git repository that receives the dashboard (overrides `publish.site-repo`).
    #[arg(long, value_name = "PATH|URL")]
    pub site_repo: Option<String>,
    /// Output shape.
    #[arg(long, value_enum, default_value_t)]
    pub message_format: MessageFormat,
}
