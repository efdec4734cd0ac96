//! Autotask's SOAP webhook calls (`seeds/autotask-webhook-soap.txt`, ATWS v1.6), at
//! `/autotask/atservices/1.6/atws.asmx`: `create`, `update`, `query` and `delete` envelopes of
//! `{Entity}Webhook` entities (`AccountWebhook`, `ContactWebhook`, `InstalledProductWebhook`,
//! `TicketWebhook`, `TicketNoteWebhook`).
//!
//! Answers are ATWS's `{op}Response` / `{op}Result` (`ReturnCode` 1, `EntityResults`,
//! `EntityResultType`, `Errors`, `EntityReturnInfoResults`). An entity that does not validate
//! makes the whole call fail with `ReturnCode` -1 and an `ATWSError` naming the field, nothing
//! applied; a request that is not a SOAP envelope of a known call is a SOAP fault
//! (`soap:Client`). Both come with a 4xx status, as callout answers every bad request (SOAP 1.1
//! itself would say 500; clients read the body either way). `SecretKey` is never returned.
//!
//! `query` takes ATWS's `sXML` (`<queryxml><entity>..</entity><query><field>name<expression
//! op="equals">value</expression></field></query></queryxml>`, conditions with
//! `operator="OR"` included) and answers at most 500 entities.

use callout::core::vendor::autotask;
use callout::core::Profile;
use callout::store::SubscriptionFilter;
use callout::Subscription;
use http::{Method, Response, StatusCode};
use quick_xml::events::Event as Xml;
use quick_xml::Reader;
use serde_json::{json, Value};

use crate::problem::Problem;
use crate::scope::Scope;
use crate::web::{self, Call};

const ENVELOPE_OPEN: &str = r#"<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>"#;
const ENVELOPE_CLOSE: &str = "</soap:Body></soap:Envelope>";
const ATWS: &str = "http://autotask.net/ATWS/v1_6/";

/// Most entities one query answers, as ATWS.
const QUERY_MAX: usize = 500;

/// One of the SOAP calls callout answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Create,
    Update,
    Query,
    Delete,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Create => "create",
            Operation::Update => "update",
            Operation::Query => "query",
            Operation::Delete => "delete",
        }
    }
}

/// What a call asked: its operation and the raw XML of each `<Entity>` (or the `sXML`).
struct Request<'x> {
    operation: Operation,
    entities: Vec<&'x str>,
    sxml: Option<String>,
}

