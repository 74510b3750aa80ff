//! The one table of providers and suites: a provider or a suite is added
//! by one line here (plus its own module in `btrfsqa-cloud` or
//! `btrfsqa-suites`, see CONTRIBUTING.md). Everything else in the runner
//! reaches them through this table and never by name: their config
//! sections ([`Sections`]), their validation, their paths, their
//! constructors and what `watch`, `bisect` and `--profile` ask of them.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use btrfsqa_cloud::{
    AwsProvider, CloudProvider, HostsFileProvider, LocalProvider, ProviderContext, ProviderPlugin,
    ProvisionError, QemuProvider, StaticProvider,
};
use btrfsqa_model::Section;
use btrfsqa_suites::{
    BtrfsProgsTests, Distro, GitSource, ProfileCheck, Raid56Scrub, ScriptSuite, SuitePlugin,
    SuiteSetup, TestSuite, Xfstests,
};

/// Every provider, in the order documentation lists them.
pub static PROVIDERS: &[ProviderEntry] = &[
    ProviderEntry::of::<LocalProvider>(),
    ProviderEntry::of::<StaticProvider>(),
    ProviderEntry::of::<HostsFileProvider>(),
    ProviderEntry::of::<AwsProvider>(),
    ProviderEntry::of::<QemuProvider>(),
];

/// Every suite section, in the order documentation lists them.
pub static SUITES: &[SuiteEntry] = &[
    SuiteEntry::of::<Raid56Scrub>(),
    SuiteEntry::of::<Xfstests>(),
    SuiteEntry::of::<BtrfsProgsTests>(),
    SuiteEntry::of::<ProfileCheck>(),
    SuiteEntry::of::<ScriptSuite>(),
];

/// A future a provider's constructor returns.
pub type MakeProvider<'a> =
    Pin<Box<dyn Future<Output = Result<Arc<dyn CloudProvider>, ProvisionError>> + Send + 'a>>;

/// How the registry reads, checks and keeps one section type.
pub struct SectionKind {
    full_type_name: fn() -> &'static str,
    default: fn() -> Box<dyn AnySection>,
    deserialize: DeserializeFn,
}

type DeserializeFn = for<'a, 'de> fn(
    &'a mut dyn erased_serde::Deserializer<'de>,
) -> Result<Box<dyn AnySection>, erased_serde::Error>;

impl SectionKind {
    const fn of<S: Section>() -> Self {
        SectionKind {
            full_type_name: std::any::type_name::<S>,
            default: default_section::<S>,
            deserialize: deserialize_section::<S>,
        }
    }
}

impl SectionKind {
    /// The Rust type's name, without its path (its `///` docs document
    /// the section).
    pub fn type_name(&self) -> &'static str {
        let full = (self.full_type_name)();
        full.rsplit("::").next().unwrap_or(full)
    }

    /// What `[T.ID]` holds when the file has no such table.
    pub fn default_value(&self) -> Box<dyn AnySection> {
        (self.default)()
    }
}

fn default_section<S: Section>() -> Box<dyn AnySection> {
    Box::new(S::default())
}

fn deserialize_section<S: Section>(
    deserializer: &mut dyn erased_serde::Deserializer<'_>,
) -> Result<Box<dyn AnySection>, erased_serde::Error> {
    Ok(Box::new(erased_serde::deserialize::<S>(deserializer)?))
}

/// One provider.
pub struct ProviderEntry {
    /// Its id (`run.provider`, `[providers.ID]`).
    pub id: &'static str,
    /// Its machines are VMs on virtio devices ([`ProviderPlugin::VIRTIO_GUEST`]).
    pub virtio_guest: bool,
    /// Its section.
    pub section: SectionKind,
    make: for<'a> fn(&'a dyn AnySection, ProviderContext<'a>) -> MakeProvider<'a>,
    check_run: fn(&dyn AnySection, u32) -> Vec<(String, String)>,
}

impl ProviderEntry {
    const fn of<P: ProviderPlugin + 'static>() -> Self {
        ProviderEntry {
            id: P::ID,
            virtio_guest: P::VIRTIO_GUEST,
            section: SectionKind::of::<P::Config>(),
            make: make_provider::<P>,
            check_run: check_run::<P>,
        }
    }

    /// The provider `section` (this entry's section) describes.
    pub fn make<'a>(
        &self,
        section: &'a dyn AnySection,
        context: ProviderContext<'a>,
    ) -> MakeProvider<'a> {
        (self.make)(section, context)
    }

    /// Problems of a run of `shards` machines from it, as `(dotted key, message)`.
    pub fn check_run(&self, section: &dyn AnySection, shards: u32) -> Vec<(String, String)> {
        (self.check_run)(section, shards)
    }
}

