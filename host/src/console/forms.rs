//! Forms generated from a plugin's JSON Schema (`info().config-schema`), and read back into the
//! config object the API takes.
//!
//! Each property becomes a labelled control named after the API's own field name
//! (`steps[0].config.key`), so an error the API answers for a field is shown next to that very
//! control. What the schema says is used: `type` (text, number, checkbox; nested objects with
//! `properties` become fieldsets; anything else a JSON text area), `enum` (a select), `required`
//! (marked, left to the API to enforce), `default` (pre-filled), `description` (the hint the
//! control is described by). Secret fields (`writeOnly` / `x-secret`) are write-only: a password
//! control that is never filled in; one left empty keeps the stored value (it is sent as the
//! redaction marker, which the API resolves to the stored secret).

use std::collections::BTreeMap;

use maud::{Markup, html};
use serde_json::{Map, Value};

use super::FormData;
use crate::secrets::REDACTED;

/// Errors to show, by the API's field name.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(pub BTreeMap<String, String>);

impl FieldErrors {
    /// The error of `field`, if any.
    pub fn of(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// Records an error.
    pub fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_insert_with(|| message.into());
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FieldErrors {
    /// The errors a refusal of the API names a field for (shown at that field), with its
    /// status; any other refusal is the page's error.
    pub fn from_api(
        error: crate::api::error::ApiError,
    ) -> Result<(Self, axum::http::StatusCode), super::PageError> {
        match error.field {
            Some(field) => {
                let mut errors = Self::default();
                errors.add(field, error.message);
                Ok((errors, error.status))
            }
            None => Err(error.into()),
        }
    }
}

/// The error of `field` or of any of its items (`event_types` for `event_types[2]`).
pub fn error_at<'a>(errors: &'a FieldErrors, field: &str) -> Option<&'a str> {
    errors.of(field).or_else(|| {
        errors
            .0
            .iter()
            .find(|(name, _)| {
                name.strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with('['))
            })
            .map(|(_, message)| message.as_str())
    })
}

/// A labelled text control (a text area when `long`) named `name`, with its hint and the
/// error the API gave for it (or its items).
pub fn text_input(
    name: &str,
    label: &str,
    value: &str,
    hint: &str,
    errors: &FieldErrors,
    long: bool,
) -> Markup {
    let id = id_of(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let error = error_at(errors, name);
    let described = match error {
        Some(_) => format!("{hint_id} {error_id}"),
        None => hint_id.clone(),
    };
    html! {
        div.field.invalid[error.is_some()] {
            label for=(id) { (label) }
            @if long {
                textarea id=(id) name=(name) spellcheck="false" aria-describedby=(described)
                    aria-invalid=[error.map(|_| "true")] { (value) }
            } @else {
                input id=(id) type="text" name=(name) value=(value) aria-describedby=(described)
                    aria-invalid=[error.map(|_| "true")];
            }
            p.hint id=(hint_id) { (hint) }
            @if let Some(error) = error { p.error id=(error_id) role="alert" { (error) } }
        }
    }
}

/// The HTML id of the control named `name`: `steps[0].config.key` → `f-steps-0-config-key`.
pub fn id_of(name: &str) -> String {
    let mut id = String::from("f-");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c);
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_string()
}

/// A list of every error, each linking to its control (shown above a form).
pub fn error_summary(errors: &FieldErrors) -> Markup {
    html! {
        @if !errors.is_empty() {
            div.errors role="alert" aria-labelledby="errors-title" {
                p id="errors-title" { "Please correct:" }
                ul {
                    @for (field, message) in &errors.0 {
                        li { a href=(format!("#{}", id_of(field))) { code { (field) } } " " (message) }
                    }
                }
            }
        }
    }
}

