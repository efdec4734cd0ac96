//! The matcher: which subscriptions want an event, answered from an index by tenant, entity and
//! action instead of a scan over every subscription.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::InvalidSubscription;
use crate::event::{Action, Event};
use crate::filter::{CompiledFilter, Test};
use crate::name::{canonical_entity, canonical_entity_in, Part, Pattern};
use crate::path::{self, Path};
use crate::subscription::{EntityOptions, Profile, State, Subscription};

/// One entity's options, compiled.
#[derive(Debug, Clone)]
struct CompiledEntity {
    filters: Vec<CompiledFilter>,
    options: EntityOptions,
}

impl CompiledEntity {
    /// `on_field_change`: an update that touched none of the watched fields does not fire.
    fn reject_unchanged(&self, probe: &Probe<'_>) -> Result<(), Reject> {
        let watched = &self.options.on_field_change;
        if probe.event.action == Action::Updated && !watched.is_empty() {
            // What changed is unknown when the host gave neither `changed` nor `previous`: fire
            // rather than silently drop an update the receiver may want.
            if let Some(changed) = probe.changed() {
                let touched = watched
                    .iter()
                    .any(|w| changed.iter().any(|c| path::touches(w, c)));
                if !touched {
                    return Err(Reject::FieldNotChanged);
                }
            }
        }
        Ok(())
    }
}

/// An event as the checks read it: with its canonical entity, and with what is costly to derive
/// from it derived at most once, however many candidates ask.
struct Probe<'e> {
    event: &'e Event,
    entity: &'e str,
    changed: OnceCell<Option<Cow<'e, [String]>>>,
}

impl<'e> Probe<'e> {
    fn new(event: &'e Event, entity: &'e str) -> Probe<'e> {
        Probe {
            event,
            entity,
            changed: OnceCell::new(),
        }
    }

    /// [`Event::changed_paths`], diffed once per event rather than once per candidate.
    fn changed(&self) -> Option<&[String]> {
        self.changed
            .get_or_init(|| self.event.changed_paths())
            .as_deref()
    }
}

/// A validated subscription with its patterns parsed and its filters compiled, ready to check
/// events against. Compiling is the only place regexes are built.
#[derive(Debug, Clone)]
pub struct CompiledSubscription {
    subscription: Subscription,
    patterns: Vec<Pattern>,
    /// Keyed by canonical entity. A subscription sets options for few entities, so a short
    /// list beats hashing the entity name for every candidate.
    entities: Vec<(String, CompiledEntity)>,
    /// Whether its vendor counts it ready to fire: an Autotask webhook needs a subscribed
    /// field first ([`crate::vendor::autotask::is_ready`]); every other one is.
    ready: bool,
}

/// Why a subscription does not want an event; what [`Matcher::explain`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    /// The subscription is stopped or has too many errors.
    NotActive(State),
    /// It is scoped to another tenant.
    OtherTenant,
    /// None of its event patterns names the event.
    NoPattern,
    /// The change was made by an excluded actor.
    ExcludedActor(String),
    /// The event carries one of its skip keys.
    SkipKey(String),
    /// A field filter did not pass.
    Filter {
        /// The field path.
        path: String,
        /// The operator.
        op: String,
    },
    /// An update in which none of its `on_field_change` fields changed.
    FieldNotChanged,
    /// An Autotask webhook that is not Ready: it has no subscribed field yet.
    NotReady,
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::NotActive(state) => write!(f, "subscription is {}", state.as_str()),
            Miss::OtherTenant => f.write_str("event is of another tenant"),
            Miss::NoPattern => f.write_str("no event pattern matches"),
            Miss::ExcludedActor(actor) => write!(f, "actor {actor:?} is excluded"),
            Miss::SkipKey(key) => write!(f, "skip key {key:?} is listed"),
            Miss::Filter { path, op } => write!(f, "filter {path} {op} did not pass"),
            Miss::FieldNotChanged => f.write_str("none of the on_field_change fields changed"),
            Miss::NotReady => f.write_str("the Autotask webhook is not Ready: no subscribed field"),
        }
    }
}