fn make_provider<'a, P: ProviderPlugin + 'static>(
    section: &'a dyn AnySection,
    context: ProviderContext<'a>,
) -> MakeProvider<'a> {
    match section.as_any().downcast_ref::<P::Config>() {
        Some(config) => Box::pin(P::make(config, context)),
        None => Box::pin(std::future::ready(Err(ProvisionError::Config {
            provider: P::ID.to_owned(),
            message: "the registry handed it another provider's section".to_owned(),
        }))),
    }
}

fn check_run<P: ProviderPlugin + 'static>(
    section: &dyn AnySection,
    shards: u32,
) -> Vec<(String, String)> {
    section
        .as_any()
        .downcast_ref::<P::Config>()
        .map(|config| P::check_run(config, shards))
        .unwrap_or_default()
}

/// A suite's constructor, over its section.
type MakeSuite = fn(&dyn AnySection, &str, SuiteSetup<'_>) -> Option<Arc<dyn TestSuite>>;

/// `--profile` over a suite's section: `None` when it has no profiles.
type SelectProfiles = fn(&mut dyn AnySection, &[String]) -> Option<Vec<(String, String)>>;

/// One suite section.
pub struct SuiteEntry {
    /// Its section's id (`[suites.ID]`).
    pub id: &'static str,
    /// Its section.
    pub section: SectionKind,
    suite_ids: fn(&dyn AnySection) -> Vec<(String, String)>,
    make: MakeSuite,
    source: fn(&dyn AnySection) -> Option<GitSource>,
    pin_source: fn(&mut dyn AnySection, Option<&str>, &str),
    select_profiles: SelectProfiles,
    machine_packages: fn(Distro) -> &'static [&'static str],
}

impl SuiteEntry {
    const fn of<S: SuitePlugin + 'static>() -> Self {
        SuiteEntry {
            id: S::ID,
            section: SectionKind::of::<S::Config>(),
            suite_ids: |section| {
                typed::<S::Config>(section)
                    .map(S::suite_ids)
                    .unwrap_or_default()
            },
            make: |section, id, setup| S::make(typed::<S::Config>(section)?, id, setup),
            source: |section| typed::<S::Config>(section).and_then(S::source),
            pin_source: |section, url, commit| {
                if let Some(config) = section.as_any_mut().downcast_mut::<S::Config>() {
                    S::pin_source(config, url, commit);
                }
            },
            select_profiles: |section, names| {
                let config = section.as_any_mut().downcast_mut::<S::Config>()?;
                S::select_profiles(config, names)
            },
            machine_packages: S::machine_packages,
        }
    }

    /// The suites `section` makes: `(suite id, key below the section)`.
    pub fn suite_ids(&self, section: &dyn AnySection) -> Vec<(String, String)> {
        (self.suite_ids)(section)
    }

    /// The suite `id` of `section`.
    pub fn make(
        &self,
        section: &dyn AnySection,
        id: &str,
        setup: SuiteSetup<'_>,
    ) -> Option<Arc<dyn TestSuite>> {
        (self.make)(section, id, setup)
    }

    /// The git source the suite is built from, if any.
    pub fn source(&self, section: &dyn AnySection) -> Option<GitSource> {
        (self.source)(section)
    }

    /// Builds the suite from `commit` (of `url` when given) from now on.
    pub fn pin_source(&self, section: &mut dyn AnySection, url: Option<&str>, commit: &str) {
        (self.pin_source)(section, url, commit)
    }

    /// `--profile`: see [`SuitePlugin::select_profiles`].
    pub fn select_profiles(
        &self,
        section: &mut dyn AnySection,
        names: &[String],
    ) -> Option<Vec<(String, String)>> {
        (self.select_profiles)(section, names)
    }
}

fn typed<S: Section>(section: &dyn AnySection) -> Option<&S> {
    section.as_any().downcast_ref::<S>()
}

