//! A small OpenAPI 3.0 validator, so tests can hold JSON bodies (and request targets) against
//! the DigitalOcean contract in `tests/fixtures/digitalocean/openapi-subset.json`.
//!
//! It covers what the contract uses: `$ref` into `#/components`, `type`, `nullable`, `enum`,
//! `properties`, `required`, `additionalProperties`, `items`, `allOf`/`anyOf`/`oneOf`/`not`,
//! `discriminator` (with or without `mapping`), `readOnly`/`writeOnly`, string length, `pattern`
//! and formats (`date-time`, `date`, `ipv4`, `ipv6`, `uuid`, `uri`, `email`, `int32`, `int64`),
//! numeric bounds and `multipleOf`, array size and uniqueness. Unknown formats are accepted, as
//! the specification allows.
//!
//! Requests are checked more strictly than responses: a request must not send read-only
//! properties, and by default must not send properties that no schema declares (a misspelt
//! field is otherwise silently ignored by the server). Responses may carry extra fields, as
//! DigitalOcean's do, unless [`Options::strict`] is asked for.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

/// Which way a body travels: decides how `readOnly`, `writeOnly` and `required` apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub direction: Direction,
    /// Reject object properties that no applicable schema declares (like JSON Schema's
    /// `unevaluatedProperties: false`). Objects whose schemas declare no properties at all are
    /// free-form and exempt.
    pub reject_unknown_properties: bool,
}

impl Options {
    pub fn request() -> Options {
        Options {
            direction: Direction::Request,
            reject_unknown_properties: true,
        }
    }

    pub fn response() -> Options {
        Options {
            direction: Direction::Response,
            reject_unknown_properties: false,
        }
    }

    pub fn strict(self) -> Options {
        Options {
            reject_unknown_properties: true,
            ..self
        }
    }
}

/// One way a value fails its schema, at a JSON pointer into the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub at: String,
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.at.is_empty() {
            "(root)"
        } else {
            &self.at
        };
        write!(f, "{at}: {}", self.message)
    }
}

/// Renders violations one per line, for assertion messages.
pub fn report(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// A loaded OpenAPI document.
pub struct Spec {
    doc: Value,
    patterns: Mutex<HashMap<String, Option<regex::Regex>>>,
}

/// Operation keys of a path item, with the method names they stand for.
const METHODS: [(&str, &str); 8] = [
    ("get", "GET"),
    ("put", "PUT"),
    ("post", "POST"),
    ("delete", "DELETE"),
    ("options", "OPTIONS"),
    ("head", "HEAD"),
    ("patch", "PATCH"),
    ("trace", "TRACE"),
];

/// Guards against `$ref` cycles that never reach a value.
const MAX_DEPTH: usize = 128;

impl Spec {
    /// The DigitalOcean contract, loaded once per test binary.
    pub fn contract() -> &'static Spec {
        static CONTRACT: OnceLock<Spec> = OnceLock::new();
        CONTRACT.get_or_init(|| {
            let path = fixtures_dir().join("openapi-subset.json");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let doc = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
            Spec::from_value(doc)
        })
    }

    pub fn from_value(doc: Value) -> Spec {
        Spec {
            doc,
            patterns: Mutex::new(HashMap::new()),
        }
    }

    /// `#/components/schemas/<name>`.
    pub fn schema(&self, name: &str) -> Option<&Value> {
        self.doc.get("components")?.get("schemas")?.get(name)
    }

    /// Follows a chain of `$ref`s to the node it ends at.
    pub fn resolve<'a>(&'a self, mut node: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_DEPTH {
            match node.get("$ref").and_then(Value::as_str) {
                Some(reference) => node = self.pointer(reference)?,
                None => return Ok(node),
            }
        }
        Err("`$ref` chain too long (a cycle?)".into())
    }

    fn pointer(&self, reference: &str) -> Result<&Value, String> {
        let pointer = reference
            .strip_prefix('#')
            .ok_or_else(|| format!("only local `$ref`s are supported, not `{reference}`"))?;
        self.doc
            .pointer(pointer)
            .ok_or_else(|| format!("`$ref` `{reference}` points at nothing"))
    }

    /// Every operation, in document order.
    pub fn operations(&self) -> Vec<Operation<'_>> {
        let Some(paths) = self.doc.get("paths").and_then(Value::as_object) else {
            return Vec::new();
        };
        let mut operations = Vec::new();
        for (template, item) in paths {
            for (key, method) in METHODS {
                if let Some(node) = item.get(key) {
                    operations.push(Operation {
                        spec: self,
                        method,
                        template,
                        path_item: item,
                        node,
                    });
                }
            }
        }
        operations
    }

    /// The operation for `method` (any case) on the path template, e.g.
    /// `("post", "/v2/droplets/{droplet_id}/actions")`.
    pub fn operation(&self, method: &str, template: &str) -> Option<Operation<'_>> {
        self.operations()
            .into_iter()
            .find(|op| op.method.eq_ignore_ascii_case(method) && op.template == template)
    }

    /// The operation a concrete request target (`/v2/droplets/42?tag_name=x`) belongs to. When
    /// several templates match, the one with the most literal segments wins.
    pub fn find(&self, method: &str, target: &str) -> Option<Operation<'_>> {
        let path = target.split('?').next().unwrap_or("");
        self.operations()
            .into_iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method))
            .filter_map(|op| {
                let literals = match_template(op.template, path)?.1;
                Some((literals, op))
            })
            .max_by_key(|(literals, _)| *literals)
            .map(|(_, op)| op)
    }

    /// Checks `value` against `schema` (which may be a `$ref`).
    pub fn validate(
        &self,
        schema: &Value,
        value: &Value,
        options: Options,
    ) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        let validator = Validator {
            spec: self,
            options,
        };
        validator.location(schema, value, "", &mut violations, 0);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    fn regex(&self, pattern: &str) -> Option<regex::Regex> {
        let mut cache = self.patterns.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .entry(pattern.to_owned())
            .or_insert_with(|| regex::Regex::new(pattern).ok())
            .clone()
    }
}