impl CompiledSubscription {
    /// Validates and compiles a subscription.
    pub fn compile(
        subscription: Subscription,
    ) -> Result<CompiledSubscription, InvalidSubscription> {
        subscription.validate_fields()?;
        let patterns = subscription.patterns()?;
        let mut entities: Vec<(String, CompiledEntity)> = Vec::new();
        for (entity, options) in &subscription.entities {
            let key = canonical_entity(entity).into_owned();
            if key.is_empty() || entities.iter().any(|(k, _)| *k == key) {
                return Err(InvalidSubscription::BadEntity {
                    entity: entity.clone(),
                });
            }
            let filters = options
                .filters
                .iter()
                .map(|f| CompiledFilter::compile(entity, f))
                .collect::<Result<_, _>>()?;
            entities.push((
                key,
                CompiledEntity {
                    filters,
                    options: options.clone(),
                },
            ));
        }
        let ready = subscription.profile != Profile::Autotask
            || crate::vendor::autotask::has_subscribed_field(&subscription);
        Ok(CompiledSubscription {
            subscription,
            patterns,
            entities,
            ready,
        })
    }

    fn entity(&self, canonical: &str) -> Option<&CompiledEntity> {
        self.entities
            .iter()
            .find(|(k, _)| k == canonical)
            .map(|(_, e)| e)
    }

    /// The subscription as written.
    pub fn subscription(&self) -> &Subscription {
        &self.subscription
    }

    /// The subscription's id.
    pub fn id(&self) -> u64 {
        self.subscription.id
    }

    /// Whether this subscription wants the event, and if not, why.
    pub fn check(&self, event: &Event) -> Result<(), Miss> {
        let entity = event.canonical_entity();
        self.reject(&Probe::new(event, &entity))
            .map_err(|reason| self.explain(reason, event, &entity))
    }

    /// The hot path of matching: says no without allocating; [`Self::explain`] turns the cheap
    /// reason into a [`Miss`] only when someone asks why.
    fn reject(&self, probe: &Probe<'_>) -> Result<(), Reject> {
        let (sub, event) = (&self.subscription, probe.event);
        if sub.state != State::Active {
            return Err(Reject::NotActive);
        }
        if !self.ready {
            return Err(Reject::NotReady);
        }
        if sub.tenant.is_some() && sub.tenant != event.tenant {
            return Err(Reject::OtherTenant);
        }
        let action = event.action.as_str();
        if !self
            .patterns
            .iter()
            .any(|p| p.matches_canonical(probe.entity, action))
        {
            return Err(Reject::NoPattern);
        }
        self.reject_candidate(probe)
    }

    /// The checks the index cannot make: a candidate found in the event's buckets is active,
    /// of the event's tenant, and has a matching pattern by construction.
    fn reject_candidate(&self, probe: &Probe<'_>) -> Result<(), Reject> {
        self.reject_sender(probe.event)?;
        let Some(options) = self.entity(probe.entity) else {
            return Ok(());
        };
        if let Some(failed) = options
            .filters
            .iter()
            .position(|f| !f.passes(&probe.event.data))
        {
            return Err(Reject::Filter(failed));
        }
        options.reject_unchanged(probe)
    }

    /// Whether who made the change, or the request that made it, silences this subscription.
    fn reject_sender(&self, event: &Event) -> Result<(), Reject> {
        let sub = &self.subscription;
        if event
            .actor
            .as_ref()
            .is_some_and(|a| sub.excluded_actors.contains(a))
        {
            return Err(Reject::ExcludedActor);
        }
        if event
            .skip_key
            .as_ref()
            .is_some_and(|k| sub.skip_keys.contains(k))
        {
            return Err(Reject::SkipKey);
        }
        Ok(())
    }

    /// Whether [`Self::reject_sender`] can say no at all; the index skips it when not.
    fn has_senders_listed(&self) -> bool {
        !self.subscription.excluded_actors.is_empty() || !self.subscription.skip_keys.is_empty()
    }

    fn explain(&self, reason: Reject, event: &Event, entity: &str) -> Miss {
        match reason {
            Reject::NotActive => Miss::NotActive(self.subscription.state),
            Reject::OtherTenant => Miss::OtherTenant,
            Reject::NoPattern => Miss::NoPattern,
            Reject::ExcludedActor => Miss::ExcludedActor(event.actor.clone().unwrap_or_default()),
            Reject::SkipKey => Miss::SkipKey(event.skip_key.clone().unwrap_or_default()),
            Reject::Filter(index) => {
                let filter = self.entity(entity).and_then(|e| e.filters.get(index));
                Miss::Filter {
                    path: filter.map_or_else(String::new, |f| f.path().to_string()),
                    op: filter.map_or_else(String::new, |f| f.op().to_string()),
                }
            }
            Reject::FieldNotChanged => Miss::FieldNotChanged,
            Reject::NotReady => Miss::NotReady,
        }
    }