/// A [`Section`] of any type, as the registry keeps it.
pub trait AnySection: Any + fmt::Debug + Send + Sync {
    /// A copy.
    fn clone_box(&self) -> Box<dyn AnySection>;
    /// [`Section::validate`].
    fn validate(&self) -> Vec<(String, String)>;
    /// [`Section::resolve_paths`].
    fn resolve_paths(&mut self, base: &Path);
    /// For a downcast to the section's type.
    fn as_any(&self) -> &dyn Any;
    /// For a downcast to the section's type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

impl<S: Section> AnySection for S {
    fn clone_box(&self) -> Box<dyn AnySection> {
        Box::new(self.clone())
    }
    fn validate(&self) -> Vec<(String, String)> {
        Section::validate(self)
    }
    fn resolve_paths(&mut self, base: &Path) {
        Section::resolve_paths(self, base)
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Which table a [`Sections`] holds the sections of.
pub trait Table: 'static {
    /// The TOML table: `providers`, `suites`.
    const KEY: &'static str;
    /// The Rust name its docs use.
    const TYPE_NAME: &'static str;
    /// `(id, section kind)` of every entry, in table order.
    fn entries() -> Vec<(&'static str, &'static SectionKind)>;
    /// The ids, once, for serde.
    fn ids() -> &'static [&'static str];
}

/// `[providers]`.
#[derive(Debug)]
pub enum Providers {}

/// `[suites]`.
#[derive(Debug)]
pub enum Suites {}

impl Table for Providers {
    const KEY: &'static str = "providers";
    const TYPE_NAME: &'static str = "ProvidersConfig";
    fn entries() -> Vec<(&'static str, &'static SectionKind)> {
        PROVIDERS.iter().map(|e| (e.id, &e.section)).collect()
    }
    fn ids() -> &'static [&'static str] {
        static IDS: OnceLock<Vec<&'static str>> = OnceLock::new();
        IDS.get_or_init(|| PROVIDERS.iter().map(|e| e.id).collect())
    }
}

impl Table for Suites {
    const KEY: &'static str = "suites";
    const TYPE_NAME: &'static str = "SuitesConfig";
    fn entries() -> Vec<(&'static str, &'static SectionKind)> {
        SUITES.iter().map(|e| (e.id, &e.section)).collect()
    }
    fn ids() -> &'static [&'static str] {
        static IDS: OnceLock<Vec<&'static str>> = OnceLock::new();
        IDS.get_or_init(|| SUITES.iter().map(|e| e.id).collect())
    }
}

/// The sections of one table, every entry's present (its defaults when the
/// file has none), in table order.
pub struct Sections<T: Table> {
    values: Vec<(&'static str, Box<dyn AnySection>)>,
    table: PhantomData<T>,
}

/// `[providers.*]`.
pub type ProviderSections = Sections<Providers>;
/// `[suites.*]`.
pub type SuiteSections = Sections<Suites>;

impl<T: Table> Sections<T> {
    /// The section of type `S`, when an entry has it.
    pub fn get<S: Section>(&self) -> Option<&S> {
        self.values
            .iter()
            .find_map(|(_, value)| value.as_any().downcast_ref())
    }

    /// The section of type `S`, to change it.
    pub fn get_mut<S: Section>(&mut self) -> Option<&mut S> {
        self.values
            .iter_mut()
            .find_map(|(_, value)| value.as_any_mut().downcast_mut())
    }

    /// The section `[T.id]`.
    pub fn by_id(&self, id: &str) -> Option<&dyn AnySection> {
        self.values
            .iter()
            .find(|(key, _)| *key == id)
            .map(|(_, value)| value.as_ref())
    }

    /// The section `[T.id]`, to change it.
    pub fn by_id_mut(&mut self, id: &str) -> Option<&mut dyn AnySection> {
        match self.values.iter_mut().find(|(key, _)| *key == id) {
            Some((_, value)) => Some(value.as_mut()),
            None => None,
        }
    }

    /// Every section, in table order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &dyn AnySection)> {
        self.values.iter().map(|(id, value)| (*id, value.as_ref()))
    }

    /// Every section, to change them.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&'static str, &mut dyn AnySection)> {
        self.values
            .iter_mut()
            .map(|(id, value)| (*id, value.as_mut() as &mut dyn AnySection))
    }
}

impl<T: Table> Default for Sections<T> {
    fn default() -> Self {
        Sections {
            values: T::entries()
                .into_iter()
                .map(|(id, kind)| (id, (kind.default)()))
                .collect(),
            table: PhantomData,
        }
    }
}

impl<T: Table> Clone for Sections<T> {
    fn clone(&self) -> Self {
        Sections {
            values: self
                .values
                .iter()
                .map(|(id, value)| (*id, value.clone_box()))
                .collect(),
            table: PhantomData,
        }
    }
}

/// Like a struct with one field per entry, so the reference reads it as one.
impl<T: Table> fmt::Debug for Sections<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct(T::TYPE_NAME);
        for (id, value) in &self.values {
            out.field(id, value);
        }
        out.finish()
    }
}

impl<'de, T: Table> serde::Deserialize<'de> for Sections<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_struct(T::TYPE_NAME, T::ids(), SectionsVisitor(PhantomData))
    }
}

struct SectionsVisitor<T>(PhantomData<T>);