/// How a property is edited.
enum Kind<'a> {
    Secret { long: bool },
    Choice(&'a [Value]),
    Bool,
    Integer,
    Number,
    Text { long: bool },
    Object(&'a Value),
    Json,
}

fn type_of(schema: &Value) -> Option<&str> {
    match schema.get("type") {
        Some(Value::String(t)) => Some(t),
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null"),
        _ => None,
    }
}

fn flag(schema: &Value, key: &str) -> bool {
    schema.get(key).and_then(Value::as_bool) == Some(true)
}

fn kind_of<'a>(key: &str, schema: &'a Value) -> Kind<'a> {
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("");
    let long = description.contains("PEM")
        || description.contains("JSON")
        || flag(schema, "x-multiline")
        || schema
            .get("maxLength")
            .and_then(Value::as_u64)
            .is_some_and(|n| n > 300)
        || key.ends_with("_pem");
    if flag(schema, "writeOnly") || flag(schema, "x-secret") {
        return Kind::Secret { long };
    }
    if let Some(Value::Array(options)) = schema.get("enum") {
        return Kind::Choice(options);
    }
    match type_of(schema) {
        Some("boolean") => Kind::Bool,
        Some("integer") => Kind::Integer,
        Some("number") => Kind::Number,
        Some("string") => Kind::Text { long },
        Some("object") if schema.get("properties").is_some_and(Value::is_object) => {
            Kind::Object(schema)
        }
        _ => Kind::Json,
    }
}

/// The properties of an object schema, required ones first (each group in schema order).
fn properties(schema: &Value) -> Vec<(&String, &Value, bool)> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out: Vec<(&String, &Value, bool)> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k, v, required.contains(&k.as_str())))
                .collect()
        })
        .unwrap_or_default();
    out.sort_by_key(|(_, _, required)| !*required);
    out
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The controls of an object schema's properties. `prefix` is the API's name of the object
/// (`steps[0].config`); `value` what to show (the current config, or `{}` for defaults).
pub fn render_object(prefix: &str, schema: &Value, value: &Value, errors: &FieldErrors) -> Markup {
    let props = properties(schema);
    html! {
        @if props.is_empty() && schema.get("properties").is_none() {
            (render_property(prefix, prefix.rsplit('.').next().unwrap_or(prefix), &Value::Object(Map::new()), Some(value), false, errors))
        }
        @for (key, sub, required) in props {
            (render_property(&format!("{prefix}.{key}"), key, sub, value.get(key.as_str()), required, errors))
        }
    }
}

