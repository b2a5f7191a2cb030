//! The OpenAPI 3.1 document, served at `GET /openapi.json`, assembled from the route catalog
//! and the request schemas in `schemas/` (OpenAPI 3.1 speaks JSON Schema 2020-12 natively).

use serde_json::{Map, Value, json};

use super::error::ErrorCode;
use super::{Input, RouteDoc};
use crate::domain::Role;
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

/// Who may call a route with a fixed role. Those handlers take the `Operator` or `DataSpace`
/// extractor (`api::extract`), which refuses anyone else with 403 before the body is read; a
/// test sends every such route a malformed body under each other role.
pub fn role_of(path: &str) -> Option<Role> {
    if path.starts_with("/v1/admin/") {
        Some(Role::Operator)
    } else if path.starts_with("/v1/provider/") {
        Some(Role::Enterprise)
    } else if matches!(
        path,
        "/publishDatasets" | "/deliverDatasets" | "/v1/policies/{policyId}/access"
    ) {
        Some(Role::DataSpace)
    } else {
        None
    }
}

/// Statuses that only some routes answer: money (402), plugins (502), sizes of files (413).
fn route_specific(path: &str) -> &'static [(u16, &'static str)] {
    match path {
        "/settlement" => &[
            (402, "the buyer's balance does not cover the price"),
            (502, "the billing plugin failed; nothing was written"),
        ],
        "/v1/admin/plugins/call" => &[(502, "the plugin failed (trap, time or memory limit)")],
        "/deliver" => &[(
            413,
            "the file is larger than max_json_delivery: ask for application/octet-stream",
        )],
        "/v1/data/file" => &[(413, "the file is larger than the storage accepts")],
        "/v1/admin/plugins" => &[(413, "the package is larger than the package limit")],
        "/metrics" => &[(404, "metrics are turned off (metrics = false)")],
        "/v1/account/register" => &[(409, "the username is taken")],
        // No token: the batch's signature is its authentication.
        "/v1/gateway/identifiers" => &[(
            401,
            "the X-Gateway-Key-Id / X-Gateway-Signature headers are missing, the key is unknown or retired, or the signature does not verify",
        )],
        "/v1/model/delivery" | "/v1/application/delivery" => &[
            (
                402,
                "the balance cannot hold a metered call, or a fixed term is not paid",
            ),
            (
                502,
                "the upstream failed (UPSTREAM_FAILED, with its status) or the adapter plugin did (PLUGIN_FAILED); nothing was charged",
            ),
            (
                504,
                "the upstream did not answer in time; nothing was charged",
            ),
        ],
        "/v1/model/userSettlement" | "/v1/application/userSettlement" => &[
            (402, "the balance does not cover the term"),
            (502, "the billing plugin failed; nothing was charged"),
        ],
        _ => &[],
    }
}

/// Every status a route can answer besides 200, with the reason, from what the route reads
/// (its input, its token, its role) and what only it does (`route_specific`).
pub fn error_statuses(route: &RouteDoc) -> std::collections::BTreeMap<u16, &'static str> {
    let mut statuses = std::collections::BTreeMap::new();
    let (schema, json_body, binary_body) = match route.input {
        Input::None => (false, false, false),
        Input::Body(_) => (true, true, false),
        Input::Query(_) => (true, false, false),
        Input::QueryAndBody { .. } => (true, true, false),
        Input::QueryAndBinary(_) => (true, false, true),
        Input::Binary => (false, false, true),
        Input::Multipart(_) => (true, false, false),
    };
    if schema || binary_body {
        statuses.insert(
            400,
            "the input breaks its schema (every violation, by JSON pointer) or a rule of the \
             domain",
        );
    }
    if json_body {
        statuses.insert(413, "the JSON body is larger than max_json_body");
        statuses.insert(415, "the Content-Type is not application/json");
    }
    if binary_body {
        statuses.insert(415, "the Content-Type is not application/octet-stream");
    }
    if matches!(route.input, Input::Multipart(_)) {
        statuses.insert(
            413,
            "a document is larger than 10 MiB, or the part 'info' larger than max_json_body",
        );
        statuses.insert(415, "the Content-Type is not multipart/form-data");
    }
    if route.auth {
        statuses.insert(401, "X-Auth-Token is missing, unknown or expired");
        statuses.insert(
            403,
            "the caller may not do this (role, or the item is another account's)",
        );
        statuses.insert(404, "a referenced item does not exist");
        statuses.insert(
            409,
            "a conflict with the current state (CONFLICT, INVALID_STATE)",
        );
    }
    if path_params(route.path)
        .iter()
        .any(|p| p["schema"].get("pattern").is_some())
    {
        statuses.insert(400, "a path parameter breaks its pattern");
    }
    if route.path == "/v1/account/token" {
        statuses.insert(401, "the username or password is wrong");
    }
    if !matches!(route.path, "/healthz" | "/metrics" | "/v1/keys") {
        statuses.insert(
            503,
            "the database is unavailable or overloaded; retry shortly",
        );
    }
    for (status, why) in route_specific(route.path) {
        statuses.insert(*status, why);
    }
    statuses
}