impl<'de, T: Table> Visitor<'de> for SectionsVisitor<T> {
    type Value = Sections<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table of {} sections", T::KEY)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut sections = Sections::<T>::default();
        while let Some(key) = map.next_key::<String>()? {
            let Some((id, kind)) = T::entries().into_iter().find(|(id, _)| *id == key) else {
                return Err(de::Error::unknown_field(&key, T::ids()));
            };
            let value = map.next_value_seed(SectionSeed(kind))?;
            if let Some(slot) = sections.values.iter_mut().find(|(k, _)| *k == id) {
                slot.1 = value;
            }
        }
        Ok(sections)
    }
}

struct SectionSeed(&'static SectionKind);

impl<'de> DeserializeSeed<'de> for SectionSeed {
    type Value = Box<dyn AnySection>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(deserializer);
        (self.0.deserialize)(&mut erased).map_err(de::Error::custom)
    }
}

/// The provider `id`.
pub fn provider(id: &str) -> Option<&'static ProviderEntry> {
    PROVIDERS.iter().find(|entry| entry.id == id)
}

/// The ids of every provider, for messages.
pub fn provider_ids() -> Vec<&'static str> {
    PROVIDERS.iter().map(|entry| entry.id).collect()
}

/// Every suite the sections make: `(suite id, its entry, its dotted key)`.
pub fn suite_ids(sections: &SuiteSections) -> Vec<(String, &'static SuiteEntry, String)> {
    let mut out = Vec::new();
    for entry in SUITES {
        let Some(section) = sections.by_id(entry.id) else {
            continue;
        };
        for (id, key) in entry.suite_ids(section) {
            let dotted = if key.is_empty() {
                format!("suites.{}", entry.id)
            } else {
                format!("suites.{}.{key}", entry.id)
            };
            out.push((id, entry, dotted));
        }
    }
    out
}

/// What every suite needs on a machine of `distro`, each package once, in
/// the table's order: what a machine image made for the suites holds.
pub fn machine_packages(distro: Distro) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = Vec::new();
    for entry in SUITES {
        for package in (entry.machine_packages)(distro) {
            if !packages.contains(package) {
                packages.push(package);
            }
        }
    }
    packages
}

/// The suite section whose suite has the id `suite`.
pub fn suite_entry(sections: &SuiteSections, suite: &str) -> Option<&'static SuiteEntry> {
    suite_ids(sections)
        .into_iter()
        .find(|(id, _, _)| id == suite)
        .map(|(_, entry, _)| entry)
}

/// The git source of the suite section `[suites.id]`, when it has one.
pub fn suite_source(sections: &SuiteSections, id: &str) -> Option<GitSource> {
    let entry = SUITES.iter().find(|entry| entry.id == id)?;
    entry.source(sections.by_id(id)?)
}

/// Builds the suite of `[suites.id]` from `commit` (of `url` when given);
/// false when that section has no git source.
pub fn pin_suite_source(
    sections: &mut SuiteSections,
    id: &str,
    url: Option<&str>,
    commit: &str,
) -> bool {
    let Some(entry) = SUITES.iter().find(|entry| entry.id == id) else {
        return false;
    };
    let Some(section) = sections.by_id_mut(id) else {
        return false;
    };
    if entry.source(section).is_none() {
        return false;
    }
    entry.pin_source(section, url, commit);
    true
}

/// The ids of the suite sections built from git, for messages.
pub fn suite_source_ids(sections: &SuiteSections) -> Vec<&'static str> {
    SUITES
        .iter()
        .filter(|entry| suite_source(sections, entry.id).is_some())
        .map(|entry| entry.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_section_has_defaults() {
        for ids in [Providers::ids(), Suites::ids()] {
            let mut sorted = ids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), ids.len(), "{ids:?}");
        }
        assert_eq!(ProviderSections::default().iter().count(), PROVIDERS.len());
        assert_eq!(SuiteSections::default().iter().count(), SUITES.len());
    }

    #[test]
    fn the_suites_packages_cover_fstests_and_btrfs_progs() {
        let packages = machine_packages(Distro::Debian);
        for needed in [
            "xfslibs-dev",
            "liburing-dev",
            "fio",
            "dmsetup",
            "btrfs-progs",
        ] {
            assert!(packages.contains(&needed), "{needed}");
        }
        let mut unique = packages.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), packages.len());
    }

    #[test]
    fn a_section_is_read_into_its_owners_type() {
        #[derive(serde::Deserialize)]
        struct File {
            providers: ProviderSections,
        }
        let file: File = toml::from_str("[providers.local]\nwork-dir = \"/w\"\n").unwrap();
        let local = file.providers.get::<btrfsqa_cloud::LocalConfig>().unwrap();
        assert_eq!(local.work_dir, Path::new("/w"));
        let err = toml::from_str::<File>("[providers.nope]\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("unknown field `nope`"), "{err}");
        let err = toml::from_str::<File>("[providers.local]\nwork-dri = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("work-dri"), "{err}");
    }
}