/// `tests/fixtures/digitalocean`.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/digitalocean")
}

/// One operation (method + path template) of the document.
#[derive(Clone, Copy)]
pub struct Operation<'s> {
    spec: &'s Spec,
    /// Upper case: `GET`, `POST`, ...
    pub method: &'static str,
    pub template: &'s str,
    path_item: &'s Value,
    node: &'s Value,
}

impl<'s> Operation<'s> {
    pub fn id(&self) -> &'s str {
        self.node
            .get("operationId")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// The operation object itself.
    pub fn node(&self) -> &'s Value {
        self.node
    }

    /// `POST /v2/droplets (droplets_create)`, for messages.
    pub fn name(&self) -> String {
        format!("{} {} ({})", self.method, self.template, self.id())
    }

    /// The JSON schema of the request body, if the operation takes one.
    pub fn request_schema(&self) -> Option<&'s Value> {
        let body = self.spec.resolve(self.node.get("requestBody")?).ok()?;
        json_schema(self.spec, body)
    }

    /// The response declared for `status` (exact, then `4XX`-style, then `default`).
    pub fn response(&self, status: u16) -> Result<&'s Value, String> {
        let responses = self
            .node
            .get("responses")
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{} declares no responses", self.name()))?;
        let exact = status.to_string();
        let family = format!("{}XX", status / 100);
        let declared = responses
            .get(&exact)
            .or_else(|| responses.get(&family))
            .or_else(|| responses.get(&family.to_lowercase()))
            .or_else(|| responses.get("default"))
            .ok_or_else(|| format!("{} declares no response for {status}", self.name()))?;
        self.spec.resolve(declared)
    }

    /// The JSON schema of the response body for `status`; `None` if that response has no body.
    pub fn response_schema(&self, status: u16) -> Result<Option<&'s Value>, String> {
        Ok(json_schema(self.spec, self.response(status)?))
    }

    /// Checks a request body (strictly: see [`Options::request`]).
    pub fn validate_request(&self, body: &Value) -> Result<(), Vec<Violation>> {
        let Some(schema) = self.request_schema() else {
            return Err(vec![Violation {
                at: String::new(),
                message: format!("{} takes no JSON request body", self.name()),
            }]);
        };
        self.spec.validate(schema, body, Options::request())
    }

    /// Checks a response body for `status`.
    pub fn validate_response(
        &self,
        status: u16,
        body: &Value,
        options: Options,
    ) -> Result<(), Vec<Violation>> {
        let violation = |message: String| {
            vec![Violation {
                at: String::new(),
                message,
            }]
        };
        match self.response_schema(status).map_err(violation)? {
            Some(schema) => self.spec.validate(schema, body, options),
            None => Err(violation(format!(
                "{} declares no body for {status}",
                self.name()
            ))),
        }
    }

    /// Checks a request target (`/v2/droplets/42?per_page=200`): it matches the template, every
    /// path parameter and query parameter is declared and valid, and required ones are there.
    pub fn validate_target(&self, target: &str) -> Result<(), Vec<Violation>> {
        let mut violations = Vec::new();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some((path_values, _)) = match_template(self.template, path) else {
            return Err(vec![Violation {
                at: String::new(),
                message: format!("`{path}` does not match `{}`", self.template),
            }]);
        };
        let parameters = self.parameters();
        let mut query_values: Vec<(String, String)> = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            query_values.push((percent_decode(name, true), percent_decode(value, true)));
        }
        for (name, _) in &query_values {
            if !parameters
                .iter()
                .any(|p| p.location == "query" && p.name == *name)
            {
                violations.push(Violation {
                    at: format!("?{name}"),
                    message: format!(
                        "query parameter `{name}` is not declared by {}",
                        self.name()
                    ),
                });
            }
        }
        for parameter in &parameters {
            let raw = match parameter.location {
                "path" => path_values.get(parameter.name).cloned(),
                "query" => query_values
                    .iter()
                    .find(|(name, _)| name == parameter.name)
                    .map(|(_, value)| value.clone()),
                _ => continue,
            };
            let at = match parameter.location {
                "path" => format!("{{{}}}", parameter.name),
                _ => format!("?{}", parameter.name),
            };
            match raw {
                None if parameter.required => violations.push(Violation {
                    at,
                    message: format!("required {} parameter is missing", parameter.location),
                }),
                None => {}
                Some(raw) => {
                    if let Err(errors) = self.validate_raw(parameter.schema, &raw) {
                        violations.extend(errors.into_iter().map(|v| Violation {
                            at: at.clone(),
                            message: format!("`{raw}`: {}", v.message),
                        }));
                    }
                }
            }
        }
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    /// Parameters that apply: the path item's, overridden by the operation's.
    fn parameters(&self) -> Vec<Parameter<'s>> {
        let mut parameters: Vec<Parameter<'s>> = Vec::new();
        for list in [
            self.path_item.get("parameters"),
            self.node.get("parameters"),
        ]
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        {
            for node in list {
                let Ok(node) = self.spec.resolve(node) else {
                    continue;
                };
                let name = node.get("name").and_then(Value::as_str).unwrap_or("");
                let location = node.get("in").and_then(Value::as_str).unwrap_or("");
                let parameter = Parameter {
                    name,
                    location,
                    required: node.get("required").and_then(Value::as_bool) == Some(true),
                    schema: node.get("schema").unwrap_or(&Value::Bool(true)),
                };
                parameters.retain(|p| !(p.name == name && p.location == location));
                parameters.push(parameter);
            }
        }
        parameters
    }

    /// A parameter arrives as text: it is valid if some JSON reading of the text is.
    fn validate_raw(&self, schema: &Value, raw: &str) -> Result<(), Vec<Violation>> {
        let mut candidates = Vec::new();
        if let Ok(number) = raw.parse::<i64>() {
            candidates.push(Value::from(number));
        } else if let Ok(number) = raw.parse::<u64>() {
            candidates.push(Value::from(number));
        } else if let Some(number) = raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
        {
            candidates.push(Value::Number(number));
        }
        if raw == "true" || raw == "false" {
            candidates.push(Value::Bool(raw == "true"));
        }
        candidates.push(Value::String(raw.to_owned()));
        let mut last = Vec::new();
        for candidate in candidates {
            match self.spec.validate(schema, &candidate, Options::request()) {
                Ok(()) => return Ok(()),
                Err(violations) => last = violations,
            }
        }
        Err(last)
    }
}

