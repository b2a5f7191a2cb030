//! Compute provider access (compute-provider-access §1): certification of enterprises and its
//! review by operators.

use axum::body::Body;
use axum::extract::{FromRequestParts, Multipart, Path, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use futures_util::StreamExt;

use super::delivery::media_essence;
use super::error::{ApiError, ApiResult, Data, ErrorCode};
use super::extract::{Enterprise, Operator, ValidJson, ValidQuery, request_schemas};
use super::{AppState, Input, Route, RouteDoc};
use crate::domain::provider::{
    CertificationCreated, CertificationDecision, CertificationInfo, CertificationStatus,
    CertificationsPage, CertificationsQuery, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS, RejectRequest,
    ReviewStatus,
};
use crate::services::ServiceError;
use crate::services::provider::{DocumentSource, IncomingDocument};

request_schemas! {
    CertificationInfo => "provider.certification.json",
    CertificationsQuery => "admin.certifications.json",
    RejectRequest => "admin.review.reject.json",
}

pub const MULTIPART_FORM_DATA: &str = "multipart/form-data";

/// The largest certification request: the documents, the `info` part and the multipart framing.
pub const MAX_CERTIFICATION_BODY: usize =
    MAX_DOCUMENTS * (MAX_DOCUMENT_BYTES as usize) + 2 * 1024 * 1024;

/// A path's `{certificationId}` and, where present, `{documentId}`.
pub struct Ids(pub Vec<String>);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(ids) = Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(format!("path: {e}")))?;
        Ok(Ids(ids))
    }
}

impl Ids {
    pub fn get(&self, i: usize) -> &str {
        self.0.get(i).map(String::as_str).unwrap_or_default()
    }
}

fn multipart_error(e: &axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the request is larger than {MAX_CERTIFICATION_BODY} bytes"),
        )
    } else {
        ApiError::invalid(format!("malformed multipart body: {}", e.body_text()))
    }
}

/// The `document` parts after `info`, one at a time.
struct DocumentParts(Multipart);

impl DocumentSource for DocumentParts {
    async fn next_document(&mut self) -> Result<Option<IncomingDocument<'_>>, ServiceError> {
        let field = self.0.next_field().await.map_err(|e| {
            ServiceError::invalid("/document", format!("malformed multipart body: {e}"))
        })?;
        let Some(field) = field else { return Ok(None) };
        if field.name() != Some("document") {
            return Err(ServiceError::invalid(
                "/",
                format!(
                    "unexpected part '{}': after 'info' come only 'document' parts",
                    field.name().unwrap_or_default()
                ),
            ));
        }
        let file_name = field
            .file_name()
            .unwrap_or("document")
            .chars()
            .filter(|c| !c.is_control())
            .take(255)
            .collect();
        Ok(Some(IncomingDocument {
            file_name,
            body: field.map(|c| c.map_err(std::io::Error::other)).boxed(),
        }))
    }
}