fn render_property(
    name: &str,
    key: &str,
    schema: &Value,
    value: Option<&Value>,
    required: bool,
    errors: &FieldErrors,
) -> Markup {
    let id = id_of(name);
    let hint_id = format!("{id}-hint");
    let error_id = format!("{id}-error");
    let description = schema.get("description").and_then(Value::as_str);
    let error = errors.of(name);
    let described = {
        let mut ids = Vec::new();
        if description.is_some() {
            ids.push(hint_id.clone());
        }
        if error.is_some() {
            ids.push(error_id.clone());
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    };
    let title = schema.get("title").and_then(Value::as_str).unwrap_or(key);
    let default = schema.get("default");
    let shown = value.or(default);
    let invalid = error.map(|_| "true");
    let label = html! {
        label for=(id) {
            (title)
            @if required { " " span.req aria-hidden="true" { "*" } span.skip { " (required)" } }
        }
    };
    let hint = html! {
        @if let Some(description) = description { p.hint id=(hint_id) { (description) } }
    };
    let error_line = html! {
        @if let Some(error) = error { p.error id=(error_id) role="alert" { (error) } }
    };
    match kind_of(key, schema) {
        Kind::Object(schema) => html! {
            fieldset id=(id) {
                legend { (title) }
                (hint)
                (error_line)
                (render_object(name, schema, shown.unwrap_or(&Value::Null), errors))
            }
        },
        Kind::Bool => {
            let checked = shown.and_then(Value::as_bool).unwrap_or(false);
            html! {
                div.field.invalid[error.is_some()] {
                    input type="hidden" name=(format!("{name}.__bool")) value="1";
                    label.checkbox for=(id) {
                        input id=(id) type="checkbox" name=(name) value="true" checked[checked]
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid];
                        (title)
                    }
                    (hint) (error_line)
                }
            }
        }
        Kind::Secret { long } => {
            let stored = value.and_then(Value::as_str) == Some(REDACTED);
            let placeholder = if stored {
                "Stored. Leave empty to keep it; type to replace it."
            } else {
                ""
            };
            html! {
                div.field.invalid[error.is_some()] {
                    (label)
                    @if long {
                        textarea id=(id) name=(name) autocomplete="off" spellcheck="false"
                            placeholder=(placeholder) aria-describedby=[described.as_deref()]
                            aria-invalid=[invalid] aria-required=[required.then_some("true")] {}
                    } @else {
                        input id=(id) type="password" name=(name) autocomplete="new-password"
                            placeholder=(placeholder) aria-describedby=[described.as_deref()]
                            aria-invalid=[invalid] aria-required=[required.then_some("true")];
                    }
                    @if stored { input type="hidden" name=(format!("{name}.__stored")) value="1"; }
                    p.hint { "Write-only: never shown again once saved." }
                    (hint) (error_line)
                }
            }
        }
        Kind::Choice(options) => {
            let current = shown.map(text_of);
            html! {
                div.field.invalid[error.is_some()] {
                    (label)
                    select id=(id) name=(name) aria-describedby=[described.as_deref()] aria-invalid=[invalid] {
                        @if default.is_none() {
                            option value="" { "(choose)" }
                        }
                        @for option in options {
                            @let text = text_of(option);
                            option value=(text) selected[current.as_deref() == Some(text.as_str())] { (text) }
                        }
                    }
                    (hint) (error_line)
                }
            }
        }
        Kind::Integer | Kind::Number => {
            let integer = matches!(kind_of(key, schema), Kind::Integer);
            html! {
                div.field.invalid[error.is_some()] {
                    (label)
                    input id=(id) type="number" name=(name) step=(if integer { "1" } else { "any" })
                        value=(shown.map(text_of).unwrap_or_default())
                        min=[schema.get("minimum").map(text_of)] max=[schema.get("maximum").map(text_of)]
                        aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                        aria-required=[required.then_some("true")];
                    (hint) (error_line)
                }
            }
        }
        Kind::Text { long } => {
            let text = shown.map(text_of).unwrap_or_default();
            html! {
                div.field.invalid[error.is_some()] {
                    (label)
                    @if long {
                        textarea id=(id) name=(name) spellcheck="false" aria-describedby=[described.as_deref()]
                            aria-invalid=[invalid] aria-required=[required.then_some("true")] { (text) }
                    } @else {
                        input id=(id) type="text" name=(name) value=(text)
                            aria-describedby=[described.as_deref()] aria-invalid=[invalid]
                            aria-required=[required.then_some("true")];
                    }
                    (hint) (error_line)
                }
            }
        }
        Kind::Json => {
            let text = match shown {
                None | Some(Value::Null) => String::new(),
                Some(v) => serde_json::to_string_pretty(v).unwrap_or_default(),
            };
            html! {
                div.field.invalid[error.is_some()] {
                    (label)
                    textarea id=(id) name=(name) spellcheck="false" aria-describedby=[described.as_deref()]
                        aria-invalid=[invalid] { (text) }
                    p.hint { "JSON." }
                    (hint) (error_line)
                }
            }
        }
    }
}

/// Reads the controls [`render_object`] made back into a config object. Values that cannot be
/// read (a number that is not one, JSON that does not parse) are left out and reported in
/// `errors` under their field's name; everything else is for the API to judge.
pub fn read_object(
    prefix: &str,
    schema: &Value,
    form: &FormData,
    errors: &mut FieldErrors,
) -> Value {
    let mut out = Map::new();
    if schema.get("properties").is_none() {
        // No declared properties: the whole config as JSON.
        return read_property(prefix, "config", schema, form, errors).unwrap_or(Value::Object(out));
    }
    for (key, sub, _) in properties(schema) {
        if let Some(value) = read_property(&format!("{prefix}.{key}"), key, sub, form, errors) {
            out.insert(key.clone(), value);
        }
    }
    Value::Object(out)
}