/// The result of a call that ran.
struct Outcome {
    entities: Vec<Subscription>,
    entity_type: String,
    actions: Vec<(u64, &'static str)>,
}

pub(crate) fn handle(scope: &Scope<'_>, call: &Call<'_>) -> Response<Vec<u8>> {
    if *call.method != Method::POST {
        return fault(Problem::method_not_allowed("POST"));
    }
    let request = match call.text().and_then(parse_envelope) {
        Ok(request) => request,
        Err(problem) => return fault(problem),
    };
    let operation = request.operation;
    match run(scope, &request) {
        Ok(outcome) => result(StatusCode::OK, operation, &outcome, &[]),
        Err(problem) if problem.code == "internal" => fault(problem),
        Err(problem) => {
            let empty = Outcome {
                entities: Vec::new(),
                entity_type: String::new(),
                actions: Vec::new(),
            };
            result(problem.status, operation, &empty, &[problem.message])
        }
    }
}

fn run(scope: &Scope<'_>, request: &Request<'_>) -> Result<Outcome, Problem> {
    match request.operation {
        Operation::Create | Operation::Update => {
            if request.entities.is_empty() {
                return Err(Problem::invalid(
                    "Entities",
                    "Entities: at least one Entity is required",
                ));
            }
            // Every entity is read and checked before any is stored: a bad one applies nothing.
            let mut parsed = Vec::new();
            for (n, xml) in request.entities.iter().enumerate() {
                let sub = autotask::parse_soap(xml).map_err(|e| {
                    let problem = Problem::from(e);
                    Problem {
                        message: format!("Entity {n}: {}", problem.message),
                        ..problem
                    }
                })?;
                parsed.push(sub);
            }
            let entity_type = soap_type(&parsed[0]);
            let mut stored = Vec::new();
            let mut actions = Vec::new();
            if request.operation == Operation::Create {
                for sub in &parsed {
                    refuse_duplicate(scope, sub, None)?;
                }
                for sub in parsed {
                    let created = scope.create(sub, false)?;
                    actions.push((created.id, "Create"));
                    stored.push(created);
                }
            } else {
                let mut checked = Vec::new();
                for sub in parsed {
                    let current = require(scope, sub.id, entity_of(&sub))?;
                    refuse_duplicate(scope, &sub, Some(current.id))?;
                    checked.push((sub, current));
                }
                for (mut sub, current) in checked {
                    if sub.secrets.is_empty() {
                        sub.secrets = current.secrets.clone();
                    }
                    let updated = scope.replace(current.id, sub)?;
                    actions.push((updated.id, "Update"));
                    stored.push(updated);
                }
            }
            Ok(Outcome {
                entities: stored,
                entity_type,
                actions,
            })
        }
        Operation::Delete => {
            let mut targets = Vec::new();
            for (n, xml) in request.entities.iter().enumerate() {
                let (xsi_type, fields) = entity_fields(xml)?;
                let entity = webhook_type(&xsi_type)?;
                let id = fields
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("id"))
                    .and_then(|(_, v)| v.trim().parse::<u64>().ok())
                    .ok_or_else(|| Problem::invalid("id", format!("Entity {n}: id is required")))?;
                targets.push((require(scope, id, Some(entity))?, xsi_type));
            }
            let entity_type = targets
                .first()
                .map(|(_, t)| t.to_ascii_lowercase())
                .unwrap_or_default();
            let mut actions = Vec::new();
            for (sub, _) in targets {
                scope.delete(sub.id)?;
                actions.push((sub.id, "Delete"));
            }
            Ok(Outcome {
                entities: Vec::new(),
                entity_type,
                actions,
            })
        }
        Operation::Query => {
            let sxml = request
                .sxml
                .as_deref()
                .ok_or_else(|| Problem::invalid("sXML", "sXML: the query is required"))?;
            let (xsi_type, filter) = parse_query(sxml)?;
            let entity = webhook_type(&xsi_type)?;
            let mut found = Vec::new();
            for sub in scope.list(&SubscriptionFilter::default())? {
                if entity_of(&sub) != Some(entity) {
                    continue;
                }
                let fields = soap_fields(&sub);
                if crate::autotask::matches(&fields, &filter)? {
                    found.push(sub);
                }
                if found.len() == QUERY_MAX {
                    break;
                }
            }
            Ok(Outcome {
                entities: found,
                entity_type: xsi_type.to_ascii_lowercase(),
                actions: Vec::new(),
            })
        }
    }
}

fn entity_of(sub: &Subscription) -> Option<&'static str> {
    crate::autotask::entity_of(sub)
}

/// `AccountWebhook` -> `Account`.
fn webhook_type(xsi_type: &str) -> Result<&'static str, Problem> {
    xsi_type
        .rsplit(':')
        .next()
        .and_then(|t| {
            t.strip_suffix("Webhook")
                .or_else(|| t.strip_suffix("webhook"))
        })
        .and_then(autotask::webhook_entity)
        .ok_or_else(|| {
            Problem::invalid(
                "entity",
                format!("entity: {xsi_type:?} is not a webhook entity such as AccountWebhook"),
            )
        })
}

fn soap_type(sub: &Subscription) -> String {
    entity_of(sub)
        .map(|e| format!("{e}Webhook").to_ascii_lowercase())
        .unwrap_or_default()
}

fn require(
    scope: &Scope<'_>,
    id: u64,
    entity: Option<&'static str>,
) -> Result<Subscription, Problem> {
    scope
        .get(id)?
        .filter(|s| s.profile == Profile::Autotask && entity_of(s) == entity)
        .ok_or_else(|| Problem::not_found(&format!("webhook with id {id}")).field("id"))
}

fn refuse_duplicate(
    scope: &Scope<'_>,
    sub: &Subscription,
    own: Option<u64>,
) -> Result<(), Problem> {
    let mut mine = scope.list(&SubscriptionFilter::default())?;
    mine.retain(|s| s.profile == Profile::Autotask && Some(s.id) != own);
    match autotask::find_duplicate(sub, &mine) {
        Some(other) => Err(Problem::invalid(
            "WebhookUrl",
            format!(
                "WebhookUrl: webhook {} already calls this URL for the same entity and callout type",
                other.id
            ),
        )),
        None => Ok(()),
    }
}