struct Parameter<'s> {
    name: &'s str,
    location: &'s str,
    required: bool,
    schema: &'s Value,
}

/// The `application/json` schema of a request body or response; `{}` if it has JSON content
/// without a schema, `None` if it has no JSON content.
fn json_schema<'s>(spec: &'s Spec, node: &'s Value) -> Option<&'s Value> {
    static ANYTHING: OnceLock<Value> = OnceLock::new();
    let media = node.get("content")?.get("application/json")?;
    let media = spec.resolve(media).ok()?;
    Some(
        media
            .get("schema")
            .unwrap_or_else(|| ANYTHING.get_or_init(|| Value::Object(Map::new()))),
    )
}

/// Matches `/v2/droplets/42` against `/v2/droplets/{droplet_id}`: the path parameters
/// (percent-decoded) and how many segments matched literally.
fn match_template<'t>(template: &'t str, path: &str) -> Option<(HashMap<&'t str, String>, usize)> {
    let template_segments: Vec<&str> = template.trim_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if template_segments.len() != path_segments.len() {
        return None;
    }
    let mut values = HashMap::new();
    let mut literals = 0;
    for (expected, actual) in template_segments.iter().zip(&path_segments) {
        if let Some(name) = expected
            .strip_prefix('{')
            .and_then(|rest| rest.strip_suffix('}'))
        {
            if actual.is_empty() {
                return None;
            }
            values.insert(name, percent_decode(actual, false));
        } else if expected == actual {
            literals += 1;
        } else {
            return None;
        }
    }
    Some((values, literals))
}