    /// The record's data as this subscription's body carries it: projected to `load_only` plus
    /// `always_fields` when `load_only` is set (nested objects keep their shape), whole otherwise
    /// (borrowed, not copied).
    pub fn shape_data<'e>(&self, event: &'e Event) -> Cow<'e, Value> {
        match self.entity_options(&event.entity) {
            Some(o) if !o.load_only.is_empty() => Cow::Owned(project(
                &event.data,
                o.load_only.iter().chain(&o.always_fields),
            )),
            _ => Cow::Borrowed(&event.data),
        }
    }

    /// The options for the event's entity, if the subscription sets any.
    pub fn entity_options(&self, entity: &str) -> Option<&EntityOptions> {
        // Folded on the stack: it runs for every delivery a publish makes, twice.
        let mut buf = [0u8; 64];
        self.entity(&canonical_entity_in(entity, &mut buf))
            .map(|e| &e.options)
    }
}

/// Keeps only the given dot paths of an object, in the record's own shape.
pub fn project<'a>(data: &Value, paths: impl IntoIterator<Item = &'a String>) -> Value {
    let mut out = Map::new();
    for p in paths {
        path::copy_path(data, &mut out, p);
    }
    Value::Object(out)
}

/// Why a subscription said no, cheaply; see [`Miss`] for the readable form.
#[derive(Debug, Clone, Copy)]
enum Reject {
    NotActive,
    OtherTenant,
    NoPattern,
    ExcludedActor,
    SkipKey,
    Filter(usize),
    FieldNotChanged,
    NotReady,
}

/// Where a subscription is filed in the index.
struct Slot {
    tenant: Option<String>,
    entity: Part,
    action: Part,
}

/// Subscriptions filed under one slot, sorted by id, with the filters of those filed under one
/// entity laid end to end beside them: checking a bucket's candidates reads a few contiguous
/// arrays instead of chasing each subscription's pointers, which are scattered over a heap that
/// grows with the number of subscriptions and so cost more cache and TLB misses the more there are.
#[derive(Debug, Default, Clone)]
struct Bucket {
    candidates: Vec<Candidate>,
    /// The filters of the candidates that have [`Plan::Filters`].
    tests: Vec<(u32, Test)>,
    /// The paths the tests read, by index; the first [`CACHED_FIELDS`] distinct, so that each
    /// is looked up once per event for the whole bucket.
    paths: Vec<Path>,
    /// Tests of removed candidates, reclaimed once they are half of `tests`.
    dead: usize,
}

/// How many of a bucket's paths an event looks up once for all candidates; more distinct paths
/// than that in one bucket are looked up per candidate.
const CACHED_FIELDS: usize = 16;
const _: () = assert!(
    CACHED_FIELDS <= u16::BITS as usize,
    "Fields::known has a bit per field"
);

#[derive(Debug, Clone)]
struct Candidate {
    /// Holding the subscription itself, not its id, spares the hot path a map lookup.
    sub: Arc<CompiledSubscription>,
    /// A copy of the subscription's id, so removal and sorting need not read the subscription.
    id: u64,
    plan: Plan,
}

/// How a candidate is checked against an event found in its bucket.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Filed under any entity: its options depend on the event's entity, so it is checked in
    /// full by [`CompiledSubscription::reject_candidate`].
    Full,
    /// Filed under one entity, whose filters are `tests[start..start + len]` of the bucket.
    Filters {
        start: u32,
        len: u32,
        /// It lists excluded actors or skip keys.
        senders: bool,
        /// It sets `on_field_change` for the entity.
        watches: bool,
    },
}

impl Bucket {
    /// Files a subscription unless it is here already; `entity` is the canonical entity of the
    /// slot, `None` for any.
    fn insert(&mut self, sub: &Arc<CompiledSubscription>, entity: Option<&str>, all: &mut Paths) {
        let id = sub.id();
        let Err(at) = self.candidates.binary_search_by_key(&id, |c| c.id) else {
            return;
        };
        let plan = match entity {
            None => Plan::Full,
            Some(entity) => {
                let start = self.tests.len();
                let options = sub.entity(entity);
                for filter in options.iter().flat_map(|o| &o.filters) {
                    let (path, test) = filter.parts();
                    let path = intern(&mut self.paths, &all.intern(path));
                    self.tests.push((path, test.clone()));
                }
                Plan::Filters {
                    start: index(start),
                    len: index(self.tests.len() - start),
                    senders: sub.has_senders_listed(),
                    watches: options.is_some_and(|o| !o.options.on_field_change.is_empty()),
                }
            }
        };
        self.candidates.insert(
            at,
            Candidate {
                sub: Arc::clone(sub),
                id,
                plan,
            },
        );
    }