fn read_property(
    name: &str,
    key: &str,
    schema: &Value,
    form: &FormData,
    errors: &mut FieldErrors,
) -> Option<Value> {
    let raw = form.get(name).unwrap_or("");
    let text = raw.trim();
    match kind_of(key, schema) {
        Kind::Object(schema) => {
            let value = read_object(name, schema, form, errors);
            (value.as_object().is_some_and(|m| !m.is_empty())).then_some(value)
        }
        Kind::Bool => form
            .get(&format!("{name}.__bool"))
            .map(|_| Value::Bool(raw == "true")),
        Kind::Secret { .. } => {
            if !raw.is_empty() {
                Some(Value::String(raw.to_string()))
            } else if form.get(&format!("{name}.__stored")).is_some() {
                Some(Value::String(REDACTED.to_string()))
            } else {
                None
            }
        }
        Kind::Choice(options) => {
            if text.is_empty() {
                return None;
            }
            Some(
                options
                    .iter()
                    .find(|o| text_of(o) == text)
                    .cloned()
                    .unwrap_or_else(|| Value::String(text.to_string())),
            )
        }
        Kind::Integer => {
            if text.is_empty() {
                return None;
            }
            match text.parse::<i64>() {
                Ok(n) => Some(Value::from(n)),
                Err(_) => {
                    errors.add(name, "must be a whole number");
                    None
                }
            }
        }
        Kind::Number => {
            if text.is_empty() {
                return None;
            }
            match text
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
            {
                Some(n) => Some(Value::Number(n)),
                None => {
                    errors.add(name, "must be a number");
                    None
                }
            }
        }
        Kind::Text { .. } => (!text.is_empty()).then(|| Value::String(text.to_string())),
        Kind::Json => {
            if text.is_empty() {
                return None;
            }
            match serde_json::from_str(text) {
                Ok(value) => Some(value),
                Err(e) => {
                    errors.add(name, format!("must be JSON ({e})"));
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        serde_json::json!({
            "type": "object",
            "properties": {
                "key": {"type": "string", "writeOnly": true, "description": "The key."},
                "header": {"type": "string", "default": "x-api-key"},
                "alg": {"enum": ["A", "B"], "default": "A"},
                "retries": {"type": "integer"},
                "strict": {"type": "boolean"},
                "extra": {"type": "object"},
                "nested": {"type": "object", "properties": {"inner": {"type": "string"}}}
            },
            "required": ["key"]
        })
    }

    #[test]
    fn controls_are_named_like_the_api_fields_and_secrets_are_never_filled() {
        let value = serde_json::json!({"key": REDACTED, "header": "<b>h</b>"});
        let mut errors = FieldErrors::default();
        errors.add("steps[0].config.header", "is <wrong>");
        let html = render_object("steps[0].config", &schema(), &value, &errors).into_string();
        assert!(html.contains(r#"name="steps[0].config.key""#));
        assert!(html.contains(r#"type="password""#));
        assert!(!html.contains(REDACTED), "{html}");
        assert!(html.contains("steps[0].config.key.__stored"));
        assert!(html.contains("&lt;b&gt;h&lt;/b&gt;"));
        assert!(html.contains("is &lt;wrong&gt;"));
        assert!(html.contains(r#"name="steps[0].config.nested.inner""#));
        // Required first.
        assert!(html.find("config.key").unwrap() < html.find("config.header").unwrap());
    }

    #[test]
    fn forms_read_back_with_types_and_kept_secrets() {
        let form = FormData(vec![
            ("c.key.__stored".into(), "1".into()),
            ("c.key".into(), "".into()),
            ("c.header".into(), " x-k ".into()),
            ("c.alg".into(), "B".into()),
            ("c.retries".into(), "3".into()),
            ("c.strict.__bool".into(), "1".into()),
            ("c.extra".into(), r#"{"a":1}"#.into()),
            ("c.nested.inner".into(), "".into()),
        ]);
        let mut errors = FieldErrors::default();
        let value = read_object("c", &schema(), &form, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            value,
            serde_json::json!({"key": REDACTED, "header": "x-k", "alg": "B", "retries": 3,
                "strict": false, "extra": {"a": 1}})
        );
        let bad = FormData(vec![("c.retries".into(), "three".into())]);
        read_object("c", &schema(), &bad, &mut errors);
        assert_eq!(errors.of("c.retries"), Some("must be a whole number"));
    }
}
