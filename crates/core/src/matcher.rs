//! The matcher: which subscriptions want an event, answered from an index by tenant, entity and
//! action instead of a scan over every subscription.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::InvalidSubscription;
use crate::event::{Action, Event};
use crate::filter::CompiledFilter;
use crate::name::{canonical_entity, canonical_entity_in, Part, Pattern};
use crate::path;
use crate::subscription::{EntityOptions, State, Subscription};

/// One entity's options, compiled.
#[derive(Debug, Clone)]
struct CompiledEntity {
    filters: Vec<CompiledFilter>,
    options: EntityOptions,
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
        Ok(CompiledSubscription {
            subscription,
            patterns,
            entities,
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
        self.reject(event, &entity)
            .map_err(|reason| self.explain(reason, event, &entity))
    }

    /// The hot path of matching: says no without allocating; [`Self::explain`] turns the cheap
    /// reason into a [`Miss`] only when someone asks why.
    fn reject(&self, event: &Event, entity: &str) -> Result<(), Reject> {
        let sub = &self.subscription;
        if sub.state != State::Active {
            return Err(Reject::NotActive);
        }
        if sub.tenant.is_some() && sub.tenant != event.tenant {
            return Err(Reject::OtherTenant);
        }
        let action = event.action.as_str();
        if !self
            .patterns
            .iter()
            .any(|p| p.matches_canonical(entity, action))
        {
            return Err(Reject::NoPattern);
        }
        self.reject_candidate(event, entity)
    }

    /// The checks the index cannot make: a candidate found in the event's buckets is active,
    /// of the event's tenant, and has a matching pattern by construction.
    fn reject_candidate(&self, event: &Event, entity: &str) -> Result<(), Reject> {
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
        let Some(options) = self.entity(entity) else {
            return Ok(());
        };
        if let Some(failed) = options.filters.iter().position(|f| !f.passes(&event.data)) {
            return Err(Reject::Filter(failed));
        }
        let watched = &options.options.on_field_change;
        if event.action == Action::Updated && !watched.is_empty() {
            // What changed is unknown when the host gave neither `changed` nor `previous`: fire
            // rather than silently drop an update the receiver may want.
            if let Some(changed) = event.changed_paths() {
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
        }
    }

    /// The record's data as this subscription's body carries it: projected to `load_only` plus
    /// `always_fields` when `load_only` is set (nested objects keep their shape), whole otherwise.
    pub fn shape_data(&self, event: &Event) -> Value {
        match self.entity_options(&event.entity) {
            Some(o) if !o.load_only.is_empty() => {
                project(&event.data, o.load_only.iter().chain(&o.always_fields))
            }
            _ => event.data.clone(),
        }
    }

    /// The options for the event's entity, if the subscription sets any.
    pub fn entity_options(&self, entity: &str) -> Option<&EntityOptions> {
        self.entity(&canonical_entity(entity)).map(|e| &e.options)
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
}

/// Where a subscription is filed in the index.
struct Slot {
    tenant: Option<String>,
    entity: Part,
    action: Part,
}

/// Subscriptions filed under one slot, sorted by id. Holding the subscriptions themselves, not
/// their ids, spares the hot path a map lookup per candidate.
type Bucket = Vec<Arc<CompiledSubscription>>;

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
}

#[derive(Debug, Default, Clone)]
struct TenantIndex {
    /// entity -> action -> ids, for exact patterns.
    exact: HashMap<String, HashMap<String, Bucket>>,
    /// entity -> ids, for `entity.*`.
    any_action: HashMap<String, Bucket>,
    /// action -> ids, for `*.action`.
    any_entity: HashMap<String, Bucket>,
    /// ids of `*`.
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
                bucket.retain(|x| x.id() != id);
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
            (Part::Any, Part::Any) => self.any.retain(|x| x.id() != id),
        }
    }

    /// Appends the event's candidates; returns how many buckets contributed.
    fn candidates<'a>(
        &'a self,
        entity: &str,
        action: &str,
        out: &mut Vec<&'a Arc<CompiledSubscription>>,
    ) -> usize {
        let exact = self
            .exact
            .get(entity)
            .and_then(|by_action| by_action.get(action));
        let buckets = [
            exact,
            self.any_action.get(entity),
            self.any_entity.get(action),
            Some(&self.any),
        ];
        let mut used = 0;
        for bucket in buckets.into_iter().flatten().filter(|b| !b.is_empty()) {
            out.extend(bucket);
            used += 1;
        }
        used
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

    /// Adds a subscription, or replaces the one with the same id. Only inactive subscriptions
    /// stay out of the index; they are kept for [`Matcher::explain`] and [`Matcher::get`].
    pub fn insert(&mut self, subscription: Subscription) -> Result<(), InvalidSubscription> {
        let compiled = Arc::new(CompiledSubscription::compile(subscription)?);
        let id = compiled.id();
        self.remove(id);
        if compiled.subscription.state == State::Active {
            for slot in slots(&compiled) {
                let index = match slot.tenant {
                    None => &mut self.shared,
                    Some(tenant) => self.tenants.entry(tenant).or_default(),
                };
                let bucket = index.bucket(&slot.entity, &slot.action);
                // Buckets stay sorted so candidates come out nearly in id order.
                if let Err(at) = bucket.binary_search_by_key(&id, |s| s.id()) {
                    bucket.insert(at, Arc::clone(&compiled));
                }
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
        Some(old)
    }

    /// The compiled subscription with this id.
    pub fn get(&self, id: u64) -> Option<&Arc<CompiledSubscription>> {
        self.subscriptions.get(&id)
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
        let mut ids = Vec::with_capacity(16);
        let mut buckets = self.shared.candidates(&entity, action, &mut ids);
        if let Some(index) = event
            .tenant
            .as_deref()
            .and_then(|tenant| self.tenants.get(tenant))
        {
            buckets += index.candidates(&entity, action, &mut ids);
        }
        // One bucket is sorted and unique already; several may overlap, since a subscription
        // with several patterns sits in several buckets.
        if buckets > 1 {
            ids.sort_unstable_by_key(|s| s.id());
            ids.dedup_by_key(|s| s.id());
        }
        ids.retain(|sub| sub.reject_candidate(event, &entity).is_ok());
        ids
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