    fn remove(&mut self, id: u64) {
        let Ok(at) = self.candidates.binary_search_by_key(&id, |c| c.id) else {
            return;
        };
        if let Plan::Filters { len, .. } = self.candidates.remove(at).plan {
            self.dead += len as usize;
        }
        if self.dead > self.tests.len() / 2 {
            self.compact();
        }
    }

    /// Drops the tests and paths of removed candidates.
    fn compact(&mut self) {
        let tests = std::mem::take(&mut self.tests);
        let paths = std::mem::take(&mut self.paths);
        for candidate in &mut self.candidates {
            if let Plan::Filters { start, len, .. } = &mut candidate.plan {
                let from = *start as usize;
                *start = index(self.tests.len());
                for (path, test) in &tests[from..from + *len as usize] {
                    let path = intern(&mut self.paths, &paths[*path as usize]);
                    self.tests.push((path, test.clone()));
                }
            }
        }
        self.dead = 0;
    }

    fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// Appends the candidates that want the event, in id order; returns whether there were any.
    fn collect<'a>(
        &'a self,
        probe: &Probe<'_>,
        out: &mut Vec<&'a Arc<CompiledSubscription>>,
    ) -> bool {
        let before = out.len();
        let mut fields = Fields::new(&self.paths, &probe.event.data);
        for candidate in &self.candidates {
            let wanted = match candidate.plan {
                Plan::Full => candidate.sub.reject_candidate(probe).is_ok(),
                Plan::Filters {
                    start,
                    len,
                    senders,
                    watches,
                } => {
                    let tests = &self.tests[start as usize..][..len as usize];
                    (!senders || candidate.sub.reject_sender(probe.event).is_ok())
                        && tests
                            .iter()
                            .all(|(path, test)| test.passes(fields.get(*path)))
                        && (!watches
                            || candidate
                                .sub
                                .entity(probe.entity)
                                .is_none_or(|o| o.reject_unchanged(probe).is_ok()))
                }
            };
            if wanted {
                out.push(&candidate.sub);
            }
        }
        out.len() > before
    }
}

/// Every path that the buckets' filters read, one copy each: a bucket keeps the copy it is
/// handed here, so a path read by many buckets sits in one cache line instead of one per bucket.
#[derive(Debug, Default, Clone)]
struct Paths {
    set: HashSet<Path>,
    removals: usize,
}

impl Paths {
    fn intern(&mut self, path: &Path) -> Path {
        if let Some(known) = self.set.get(path.as_str()) {
            return known.clone();
        }
        self.set.insert(path.clone());
        path.clone()
    }

    /// Forgets the paths no bucket holds any more, once per as many removals as there are
    /// paths, so that the sweep costs each removal O(1).
    fn removed(&mut self) {
        self.removals += 1;
        if self.removals > self.set.len() {
            self.set.retain(Path::is_shared);
            self.removals = 0;
        }
    }
}

/// The index of `path` in a bucket's `paths`, added if it is not among the cached ones. Only
/// those are searched, so filing stays cheap in a bucket with many distinct paths.
fn intern(paths: &mut Vec<Path>, path: &Path) -> u32 {
    let cached = &paths[..paths.len().min(CACHED_FIELDS)];
    if let Some(at) = cached.iter().position(|p| p.as_str() == path.as_str()) {
        return index(at);
    }
    paths.push(path.clone());
    index(paths.len() - 1)
}

fn index(i: usize) -> u32 {
    u32::try_from(i).expect("fewer than 2^32 filters in one bucket")
}

/// The event's fields that a bucket's tests read, each looked up at most once.
struct Fields<'b, 'v> {
    paths: &'b [Path],
    data: &'v Value,
    found: [Option<&'v Value>; CACHED_FIELDS],
    /// Bit `i` is set once `found[i]` holds the lookup of `paths[i]`.
    known: u16,
}

impl<'b, 'v> Fields<'b, 'v> {
    fn new(paths: &'b [Path], data: &'v Value) -> Self {
        Fields {
            paths,
            data,
            found: [None; CACHED_FIELDS],
            known: 0,
        }
    }