fn percent_decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What the schemas applied at one object location declared, for unknown-property checks.
#[derive(Default)]
struct Seen {
    properties: BTreeSet<String>,
    /// `additionalProperties` accepted everything else.
    everything: bool,
    /// Some schema here declared `properties` or `additionalProperties`.
    declares: bool,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        self.properties.extend(other.properties);
        self.everything |= other.everything;
        self.declares |= other.declares;
    }
}

struct Validator<'s> {
    spec: &'s Spec,
    options: Options,
}

impl Validator<'_> {
    /// Validates the value at a new instance location, then checks its unknown properties.
    fn location(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
    ) {
        let seen = self.check(schema, value, at, out, depth);
        if !self.options.reject_unknown_properties || !seen.declares || seen.everything {
            return;
        }
        if let Value::Object(object) = value {
            for key in object.keys() {
                if !seen.properties.contains(key) {
                    out.push(violation(
                        &format!("{at}/{}", escape(key)),
                        format!("unknown property `{key}`: the schema does not declare it"),
                    ));
                }
            }
        }
    }

    fn check(
        &self,
        schema: &Value,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
    ) -> Seen {
        let mut seen = Seen::default();
        if depth > MAX_DEPTH {
            out.push(violation(
                at,
                "schema nesting too deep (a `$ref` cycle?)".into(),
            ));
            return seen;
        }
        let schema = match schema {
            Value::Bool(true) => {
                seen.everything = true;
                return seen;
            }
            Value::Bool(false) => {
                out.push(violation(at, "no value is allowed here".into()));
                return seen;
            }
            Value::Object(schema) => schema,
            _ => {
                out.push(violation(at, format!("schema is not an object: {schema}")));
                return seen;
            }
        };
        // OpenAPI 3.0: a `$ref` replaces the whole schema object; siblings are ignored.
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            match self.spec.pointer(reference) {
                Ok(target) => return self.check(target, value, at, out, depth + 1),
                Err(message) => {
                    out.push(violation(at, message));
                    return seen;
                }
            }
        }

        if value.is_null() {
            if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
                return seen;
            }
            if schema.contains_key("type") {
                out.push(violation(
                    at,
                    "is null, but the schema is not nullable".into(),
                ));
                return seen;
            }
        }

        if let Some(expected) = schema.get("type").and_then(Value::as_str) {
            if !has_type(value, expected) {
                out.push(violation(
                    at,
                    format!("expected {expected}, found {}", kind(value)),
                ));
                return seen;
            }
        }

        if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
            if !choices.iter().any(|choice| same(choice, value)) {
                out.push(violation(
                    at,
                    format!(
                        "{} is not one of {}",
                        short(value),
                        Value::Array(choices.clone())
                    ),
                ));
            }
        }

        match value {
            Value::Object(object) => self.object(schema, object, at, out, depth, &mut seen),
            Value::Array(items) => self.array(schema, items, at, out, depth),
            Value::String(text) => self.string(schema, text, at, out),
            Value::Number(number) => number_rules(schema, number, at, out),
            _ => {}
        }

        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                seen.merge(self.check(sub, value, at, out, depth + 1));
            }
        }

        let handled_by_discriminator = self.discriminator(schema, value, at, out, depth, &mut seen);
        if !handled_by_discriminator {
            if let Some(any) = schema.get("anyOf").and_then(Value::as_array) {
                let mut failures = Vec::new();
                let mut passed = false;
                for (index, sub) in any.iter().enumerate() {
                    let mut branch = Vec::new();
                    let branch_seen = self.check(sub, value, at, &mut branch, depth + 1);
                    if branch.is_empty() {
                        passed = true;
                        seen.merge(branch_seen);
                    } else {
                        failures.push(summary(index, &branch));
                    }
                }
                if !passed {
                    out.push(violation(
                        at,
                        format!(
                            "matches none of the anyOf alternatives: {}",
                            failures.join("; ")
                        ),
                    ));
                }
            }
            if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
                let mut failures = Vec::new();
                let mut passing = Vec::new();
                for (index, sub) in one.iter().enumerate() {
                    let mut branch = Vec::new();
                    let branch_seen = self.check(sub, value, at, &mut branch, depth + 1);
                    if branch.is_empty() {
                        passing.push((index, branch_seen));
                    } else {
                        failures.push(summary(index, &branch));
                    }
                }
                match passing.len() {
                    1 => seen.merge(passing.pop().expect("one").1),
                    0 => out.push(violation(
                        at,
                        format!(
                            "matches none of the oneOf alternatives: {}",
                            failures.join("; ")
                        ),
                    )),
                    _ => out.push(violation(
                        at,
                        format!(
                            "matches more than one oneOf alternative ({:?})",
                            passing.iter().map(|(i, _)| *i).collect::<Vec<_>>()
                        ),
                    )),
                }
            }
        }

        if let Some(not) = schema.get("not") {
            let mut branch = Vec::new();
            self.check(not, value, at, &mut branch, depth + 1);
            if branch.is_empty() {
                out.push(violation(
                    at,
                    "matches a schema it must not match (`not`)".into(),
                ));
            }
        }
        seen
    }

    /// `discriminator` beside `anyOf`/`oneOf`: the named property picks the one schema the
    /// value must match. Returns whether it applied (then the alternatives are not tried).
    fn discriminator(
        &self,
        schema: &Map<String, Value>,
        value: &Value,
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
        seen: &mut Seen,
    ) -> bool {
        let Some(discriminator) = schema.get("discriminator") else {
            return false;
        };
        let Some(alternatives) = schema
            .get("anyOf")
            .or_else(|| schema.get("oneOf"))
            .and_then(Value::as_array)
        else {
            // On a base schema reached through `allOf`, a discriminator describes subtypes and
            // constrains nothing by itself.
            return false;
        };
        let Value::Object(object) = value else {
            return false;
        };
        let property = discriminator
            .get("propertyName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(tag) = object.get(property).and_then(Value::as_str) else {
            out.push(violation(
                at,
                format!("discriminator property `{property}` is missing or not a string"),
            ));
            return true;
        };
        let mapped = discriminator
            .get("mapping")
            .and_then(|m| m.get(tag))
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| {
                // Without a mapping entry, the value names a schema among the alternatives.
                let implicit = format!("#/components/schemas/{tag}");
                alternatives
                    .iter()
                    .any(|a| a.get("$ref").and_then(Value::as_str) == Some(&implicit))
                    .then_some(implicit)
            });
        let Some(reference) = mapped else {
            out.push(violation(
                &format!("{at}/{}", escape(property)),
                format!("`{tag}` is not a known `{property}` here"),
            ));
            return true;
        };
        match self.spec.pointer(&reference) {
            Ok(target) => seen.merge(self.check(target, value, at, out, depth + 1)),
            Err(message) => out.push(violation(at, message)),
        }
        true
    }

    fn object(
        &self,
        schema: &Map<String, Value>,
        object: &Map<String, Value>,
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
        seen: &mut Seen,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            seen.declares = true;
            for (name, sub) in properties {
                seen.properties.insert(name.clone());
                let Some(item) = object.get(name) else {
                    continue;
                };
                let item_at = format!("{at}/{}", escape(name));
                match self.options.direction {
                    Direction::Request if self.flag(sub, "readOnly") => out.push(violation(
                        &item_at,
                        "is read-only: a request must not send it".into(),
                    )),
                    Direction::Response if self.flag(sub, "writeOnly") => out.push(violation(
                        &item_at,
                        "is write-only: a response must not contain it".into(),
                    )),
                    _ => {}
                }
                self.location(sub, item, &item_at, out, depth + 1);
            }
        }

        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if object.contains_key(name) {
                    continue;
                }
                // OpenAPI 3.0: a required read-only property is required in responses only, and
                // a required write-only one in requests only.
                let exempt = properties.and_then(|p| p.get(name)).is_some_and(|sub| {
                    match self.options.direction {
                        Direction::Request => self.flag(sub, "readOnly"),
                        Direction::Response => self.flag(sub, "writeOnly"),
                    }
                });
                if !exempt {
                    out.push(violation(at, format!("missing required property `{name}`")));
                }
            }
        }

        match schema.get("additionalProperties") {
            None => {}
            Some(Value::Bool(true)) => {
                seen.declares = true;
                seen.everything = true;
            }
            Some(Value::Bool(false)) => {
                seen.declares = true;
                for key in object.keys() {
                    if !properties.is_some_and(|p| p.contains_key(key)) {
                        out.push(violation(
                            &format!("{at}/{}", escape(key)),
                            format!(
                                "property `{key}` is not allowed (additionalProperties: false)"
                            ),
                        ));
                    }
                }
            }
            Some(additional) => {
                seen.declares = true;
                seen.everything = true;
                for (key, item) in object {
                    if !properties.is_some_and(|p| p.contains_key(key)) {
                        self.location(
                            additional,
                            item,
                            &format!("{at}/{}", escape(key)),
                            out,
                            depth + 1,
                        );
                    }
                }
            }
        }

        let count = object.len() as u64;
        if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
            if count < min {
                out.push(violation(
                    at,
                    format!("has {count} properties, fewer than {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
            if count > max {
                out.push(violation(
                    at,
                    format!("has {count} properties, more than {max}"),
                ));
            }
        }
    }

    fn array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        at: &str,
        out: &mut Vec<Violation>,
        depth: usize,
    ) {
        if let Some(item_schema) = schema.get("items") {
            for (index, item) in items.iter().enumerate() {
                self.location(item_schema, item, &format!("{at}/{index}"), out, depth + 1);
            }
        }
        let count = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if count < min {
                out.push(violation(
                    at,
                    format!("has {count} items, fewer than {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if count > max {
                out.push(violation(at, format!("has {count} items, more than {max}")));
            }
        }
        if schema.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (i, a) in items.iter().enumerate() {
                if items[..i].iter().any(|b| same(a, b)) {
                    out.push(violation(
                        &format!("{at}/{i}"),
                        "repeats an earlier item (uniqueItems)".into(),
                    ));
                }
            }
        }
    }

    fn string(&self, schema: &Map<String, Value>, text: &str, at: &str, out: &mut Vec<Violation>) {
        let length = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if length < min {
                out.push(violation(
                    at,
                    format!("is {length} characters, shorter than {min}"),
                ));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if length > max {
                out.push(violation(
                    at,
                    format!("is {length} characters, longer than {max}"),
                ));
            }
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match self.spec.regex(pattern) {
                Some(regex) if regex.is_match(text) => {}
                Some(_) => out.push(violation(
                    at,
                    format!("`{text}` does not match /{pattern}/"),
                )),
                None => out.push(violation(
                    at,
                    format!("pattern /{pattern}/ is not supported"),
                )),
            }
        }
        if let Some(format) = schema.get("format").and_then(Value::as_str) {
            if !string_format_ok(format, text) {
                out.push(violation(at, format!("`{text}` is not a valid {format}")));
            }
        }
    }

    /// Whether the (resolved) schema, or one of its `allOf` parts, sets `flag` to true.
    fn flag(&self, schema: &Value, flag: &str) -> bool {
        let Ok(schema) = self.spec.resolve(schema) else {
            return false;
        };
        if schema.get(flag).and_then(Value::as_bool) == Some(true) {
            return true;
        }
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .is_some_and(|parts| {
                parts.iter().any(|part| {
                    self.spec
                        .resolve(part)
                        .is_ok_and(|p| p.get(flag).and_then(Value::as_bool) == Some(true))
                })
            })
    }
}

fn number_rules(
    schema: &Map<String, Value>,
    number: &serde_json::Number,
    at: &str,
    out: &mut Vec<Violation>,
) {
    let Some(n) = number.as_f64() else {
        return;
    };
    let exclusive = |key: &str| schema.get(key).and_then(Value::as_bool) == Some(true);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if n < min || (exclusive("exclusiveMinimum") && n == min) {
            out.push(violation(
                at,
                format!("{number} is below the minimum {min}"),
            ));
        }
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if n > max || (exclusive("exclusiveMaximum") && n == max) {
            out.push(violation(
                at,
                format!("{number} is above the maximum {max}"),
            ));
        }
    }
    if let Some(step) = schema.get("multipleOf").and_then(Value::as_f64) {
        if step > 0.0 {
            let ratio = n / step;
            if (ratio - ratio.round()).abs() > 1e-9 {
                out.push(violation(
                    at,
                    format!("{number} is not a multiple of {step}"),
                ));
            }
        }
    }
    match schema.get("format").and_then(Value::as_str) {
        Some("int32") if number.as_i64().is_none_or(|i| i32::try_from(i).is_err()) => {
            out.push(violation(at, format!("{number} is not an int32")))
        }
        Some("int64") if number.as_i64().is_none() => {
            out.push(violation(at, format!("{number} is not an int64")))
        }
        _ => {}
    }
}