/// The error envelope of one status: its `code` is one of the codes with that status.
fn error_response(status: u16, why: &str) -> Value {
    let codes: Vec<&str> = ErrorCode::ALL
        .iter()
        .filter(|c| c.status().as_u16() == status)
        .map(|c| c.as_str())
        .collect();
    json!({
        "description": why,
        "content": {"application/json": {"schema": {
            "allOf": [
                {"$ref": "#/components/schemas/ErrorEnvelope"},
                {"properties": {"status": {"const": status}, "code": {"enum": codes}}}
            ]
        }}}
    })
}

fn responses(route: &RouteDoc) -> Value {
    let mut responses = Map::new();
    let ok = match route.path {
        "/v1/admin/certifications/{certificationId}/documents/{documentId}" => json!({
            "description": "the document as it was uploaded, with its media type",
            "content": {
                "application/pdf": {"schema": {"type": "string", "contentMediaType": "application/pdf"}},
                "image/jpeg": {"schema": {"type": "string", "contentMediaType": "image/jpeg"}},
                "image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}
            }
        }),
        "/metrics" => json!({
            "description": "Prometheus text exposition format 0.0.4 (no envelope)",
            "content": {"text/plain": {"schema": {"type": "string"}}}
        }),
        "/deliver" => json!({
            "description": "success: the envelope with the file in base64 and the delivery \
                            proof; or, when Accept names application/octet-stream, the raw file \
                            with the proof in X-Delivery-Proof (base64 JSON), X-Delivery-Id and \
                            X-Content-Sha256",
            "content": {
                "application/json": {"schema": envelope(json!({}))},
                "application/octet-stream": {"schema": {
                    "type": "string", "contentMediaType": "application/octet-stream"
                }}
            }
        }),
        _ => json!({
            "description": "success: code \"OK\"",
            "content": {"application/json": {"schema": envelope(json!({}))}}
        }),
    };
    responses.insert("200".to_owned(), ok);
    for (status, why) in error_statuses(route) {
        responses.insert(status.to_string(), error_response(status, why));
    }
    Value::Object(responses)
}

/// The schema of a path parameter: any string, except where the server checks a shape.
fn path_param_schema(name: &str) -> Value {
    match name {
        // An identifier code (`GET /v1/gateway/codes/{code}`): 16 digits, else 400.
        "code" => json!({"type": "string", "pattern": "^[0-9]{16}$"}),
        _ => json!({"type": "string"}),
    }
}

/// The `{name}` segments of a route's path, as required path parameters.
fn path_params(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_param_schema(name)}))
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
            // Rules across parameters (exactly one of two, one needs another) only hold in the
            // whole object: such a query is one form-exploded object parameter, which reads on
            // the wire exactly like separate parameters.
            let across = ["oneOf", "anyOf", "allOf", "not", "if", "dependentRequired"]
                .iter()
                .any(|k| schema.get(k).is_some());
            if across {
                return vec![json!({
                    "name": component_name(file),
                    "in": "query",
                    "style": "form",
                    "explode": true,
                    "required": !schemas.validate(file, &json!({})).is_empty(),
                    "schema": schema
                })];
            }
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
            Input::Multipart(file) => {
                op.insert(
                    "requestBody".to_owned(),
                    json!({
                        "required": true,
                        "content": {"multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["info", "document"],
                                "properties": {
                                    "info": {"$ref": format!("#/components/schemas/{}", component_name(file))},
                                    "document": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": crate::domain::provider::MAX_DOCUMENTS,
                                        "items": {"type": "string", "contentMediaType": "application/octet-stream"},
                                        "description": "PDF, JPEG or PNG files (by content), each at most 10 MiB"
                                    }
                                }
                            },
                            "encoding": {
                                "info": {"contentType": "application/json"},
                                // Any bytes may be sent; the server reads the type from
                                // the content (PDF, JPEG, PNG), not from the part's header.
                                "document": {"contentType": "application/octet-stream"}
                            }
                        }}
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
        if let Some(role) = role_of(route.path) {
            op.insert(
                "description".to_owned(),
                json!(format!(
                    "Only accounts of role '{}': anyone else gets 403 before the request is read \
                     or validated.",
                    role.as_str()
                )),
            );
        }
        if !parameters.is_empty() {
            op.insert("parameters".to_owned(), Value::Array(parameters));
        }
        op.insert("responses".to_owned(), responses(route));
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