/// A webhook's fields under their SOAP names, for queries: REST's rendering with `Active`
/// and `Ready` for `IsActive` and `IsReady`, the secret left out.
fn soap_fields(sub: &Subscription) -> Value {
    let mut hidden = sub.clone();
    hidden.secrets.clear();
    let mut rendered = autotask::render_rest(&hidden);
    if let Value::Object(map) = &mut rendered {
        for (rest, soap) in [("IsActive", "Active"), ("IsReady", "Ready")] {
            if let Some(v) = map.remove(rest) {
                map.insert(soap.into(), v);
            }
        }
    }
    rendered
}

/// Reads the envelope: the call in `soap:Body`, and the `<Entity>` elements or the `sXML` in it.
fn parse_envelope(xml: &str) -> Result<Request<'_>, Problem> {
    let bad = |reason: String| Problem::malformed(format!("not a SOAP request: {reason}"));
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut operation = None;
    let mut entities = Vec::new();
    let mut entity_start: Option<(usize, usize)> = None;
    let mut sxml: Option<String> = None;
    let mut in_sxml = false;
    let mut saw_envelope = false;
    loop {
        let before = reader.buffer_position() as usize;
        let event = reader.read_event().map_err(|e| bad(e.to_string()))?;
        match event {
            Xml::Start(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if stack.is_empty() {
                    if name != "Envelope" {
                        return Err(bad(format!(
                            "the document is <{name}>, not a soap:Envelope"
                        )));
                    }
                    saw_envelope = true;
                }
                if stack.len() == 2 && stack[1] == "Body" {
                    operation = Some(match name.as_str() {
                        "create" => Operation::Create,
                        "update" => Operation::Update,
                        "query" => Operation::Query,
                        "delete" => Operation::Delete,
                        other => {
                            return Err(bad(format!(
                                "{other:?} is not a call callout answers (create, update, query, delete)"
                            )))
                        }
                    });
                }
                if operation.is_some() && name == "Entity" && entity_start.is_none() {
                    entity_start = Some((before, stack.len()));
                }
                if operation == Some(Operation::Query) && name == "sXML" {
                    in_sxml = true;
                    sxml = Some(String::new());
                }
                stack.push(name);
            }
            Xml::Empty(start) => {
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                if stack.len() == 2 && stack[1] == "Body" {
                    return Err(bad(format!("<{name}/> carries nothing")));
                }
                if operation.is_some() && name == "Entity" && entity_start.is_none() {
                    entities.push(&xml[before..reader.buffer_position() as usize]);
                }
            }
            Xml::End(_) => {
                stack.pop();
                if let Some((start, depth)) = entity_start {
                    if stack.len() == depth {
                        entities.push(&xml[start..reader.buffer_position() as usize]);
                        entity_start = None;
                    }
                }
                if in_sxml {
                    in_sxml = false;
                }
            }
            Xml::Text(text) if in_sxml => {
                let content = text.xml10_content().map_err(|e| bad(e.to_string()))?;
                if let Some(s) = sxml.as_mut() {
                    s.push_str(&content);
                }
            }
            Xml::CData(text) if in_sxml => {
                let content = text.decode().map_err(|e| bad(e.to_string()))?;
                if let Some(s) = sxml.as_mut() {
                    s.push_str(&content);
                }
            }
            Xml::GeneralRef(r) if in_sxml => {
                let c = match r.decode().as_deref() {
                    Ok("amp") => '&',
                    Ok("lt") => '<',
                    Ok("gt") => '>',
                    Ok("quot") => '"',
                    Ok("apos") => '\'',
                    _ => r
                        .resolve_char_ref()
                        .ok()
                        .flatten()
                        .ok_or_else(|| bad("an unknown entity reference in sXML".into()))?,
                };
                if let Some(s) = sxml.as_mut() {
                    s.push(c);
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if !saw_envelope {
        return Err(bad("no soap:Envelope".into()));
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element".into()));
    }
    let operation = operation.ok_or_else(|| bad("soap:Body holds no call".into()))?;
    Ok(Request {
        operation,
        entities,
        sxml,
    })
}

/// An `<Entity>`'s `xsi:type` and its child elements' text, for `delete` (which needs only
/// the id, where `parse_soap` needs a whole webhook).
fn entity_fields(xml: &str) -> Result<(String, Vec<(String, String)>), Problem> {
    let bad = |reason: String| Problem::malformed(format!("bad Entity: {reason}"));
    let mut reader = Reader::from_str(xml);
    let mut xsi_type = String::new();
    let mut fields = Vec::new();
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    loop {
        match reader.read_event().map_err(|e| bad(e.to_string()))? {
            Xml::Start(start) | Xml::Empty(start) if depth == 0 => {
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| bad(e.to_string()))?;
                    if attr.key.local_name().as_ref() == b"type" {
                        xsi_type = String::from_utf8_lossy(&attr.value).into_owned();
                    }
                }
                depth = 1;
            }
            Xml::Start(start) => {
                if depth == 1 {
                    current =
                        Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
                }
                depth += 1;
            }
            Xml::Text(text) if depth == 2 => {
                if let Some(name) = current.clone() {
                    let content = text.xml10_content().map_err(|e| bad(e.to_string()))?;
                    fields.push((name, content.into_owned()));
                }
            }
            Xml::End(_) => {
                depth = depth.saturating_sub(1);
                if depth == 1 {
                    current = None;
                }
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if xsi_type.is_empty() {
        return Err(Problem::invalid(
            "xsi:type",
            "xsi:type is required on <Entity>",
        ));
    }
    Ok((xsi_type, fields))
}

/// ATWS's `queryxml`: the entity and the condition tree, as one REST filter expression.
fn parse_query(sxml: &str) -> Result<(String, Value), Problem> {
    let mut reader = Reader::from_str(sxml);
    let mut query = QueryXml::default();
    loop {
        match reader
            .read_event()
            .map_err(|e| query_error(e.to_string()))?
        {
            Xml::Start(start) => query.open(&start)?,
            Xml::Empty(start) => {
                query.open(&start)?;
                let name =
                    String::from_utf8_lossy(start.local_name().as_ref()).to_ascii_lowercase();
                query.close(&name)?;
            }
            Xml::Text(text) => {
                let content = text
                    .xml10_content()
                    .map_err(|e| query_error(e.to_string()))?;
                query.text(&content);
            }
            Xml::CData(text) => {
                let content = text.decode().map_err(|e| query_error(e.to_string()))?;
                query.text(&content);
            }
            Xml::End(end) => {
                let name = String::from_utf8_lossy(end.local_name().as_ref()).to_ascii_lowercase();
                query.close(&name)?;
            }
            Xml::Eof => break,
            _ => {}
        }
    }
    if query.entity.is_empty() {
        return Err(query_error("<entity> is required".into()));
    }
    let filter = query
        .result
        .unwrap_or_else(|| json!({"op": "and", "items": []}));
    Ok((query.entity, filter))
}

fn query_error(reason: String) -> Problem {
    Problem::invalid("sXML", format!("sXML: {reason}"))
}

/// What has been read of a `queryxml`.
#[derive(Default)]
struct QueryXml {
    entity: String,
    in_entity: bool,
    /// Open groups (the query, then nested conditions): whether OR, and their expressions.
    groups: Vec<(bool, Vec<Value>)>,
    /// The open field: its name and its expressions (ANDed).
    field: Option<(String, Vec<Value>)>,
    /// The open expression: its op and value.
    expression: Option<(String, String)>,
    result: Option<Value>,
}

impl QueryXml {
    fn open(&mut self, start: &quick_xml::events::BytesStart<'_>) -> Result<(), Problem> {
        let name = String::from_utf8_lossy(start.local_name().as_ref()).to_ascii_lowercase();
        let attr = |wanted: &str| -> Result<Option<String>, Problem> {
            for attr in start.attributes() {
                let attr = attr.map_err(|e| query_error(e.to_string()))?;
                if attr
                    .key
                    .local_name()
                    .as_ref()
                    .eq_ignore_ascii_case(wanted.as_bytes())
                {
                    return Ok(Some(String::from_utf8_lossy(&attr.value).into_owned()));
                }
            }
            Ok(None)
        };
        match name.as_str() {
            "queryxml" => {}
            "entity" => self.in_entity = true,
            "query" => self.groups.push((false, Vec::new())),
            "condition" => {
                let or = attr("operator")?.is_some_and(|o| o.eq_ignore_ascii_case("or"));
                self.groups.push((or, Vec::new()));
            }
            "field" => self.field = Some((String::new(), Vec::new())),
            "expression" => {
                let op = attr("op")?.ok_or_else(|| query_error("an expression needs op".into()))?;
                self.expression = Some((op, String::new()));
            }
            other => return Err(query_error(format!("<{other}> is not part of queryxml"))),
        }
        Ok(())
    }

    fn text(&mut self, content: &str) {
        if self.in_entity {
            self.entity.push_str(content.trim());
        } else if let Some((_, value)) = self.expression.as_mut() {
            value.push_str(content);
        } else if let Some((name, _)) = self.field.as_mut() {
            name.push_str(content.trim());
        }
    }

    fn close(&mut self, name: &str) -> Result<(), Problem> {
        match name {
            "entity" => self.in_entity = false,
            "expression" => {
                let (op, value) = self
                    .expression
                    .take()
                    .ok_or_else(|| query_error("a stray </expression>".into()))?;
                let (field, list) = self
                    .field
                    .as_mut()
                    .ok_or_else(|| query_error("an expression outside a field".into()))?;
                let rest = match op.to_ascii_lowercase().as_str() {
                    "equals" => "eq",
                    "notequal" => "noteq",
                    "greaterthan" => "gt",
                    "lessthan" => "lt",
                    "greaterthanorequals" => "gte",
                    "lessthanorequals" => "lte",
                    "beginswith" => "beginsWith",
                    "endswith" => "endsWith",
                    "contains" => "contains",
                    "isnull" => "notExist",
                    "isnotnull" => "exist",
                    other => return Err(query_error(format!("op {other:?} is not supported"))),
                };
                list.push(json!({"op": rest, "field": field.clone(), "value": value.trim()}));
            }
            "field" => {
                let (_, list) = self
                    .field
                    .take()
                    .ok_or_else(|| query_error("a stray </field>".into()))?;
                let group = self
                    .groups
                    .last_mut()
                    .ok_or_else(|| query_error("a field outside the query".into()))?;
                group.1.push(json!({"op": "and", "items": list}));
            }
            "condition" | "query" => {
                let (or, items) = self
                    .groups
                    .pop()
                    .ok_or_else(|| query_error(format!("a stray </{name}>")))?;
                let expression = json!({"op": if or { "or" } else { "and" }, "items": items});
                match self.groups.last_mut() {
                    Some(parent) => parent.1.push(expression),
                    None => self.result = Some(expression),
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn entity_xml(sub: &Subscription) -> String {
    let mut hidden = sub.clone();
    hidden.secrets.clear();
    autotask::render_soap(&hidden).unwrap_or_default()
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// ATWS's result envelope.
fn result(
    status: StatusCode,
    operation: Operation,
    outcome: &Outcome,
    errors: &[String],
) -> Response<Vec<u8>> {
    let op = operation.name();
    let mut body = String::from(ENVELOPE_OPEN);
    body.push_str(&format!(r#"<{op}Response xmlns="{ATWS}"><{op}Result>"#));
    body.push_str(&format!(
        "<ReturnCode>{}</ReturnCode>",
        if errors.is_empty() { 1 } else { -1 }
    ));
    body.push_str("<EntityResults>");
    for sub in &outcome.entities {
        body.push_str(&entity_xml(sub));
    }
    body.push_str("</EntityResults>");
    body.push_str(&format!(
        "<EntityResultType>{}</EntityResultType>",
        xml_escape(&outcome.entity_type)
    ));
    body.push_str("<Errors>");
    for error in errors {
        body.push_str(&format!(
            "<ATWSError><Message>{}</Message></ATWSError>",
            xml_escape(error)
        ));
    }
    body.push_str("</Errors>");
    body.push_str("<EntityReturnInfoResults>");
    for (id, action) in &outcome.actions {
        body.push_str(&format!(
            "<EntityReturnInfo><EntityId>{id}</EntityId><DatabaseAction>{action}</DatabaseAction><DuplicateStatus><Found>false</Found><Ignored>false</Ignored><MergedIntoParent>false</MergedIntoParent></DuplicateStatus><Message/></EntityReturnInfo>"
        ));
    }
    body.push_str("</EntityReturnInfoResults>");
    body.push_str(&format!("</{op}Result></{op}Response>"));
    body.push_str(ENVELOPE_CLOSE);
    web::xml(status, body)
}

/// A SOAP fault: `soap:Client` for the caller's mistakes, `soap:Server` for the engine's.
pub(crate) fn fault(problem: Problem) -> Response<Vec<u8>> {
    let code = if problem.status.is_server_error() {
        "soap:Server"
    } else {
        "soap:Client"
    };
    let body = format!(
        "{ENVELOPE_OPEN}<soap:Fault><faultcode>{code}</faultcode><faultstring>{}</faultstring><detail/></soap:Fault>{ENVELOPE_CLOSE}",
        xml_escape(&problem.message)
    );
    Problem::finish(problem.allow, web::xml(problem.status, body))
}