fn string_format_ok(format: &str, text: &str) -> bool {
    match format {
        "date-time" => is_date_time(text),
        "date" => is_date(text),
        "ipv4" => text.parse::<Ipv4Addr>().is_ok(),
        "ipv6" => text.parse::<Ipv6Addr>().is_ok(),
        "uuid" => is_uuid(text),
        "uri" => reqwest::Url::parse(text).is_ok(),
        "email" => text
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.')),
        // Formats that constrain nothing checkable here (`float`, `byte`, `password`, ...).
        _ => true,
    }
}

fn is_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && [0..4, 5..7, 8..10]
            .into_iter()
            .all(|r| bytes[r].iter().all(u8::is_ascii_digit))
        && (1..=12).contains(&text[5..7].parse::<u8>().unwrap_or(0))
        && (1..=31).contains(&text[8..10].parse::<u8>().unwrap_or(0))
}

/// RFC 3339 `date-time`: `2020-07-21T18:37:44Z`, optional fraction, `Z` or `±hh:mm`.
fn is_date_time(text: &str) -> bool {
    let Some((date, time)) = text.split_once(['T', 't']) else {
        return false;
    };
    if !is_date(date) || time.len() < 9 {
        return false;
    }
    let clock = &time.as_bytes()[..8];
    let clock_ok = clock[2] == b':'
        && clock[5] == b':'
        && [0..2, 3..5, 6..8]
            .into_iter()
            .all(|r| clock[r].iter().all(u8::is_ascii_digit))
        && time[0..2].parse::<u8>().is_ok_and(|h| h < 24)
        && time[3..5].parse::<u8>().is_ok_and(|m| m < 60)
        && time[6..8].parse::<u8>().is_ok_and(|s| s <= 60);
    if !clock_ok {
        return false;
    }
    let mut rest = &time[8..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest.as_bytes() {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit())
                && rest[1..3].parse::<u8>().is_ok_and(|h| h < 24)
                && rest[4..6].parse::<u8>().is_ok_and(|m| m < 60)
        }
        _ => false,
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn has_type(value: &Value, expected: &str) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => true,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// JSON equality where `1` and `1.0` are the same number.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(60).collect::<String>())
    } else {
        text
    }
}