    fn get(&mut self, path: u32) -> Option<&'v Value> {
        let i = path as usize;
        if i >= CACHED_FIELDS {
            return self.paths[i].lookup(self.data);
        }
        if self.known & (1 << i) == 0 {
            self.found[i] = self.paths[i].lookup(self.data);
            self.known |= 1 << i;
        }
        self.found[i]
    }
}

/// Answers "who wants this event?" for a set of subscriptions.
///
/// Subscriptions are filed by (tenant, entity, action); wildcard patterns go to their own small
/// buckets. An event looks at most eight buckets (its tenant and no tenant, times exact entity
/// and action, entity wildcard, action wildcard, both), so the cost grows with the number of
/// candidates, not with the number of subscriptions. Inserting or removing a subscription touches
/// only its own buckets.
///
/// ```
/// use callout_core::{Event, Matcher, Subscription};
///
/// let mut matcher = Matcher::new();
/// let mut sub = Subscription::new("https://receiver.example/hooks").events(["Contact.*"]);
/// sub.id = 1;
/// matcher.insert(sub).unwrap();
/// let hits = matcher.matches(&Event::created("contact", "42"));
/// assert_eq!(hits.iter().map(|s| s.id()).collect::<Vec<_>>(), [1]);
/// assert!(matcher.matches(&Event::created("Ticket", "1")).is_empty());
/// ```
#[derive(Debug, Default, Clone)]
pub struct Matcher {
    subscriptions: BTreeMap<u64, Arc<CompiledSubscription>>,
    /// Subscriptions for every tenant.
    shared: TenantIndex,
    /// Subscriptions scoped to one tenant.
    tenants: HashMap<String, TenantIndex>,
    paths: Paths,
}

#[derive(Debug, Default, Clone)]
struct TenantIndex {
    /// entity -> action -> subscriptions, for exact patterns.
    exact: HashMap<String, HashMap<String, Bucket>>,
    /// entity -> subscriptions, for `entity.*`.
    any_action: HashMap<String, Bucket>,
    /// action -> subscriptions, for `*.action`.
    any_entity: HashMap<String, Bucket>,
    /// subscriptions of `*`.
    any: Bucket,
}

impl TenantIndex {
    fn bucket(&mut self, entity: &Part, action: &Part) -> &mut Bucket {
        match (entity, action) {
            (Part::Name(e), Part::Name(a)) => self
                .exact
                .entry(e.clone())
                .or_default()
                .entry(a.clone())
                .or_default(),
            (Part::Name(e), Part::Any) => self.any_action.entry(e.clone()).or_default(),
            (Part::Any, Part::Name(a)) => self.any_entity.entry(a.clone()).or_default(),
            (Part::Any, Part::Any) => &mut self.any,
        }
    }

    fn remove(&mut self, entity: &Part, action: &Part, id: u64) {
        fn drop_id<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Bucket>, key: &K, id: u64) {
            if let Some(bucket) = map.get_mut(key) {
                bucket.remove(id);
                if bucket.is_empty() {
                    map.remove(key);
                }
            }
        }
        match (entity, action) {
            (Part::Name(e), Part::Name(a)) => {
                if let Some(by_action) = self.exact.get_mut(e) {
                    drop_id(by_action, a, id);
                    if by_action.is_empty() {
                        self.exact.remove(e);
                    }
                }
            }
            (Part::Name(e), Part::Any) => drop_id(&mut self.any_action, e, id),
            (Part::Any, Part::Name(a)) => drop_id(&mut self.any_entity, a, id),
            (Part::Any, Part::Any) => self.any.remove(id),
        }
    }

    /// The buckets that hold the candidates for an event of this entity and action.
    fn buckets(&self, entity: &str, action: &str) -> [Option<&Bucket>; 4] {
        let exact = self
            .exact
            .get(entity)
            .and_then(|by_action| by_action.get(action));
        [
            exact,
            self.any_action.get(entity),
            self.any_entity.get(action),
            Some(&self.any),
        ]
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.any_action.is_empty()
            && self.any_entity.is_empty()
            && self.any.is_empty()
    }
}

impl Matcher {
    /// An empty matcher.
    pub fn new() -> Matcher {
        Matcher::default()
    }

    /// Builds a matcher from subscriptions; fails on the first invalid one.
    pub fn from_subscriptions(
        subscriptions: impl IntoIterator<Item = Subscription>,
    ) -> Result<Matcher, InvalidSubscription> {
        let mut matcher = Matcher::new();
        for sub in subscriptions {
            matcher.insert(sub)?;
        }
        Ok(matcher)
    }

