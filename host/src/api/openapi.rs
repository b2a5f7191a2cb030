//! The OpenAPI 3.1 document, served at `GET /openapi.json`, assembled from the route catalog
//! and the request schemas in `schemas/` (OpenAPI 3.1 speaks JSON Schema 2020-12 natively).

use serde_json::{Map, Value, json};

use super::error::ErrorCode;
use super::{Input, RouteDoc};
use crate::schema::Schemas;

fn component_name(file: &str) -> &str {
    file.strip_suffix(".json").unwrap_or(file)
}

/// Rewrites a schema file's references (`#/$defs/x`, `other.json#/$defs/x`) to point into
/// `#/components/schemas/…`, where every file is embedded.
fn rewrite_refs(value: &mut Value, file: &str) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref") {
                let (target, pointer) = reference.split_once('#').unwrap_or((reference, ""));
                let target = if target.is_empty() { file } else { target };
                *reference = format!("#/components/schemas/{}{pointer}", component_name(target));
            }
            map.remove("$id");
            map.remove("$schema");
            for v in map.values_mut() {
                rewrite_refs(v, file);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, file)),
        _ => {}
    }
}

fn envelope(data: Value) -> Value {
    json!({
        "type": "object",
        "required": ["status", "code", "errorMsg", "data"],
        "properties": {
            "status": {"type": "integer", "description": "equals the HTTP status"},
            "code": {"type": "string"},
            "errorMsg": {"type": "string"},
            "data": data
        }
    })
}

/// The `{name}` segments of a route's path, as required string path parameters.
fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
        .collect()
}

pub fn document(routes: &[RouteDoc], schemas: &Schemas) -> Value {
    let mut components = Map::new();
    let mut embedded: Map<String, Value> = Map::new();
    for (file, doc) in schemas.documents() {
        let mut doc = doc.clone();
        rewrite_refs(&mut doc, file);
        embedded.insert(component_name(file).to_owned(), doc);
    }
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    embedded.insert(
        "ErrorEnvelope".to_owned(),
        envelope(json!({"type": "null"})),
    );
    if let Some(Value::Object(e)) = embedded.get_mut("ErrorEnvelope")
        && let Some(Value::Object(props)) = e.get_mut("properties")
    {
        props.insert("code".to_owned(), json!({"type": "string", "enum": codes}));
    }
    components.insert("schemas".to_owned(), Value::Object(embedded.clone()));
    components.insert(
        "securitySchemes".to_owned(),
        json!({"token": {"type": "apiKey", "in": "header", "name": "X-Auth-Token"}}),
    );

    let mut paths: Map<String, Value> = Map::new();
    for route in routes {
        let mut op = Map::new();
        let summary = if route.clause.is_empty() {
            route.summary.to_owned()
        } else {
            format!("{} ({})", route.summary, route.clause)
        };
        op.insert("summary".to_owned(), json!(summary));
        op.insert("tags".to_owned(), json!([route.tag]));
        op.insert(
            "operationId".to_owned(),
            json!(format!(
                "{}{}",
                route.method.as_str().to_lowercase(),
                route.path.replace('/', "_").replace(['{', '}'], "")
            )),
        );
        if route.auth {
            op.insert("security".to_owned(), json!([{"token": []}]));
        }
        let json_body = |file: &str| {
            json!({
                "required": true,
                "content": {"application/json": {"schema": {
                    "$ref": format!("#/components/schemas/{}", component_name(file))
                }}}
            })
        };
        let query_params = |file: &str| -> Vec<Value> {
            let schema = embedded
                .get(component_name(file))
                .cloned()
                .unwrap_or_default();
            let required: Vec<&str> = schema["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            schema["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(name, s)| {
                            json!({
                                "name": name,
                                "in": "query",
                                "required": required.contains(&name.as_str()),
                                "schema": s
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        let mut parameters = path_params(route.path);
        match route.input {
            Input::None => {}
            Input::Body(file) => {
                op.insert("requestBody".to_owned(), json_body(file));
            }
            Input::Query(file) => {
                parameters.extend(query_params(file));
            }
            Input::QueryAndBody { query, body } => {
                parameters.extend(query_params(query));
                op.insert("requestBody".to_owned(), json_body(body));
            }
            Input::Binary => {
                op.insert(
                    "requestBody".to_owned(),
                    json!({
                        "required": true,
                        "content": {"application/octet-stream": {"schema": {
                            "type": "string", "contentMediaType": "application/octet-stream"
                        }}}
                    }),
                );
            }
            Input::QueryAndBinary(query) => {
                parameters.extend(query_params(query));
                op.insert(
                    "requestBody".to_owned(),
                    json!({
                        "required": true,
                        "content": {"application/octet-stream": {"schema": {
                            "type": "string", "contentMediaType": "application/octet-stream"
                        }}}
                    }),
                );
            }
        }
        if !parameters.is_empty() {
            op.insert("parameters".to_owned(), Value::Array(parameters));
        }
        op.insert(
            "responses".to_owned(),
            json!({
                "200": {"description": "success: code \"OK\"",
                        "content": {"application/json": {"schema": envelope(json!({}))}}},
                "default": {"description": "an error; see docs/errors.md",
                            "content": {"application/json": {"schema":
                                {"$ref": "#/components/schemas/ErrorEnvelope"}}}}
            }),
        );
        let entry = paths
            .entry(route.path.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(methods) = entry {
            methods.insert(route.method.as_str().to_lowercase(), Value::Object(op));
        }
    }

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "liutong",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Data resource circulation and trading (T/AI 123.12 Annex A) and \
                            compute provider access. Every response is the envelope \
                            {status, code, errorMsg, data}."
        },
        "paths": paths,
        "components": components
    })
}