fn summary(index: usize, violations: &[Violation]) -> String {
    let first = violations
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    match violations.len() {
        0 | 1 => format!("[{index}] {first}"),
        n => format!("[{index}] {first} (+{} more)", n - 1),
    }
}

/// JSON pointer escaping of one reference token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn violation(at: &str, message: String) -> Violation {
    Violation {
        at: at.to_owned(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(schemas: Value) -> Spec {
        Spec::from_value(
            json!({"openapi": "3.0.0", "paths": {}, "components": {"schemas": schemas}}),
        )
    }

    fn errors(spec: &Spec, schema: Value, value: Value, options: Options) -> Vec<String> {
        match spec.validate(&schema, &value, options) {
            Ok(()) => Vec::new(),
            Err(violations) => violations.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn types_nullable_enum_and_required() {
        let s = spec(json!({}));
        let schema = json!({
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": {"type": "integer"},
                "status": {"type": "string", "enum": ["new", "active"]},
                "kernel": {"type": "object", "nullable": true},
                "gateway": {"type": "string"}
            }
        });
        assert!(errors(
            &s,
            schema.clone(),
            json!({"id": 1, "status": "new", "kernel": null}),
            Options::response()
        )
        .is_empty());
        let found = errors(
            &s,
            schema,
            json!({"id": 1.5, "status": "gone", "gateway": null}),
            Options::response(),
        );
        assert_eq!(
            found,
            [
                "/id: expected integer, found number",
                "/status: \"gone\" is not one of [\"new\",\"active\"]",
                "/gateway: is null, but the schema is not nullable",
            ]
        );
    }

    #[test]
    fn refs_compositions_and_discriminators() {
        let s = spec(json!({
            "base": {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}},
            "resize": {"allOf": [{"$ref": "#/components/schemas/base"}, {"properties": {"size": {"type": "string"}}, "required": ["size"]}]}
        }));
        let schema = json!({
            "anyOf": [{"$ref": "#/components/schemas/base"}, {"$ref": "#/components/schemas/resize"}],
            "discriminator": {"propertyName": "type", "mapping": {"resize": "#/components/schemas/resize", "reboot": "#/components/schemas/base"}}
        });
        assert!(errors(
            &s,
            schema.clone(),
            json!({"type": "resize", "size": "s-1"}),
            Options::request()
        )
        .is_empty());
        assert_eq!(
            errors(
                &s,
                schema.clone(),
                json!({"type": "resize"}),
                Options::request()
            ),
            ["(root): missing required property `size`"]
        );
        assert_eq!(
            errors(
                &s,
                schema.clone(),
                json!({"type": "reboot", "size": "s-1"}),
                Options::request()
            ),
            ["/size: unknown property `size`: the schema does not declare it"]
        );
        assert_eq!(
            errors(&s, schema, json!({"type": "explode"}), Options::request()),
            ["/type: `explode` is not a known `type` here"]
        );

        let one_of = json!({"oneOf": [{"type": "string"}, {"type": "integer"}]});
        assert!(errors(&s, one_of.clone(), json!(7), Options::request()).is_empty());
        assert_eq!(errors(&s, one_of, json!(true), Options::request()).len(), 1);
        let ambiguous = json!({"oneOf": [{"type": "integer"}, {"type": "number"}]});
        assert_eq!(
            errors(&s, ambiguous, json!(7), Options::request()),
            ["(root): matches more than one oneOf alternative ([0, 1])"]
        );
    }

    #[test]
    fn read_only_properties_may_not_be_sent_but_are_not_required_in_requests() {
        let s = spec(json!({}));
        let schema = json!({
            "type": "object",
            "required": ["id", "name"],
            "properties": {"id": {"type": "string", "readOnly": true}, "name": {"type": "string"}}
        });
        assert!(errors(
            &s,
            schema.clone(),
            json!({"name": "fw"}),
            Options::request()
        )
        .is_empty());
        assert_eq!(
            errors(
                &s,
                schema.clone(),
                json!({"id": "x", "name": "fw"}),
                Options::request()
            ),
            ["/id: is read-only: a request must not send it"]
        );
        assert_eq!(
            errors(&s, schema, json!({"name": "fw"}), Options::response()),
            ["(root): missing required property `id`"]
        );
    }

    #[test]
    fn strings_numbers_arrays_and_formats() {
        let s = spec(json!({}));
        let check = |schema: Value, value: Value| errors(&s, schema, value, Options::response());
        assert!(check(
            json!({"type": "string", "pattern": "^[a-z0-9:_-]+$", "maxLength": 8}),
            json!("env:prod")
        )
        .is_empty());
        assert_eq!(
            check(
                json!({"type": "string", "pattern": "^[a-z]+$"}),
                json!("Web 1")
            )
            .len(),
            1
        );
        assert_eq!(
            check(json!({"type": "string", "maxLength": 3}), json!("four")).len(),
            1
        );
        assert_eq!(
            check(
                json!({"type": "integer", "minimum": 1, "maximum": 200, "multipleOf": 8}),
                json!(12)
            )
            .len(),
            1
        );
        assert_eq!(
            check(json!({"type": "integer", "minimum": 1}), json!(0)).len(),
            1
        );
        assert_eq!(check(json!({"type": "array", "items": {"type": "integer"}, "maxItems": 2, "uniqueItems": true}), json!([1, 1, "x"])).len(), 3);
        for (format, good, bad) in [
            ("date-time", "2020-07-21T18:37:44Z", "2020-07-21 18:37"),
            (
                "date-time",
                "2020-07-21T18:37:44.123+02:00",
                "2020-13-21T18:37:44Z",
            ),
            ("ipv4", "104.236.32.182", "104.236.32"),
            ("ipv6", "2604:a880:0:1010::18a:a001", "2604:zz::1"),
            (
                "uuid",
                "bb4b2611-3d72-467b-8602-280330ecd65c",
                "bb4b2611-3d72-467b-8602",
            ),
            (
                "uri",
                "https://api.digitalocean.com/v2/actions/7515",
                "not a uri",
            ),
        ] {
            assert!(
                check(json!({"type": "string", "format": format}), json!(good)).is_empty(),
                "{format} {good}"
            );
            assert_eq!(
                check(json!({"type": "string", "format": format}), json!(bad)).len(),
                1,
                "{format} {bad}"
            );
        }
    }

    #[test]
    fn additional_properties() {
        let s = spec(json!({}));
        let closed =
            json!({"type": "object", "properties": {"a": {}}, "additionalProperties": false});
        assert_eq!(
            errors(&s, closed, json!({"a": 1, "b": 2}), Options::response()).len(),
            1
        );
        let typed = json!({"type": "object", "additionalProperties": {"type": "integer"}});
        assert!(errors(&s, typed.clone(), json!({"x": 1}), Options::request()).is_empty());
        assert_eq!(
            errors(&s, typed, json!({"x": "1"}), Options::request()).len(),
            1
        );
        // A free-form object (no properties declared) accepts anything even when strict.
        assert!(errors(
            &s,
            json!({"type": "object"}),
            json!({"x": 1}),
            Options::request()
        )
        .is_empty());
    }

    #[test]
    fn templates_match_concrete_paths() {
        let (values, literals) = match_template(
            "/v2/droplets/{droplet_id}/actions/{action_id}",
            "/v2/droplets/42/actions/7",
        )
        .unwrap();
        assert_eq!(
            (
                values["droplet_id"].as_str(),
                values["action_id"].as_str(),
                literals
            ),
            ("42", "7", 3)
        );
        assert!(match_template("/v2/droplets/{droplet_id}", "/v2/droplets").is_none());
        assert_eq!(percent_decode("env%3Aprod+x", true), "env:prod x");
        assert_eq!(percent_decode("100%", false), "100%");
    }
}