    /// Adds a subscription, or replaces the one with the same id. Only subscriptions that
    /// cannot fire (inactive, or an Autotask webhook that is not Ready) stay out of the index;
    /// they are kept for [`Matcher::explain`] and [`Matcher::get`].
    pub fn insert(&mut self, subscription: Subscription) -> Result<(), InvalidSubscription> {
        let compiled = Arc::new(CompiledSubscription::compile(subscription)?);
        let id = compiled.id();
        self.remove(id);
        if compiled.subscription.state == State::Active && compiled.ready {
            for slot in slots(&compiled) {
                let index = match slot.tenant {
                    None => &mut self.shared,
                    Some(tenant) => self.tenants.entry(tenant).or_default(),
                };
                let entity = match &slot.entity {
                    Part::Name(e) => Some(e.as_str()),
                    Part::Any => None,
                };
                index
                    .bucket(&slot.entity, &slot.action)
                    .insert(&compiled, entity, &mut self.paths);
            }
        }
        self.subscriptions.insert(id, compiled);
        Ok(())
    }

    /// Removes a subscription; returns it if it was there.
    pub fn remove(&mut self, id: u64) -> Option<Arc<CompiledSubscription>> {
        let old = self.subscriptions.remove(&id)?;
        for slot in slots(&old) {
            match &slot.tenant {
                None => self.shared.remove(&slot.entity, &slot.action, id),
                Some(tenant) => {
                    if let Some(index) = self.tenants.get_mut(tenant) {
                        index.remove(&slot.entity, &slot.action, id);
                        if index.is_empty() {
                            self.tenants.remove(tenant);
                        }
                    }
                }
            }
        }
        self.paths.removed();
        Some(old)
    }

    /// The compiled subscription with this id.
    pub fn get(&self, id: u64) -> Option<&Arc<CompiledSubscription>> {
        self.subscriptions.get(&id)
    }

    /// The ids of the subscriptions the matcher holds, in order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.subscriptions.keys().copied()
    }

    /// How many subscriptions the matcher holds (active or not).
    pub fn len(&self) -> usize {
        self.subscriptions.len()
    }

    /// Whether the matcher holds no subscriptions.
    pub fn is_empty(&self) -> bool {
        self.subscriptions.is_empty()
    }

    /// The subscriptions that want the event, in id order.
    pub fn matches(&self, event: &Event) -> Vec<&Arc<CompiledSubscription>> {
        let mut buf = [0u8; 64];
        let entity = canonical_entity_in(&event.entity, &mut buf);
        let action = event.action.as_str();
        let mut buckets = [None; 8];
        buckets[..4].copy_from_slice(&self.shared.buckets(&entity, action));
        if let Some(index) = event
            .tenant
            .as_deref()
            .and_then(|tenant| self.tenants.get(tenant))
        {
            buckets[4..].copy_from_slice(&index.buckets(&entity, action));
        }
        let candidates: usize = buckets.iter().flatten().map(|b| b.candidates.len()).sum();
        if candidates == 0 {
            return Vec::new();
        }
        // Room for every candidate up front, bounded because a wildcard bucket may hold
        // thousands: one allocation per event in the usual case, not one per doubling.
        let mut hits = Vec::with_capacity(candidates.min(64));
        let probe = Probe::new(event, &entity);
        let sources = buckets
            .iter()
            .flatten()
            .filter(|b| b.collect(&probe, &mut hits))
            .count();
        // One bucket's hits are sorted and unique already; several may overlap, since a
        // subscription with several patterns sits in several buckets.
        if sources > 1 {
            hits.sort_unstable_by_key(|s| s.id());
            hits.dedup_by_key(|s| s.id());
        }
        hits
    }

    /// Every subscription with its verdict on the event, in id order: a scan, for diagnostics
    /// ("why did my webhook not fire?"), not for the publish path.
    pub fn explain(&self, event: &Event) -> Vec<(u64, Result<(), Miss>)> {
        self.subscriptions
            .iter()
            .map(|(id, sub)| (*id, sub.check(event)))
            .collect()
    }
}

fn slots(sub: &CompiledSubscription) -> impl Iterator<Item = Slot> + '_ {
    sub.patterns.iter().map(|p| Slot {
        tenant: sub.subscription.tenant.clone(),
        entity: p.entity.clone(),
        action: p.action.clone(),
    })
}