/// `multipart/form-data`: first a part `info` (JSON, checked against its schema), then one or
/// more `document` parts, each stored as it arrives.
async fn submit(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
    request: axum::extract::Request,
) -> ApiResult<CertificationCreated> {
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("invalid"))
        .unwrap_or_default()
        .to_owned();
    if media_essence(&content_type) != MULTIPART_FORM_DATA {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type must be {MULTIPART_FORM_DATA}, not '{content_type}'"),
        ));
    }
    let mut multipart =
        <Multipart as axum::extract::FromRequest<AppState>>::from_request(request, &app)
            .await
            .map_err(|e| {
                ApiError::invalid(format!("malformed multipart body: {}", e.body_text()))
            })?;
    // The field borrows the multipart reader: it must be gone before the next part is read.
    let bytes = {
        let mut info = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(&e))?
            .ok_or_else(|| ApiError::invalid("/info: the part 'info' is required"))?;
        if info.name() != Some("info") {
            return Err(ApiError::invalid(
                "/info: the first part must be 'info' (JSON), then the 'document' parts",
            ));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = info.chunk().await.map_err(|e| multipart_error(&e))? {
            if bytes.len() + chunk.len() > app.max_json_body {
                return Err(ApiError::new(
                    ErrorCode::PayloadTooLarge,
                    format!(
                        "the part 'info' exceeds the limit of {} bytes",
                        app.max_json_body
                    ),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        bytes
    };
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("/info: malformed JSON: {e}")))?;
    let violations = app.schemas.validate("provider.certification.json", &value);
    if !violations.is_empty() {
        let detail: Vec<String> = violations.iter().map(|v| format!("/info{v}")).collect();
        return Err(ApiError::invalid(format!(
            "the part 'info' does not match its schema: {}",
            detail.join("; ")
        )));
    }
    let info: CertificationInfo =
        serde_json::from_value(value).map_err(|e| ApiError::invalid(format!("/info: {e}")))?;
    let mut documents = DocumentParts(multipart);
    Ok(Data(
        app.services
            .provider
            .submit_certification(&caller, info, &mut documents)
            .await?,
    ))
}

async fn status(
    State(app): State<AppState>,
    Enterprise(caller): Enterprise,
) -> ApiResult<CertificationStatus> {
    Ok(Data(
        app.services.provider.certification_status(&caller).await?,
    ))
}

async fn list(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ValidQuery(q): ValidQuery<CertificationsQuery>,
) -> ApiResult<CertificationsPage> {
    Ok(Data(
        app.services
            .provider
            .list_certifications(&caller, &q)
            .await?,
    ))
}

async fn document(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ids: Ids,
) -> Result<Response, ApiError> {
    let doc = app
        .services
        .provider
        .document(&caller, ids.get(0), ids.get(1))
        .await?;
    let header = |v: String| HeaderValue::from_str(&v).map_err(|e| ApiError::internal(&e));
    let mut response = Response::new(Body::from_stream(doc.stream));
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(doc.media_type));
    h.insert(CONTENT_LENGTH, header(doc.size.to_string())?);
    // The stored name is the client's; only a safe ASCII rendering goes into the header.
    let safe: String = doc
        .file_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    h.insert(
        CONTENT_DISPOSITION,
        header(format!("attachment; filename=\"{safe}\""))?,
    );
    Ok(response)
}

async fn approve(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ids: Ids,
) -> ApiResult<CertificationDecision> {
    Ok(Data(
        app.services
            .provider
            .review(&caller, ids.get(0), ReviewStatus::Approved, None)
            .await?,
    ))
}

async fn reject(
    State(app): State<AppState>,
    Operator(caller): Operator,
    ids: Ids,
    ValidJson(req): ValidJson<RejectRequest>,
) -> ApiResult<CertificationDecision> {
    Ok(Data(
        app.services
            .provider
            .review(
                &caller,
                ids.get(0),
                ReviewStatus::Rejected,
                Some(req.reason.trim()),
            )
            .await?,
    ))
}

pub fn routes() -> Vec<Route> {
    let doc = |method, path, summary, input| RouteDoc {
        method,
        path,
        summary,
        clause: "",
        tag: "provider",
        auth: true,
        input,
    };
    vec![
        Route {
            doc: doc(
                Method::POST,
                "/v1/provider/certification",
                "Submit real-name certification: a part 'info' (JSON) and 'document' parts \
                 (PDF, JPEG or PNG, each at most 10 MiB)",
                Input::Multipart("provider.certification.json"),
            ),
            // Documents are streamed to storage with their own limits (10 MiB each, 10 at most).
            handler: post(submit)
                .layer(axum::extract::DefaultBodyLimit::max(MAX_CERTIFICATION_BODY)),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/provider/certification",
                "The caller's certification: status, reason, enterprise id, history",
                Input::None,
            ),
            handler: get(status),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/certifications",
                "Certifications for review (operators)",
                Input::Query("admin.certifications.json"),
            ),
            handler: get(list),
        },
        Route {
            doc: doc(
                Method::GET,
                "/v1/admin/certifications/{certificationId}/documents/{documentId}",
                "Download a supporting document (operators)",
                Input::None,
            ),
            handler: get(document),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/certifications/{certificationId}/approve",
                "Approve a certification; assigns the 5-digit enterprise id (operators)",
                Input::None,
            ),
            handler: post(approve),
        },
        Route {
            doc: doc(
                Method::POST,
                "/v1/admin/certifications/{certificationId}/reject",
                "Reject a certification with a reason (operators)",
                Input::Body("admin.review.reject.json"),
            ),
            handler: post(reject),
        },
    ]
}
