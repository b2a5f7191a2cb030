//! Usage policies of controlled data (A.3.7): what a trusted data space sets up for a buyer's
//! license, the counters that limit uses exactly, and the decisions taken on every access.
//!
//! Lifecycle of a policy (`status`, the A.52 integer):
//!
//! ```text
//! 1 active ──every counted scene used up──▶ 2 exhausted
//!    │ └────────endDate passes──────────▶ 3 expired
//!    └──────────revoke──────────────────▶ 0 revoked
//! ```
//!
//! Status is derived when read, never stored: revoked wins over expired, expired over
//! exhausted. A policy is exhausted when every one of its use scenes has `counts` and none has a
//! use left (a scene without `counts` is unlimited, so such a policy is never exhausted).
//!
//! The decision itself is the policy plugin's (`wit/policy`), called by the host with the
//! current counters; the host checks the verdict (`check_verdict`), then applies the counter
//! changes as decrements in the transaction that records the decision.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::timefmt::{from_millis, parse_datetime, to_rfc3339, to_standard};
use super::{AccountId, Caller, DomainError, PolicyId, Role};

pub const ALLOW: &str = "ALLOW";
pub const DENY: &str = "DENY";

/// One user or group a policy grants (table A.49).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelUser {
    #[serde(rename = "userId")]
    pub user_id: String,
    #[serde(rename = "userName")]
    pub user_name: String,
    /// 0: a user, 1: a group.
    #[serde(rename = "isGroup")]
    pub is_group: u8,
}

/// One use scene (table A.50), with the standard's spelling `useSence`. The JSON fields are the
/// standard's `json` values; `None` (absent or `null`) does not restrict that aspect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UseScene {
    #[serde(rename = "useSence")]
    pub use_sence: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_rows_range: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view_page_range: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_counts: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_hard: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit_area: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ai_frame: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_soft: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cp_center: Option<Value>,
}

/// `POST /deliverDatasets` (A.3.7, table A.48).
#[derive(Debug, Clone, Deserialize)]
pub struct DeliverDatasets {
    pub licenses: Value,
    #[serde(rename = "dataID")]
    pub data_id: String,
    #[serde(rename = "policyName")]
    pub policy_name: String,
    #[serde(rename = "relUsers")]
    pub rel_users: Vec<RelUser>,
    #[serde(rename = "startDate", default)]
    pub start_date: Option<String>,
    #[serde(rename = "endDate", default)]
    pub end_date: Option<String>,
    #[serde(rename = "useScenes")]
    pub use_scenes: Vec<UseScene>,
}

fn one() -> u32 {
    1
}

/// `POST /v1/policies/{policyId}/access`: one use of the data, as the data space (the
/// enforcement point) describes it. The environment fields are JSON values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequest {
    pub request_id: String,
    pub user_id: String,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(rename = "useSence")]
    pub use_sence: String,
    #[serde(default = "one")]
    pub uses: u32,
    #[serde(default)]
    pub view_rows: Option<Value>,
    #[serde(default)]
    pub view_pages: Option<Value>,
    #[serde(default)]
    pub env_hard: Option<Value>,
    #[serde(default)]
    pub visit_area: Option<Value>,
    #[serde(default)]
    pub ai_frame: Option<Value>,
    #[serde(default)]
    pub env_soft: Option<Value>,
    #[serde(default)]
    pub cp_center: Option<Value>,
}

/// `GET /v1/policies` query.
#[derive(Debug, Clone, Deserialize)]
pub struct PoliciesQuery {
    #[serde(rename = "dataID")]
    pub data_id: String,
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// `GET /v1/policies/{policyId}/decisions` query.
#[derive(Debug, Clone, Deserialize)]
pub struct DecisionsQuery {
    pub limit: Option<String>,
    pub offset: Option<String>,
}

/// A use scene's counter: how many uses it allowed and how many are left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub scene: String,
    pub counts: i64,
    pub remaining: i64,
}

/// A policy as stored, with its counters as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub id: PolicyId,
    pub name: String,
    pub resource_id: String,
    pub data_id: String,
    pub confirm_id: String,
    pub licensee_account_id: AccountId,
    /// The licensee's username, as the license names it.
    pub licensee_name: String,
    pub data_space_account_id: AccountId,
    pub rel_users: Vec<RelUser>,
    /// As set up, without `remainingCounts` (the counters hold those).
    pub use_scenes: Vec<UseScene>,
    pub starts_at: i64,
    /// Exclusive, like a license's `endDate`.
    pub ends_at: i64,
    pub request_sha256: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub revoked_by: Option<String>,
    pub counters: Vec<Counter>,
}

/// The A.52 `status` of a policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyStatus {
    Revoked,
    Active,
    Exhausted,
    Expired,
}

impl PolicyStatus {
    /// The integer A.52 returns.
    pub fn code(self) -> u8 {
        match self {
            PolicyStatus::Revoked => 0,
            PolicyStatus::Active => 1,
            PolicyStatus::Exhausted => 2,
            PolicyStatus::Expired => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyStatus::Revoked => "revoked",
            PolicyStatus::Active => "active",
            PolicyStatus::Exhausted => "exhausted",
            PolicyStatus::Expired => "expired",
        }
    }
}

impl Policy {
    pub fn status(&self, now: i64) -> PolicyStatus {
        if self.revoked_at.is_some() {
            PolicyStatus::Revoked
        } else if now >= self.ends_at {
            PolicyStatus::Expired
        } else if !self.use_scenes.is_empty()
            && self.use_scenes.len() == self.counters.len()
            && self.counters.iter().all(|c| c.remaining == 0)
        {
            PolicyStatus::Exhausted
        } else {
            PolicyStatus::Active
        }
    }

    /// Why an access at `now` is denied before any plugin is asked: the policy is revoked,
    /// expired or not valid yet.
    pub fn closed_reason(&self, now: i64) -> Option<String> {
        if let Some(at) = self.revoked_at {
            return Some(format!(
                "revoked: the policy was revoked at {}",
                to_rfc3339(from_millis(at))
            ));
        }
        if now >= self.ends_at {
            return Some(format!(
                "endDate: the policy expired at {}",
                to_standard(from_millis(self.ends_at))
            ));
        }
        if now < self.starts_at {
            return Some(format!(
                "startDate: the policy is valid from {}",
                to_standard(from_millis(self.starts_at))
            ));
        }
        None
    }

    /// The counters as `{scene: remaining}`.
    pub fn remaining(&self) -> BTreeMap<String, i64> {
        self.counters
            .iter()
            .map(|c| (c.scene.clone(), c.remaining))
            .collect()
    }

    /// The data space that set it up and operators manage it; its licensee may read it.
    pub fn check_reader(&self, caller: &Caller) -> Result<(), DomainError> {
        if caller.account_id == self.data_space_account_id
            || caller.account_id == self.licensee_account_id
            || caller.role == Role::Operator
        {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "policy '{}' is visible to the data space that set it up, its licensee and \
                 operators only",
                self.id
            )))
        }
    }

    /// Only the data space that set it up enforces it (and asks for decisions).
    pub fn check_enforcer(&self, caller: &Caller) -> Result<(), DomainError> {
        if caller.account_id == self.data_space_account_id {
            Ok(())
        } else {
            Err(DomainError::Forbidden(format!(
                "policy '{}' belongs to another data space",
                self.id
            )))
        }
    }

    /// The use scenes with their current `remainingCounts`.
    pub fn scenes_view(&self) -> Vec<UseScene> {
        self.use_scenes
            .iter()
            .map(|s| {
                let mut s = s.clone();
                s.remaining_counts = self
                    .counters
                    .iter()
                    .find(|c| c.scene == s.use_sence)
                    .map(|c| c.remaining);
                s
            })
            .collect()
    }
}

/// A scene name as scenes are compared: trimmed and lower-cased.
pub fn scene_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The validity window and counters of a new policy, checked against its license.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyTerms {
    pub starts_at: i64,
    pub ends_at: i64,
    /// The scenes without `remainingCounts`.
    pub use_scenes: Vec<UseScene>,
    pub counters: Vec<Counter>,
}

/// `[start, end]` of a preview range (`{"start": n, "end": m}` or `[n, m]`), when it is one.
fn range_bounds(value: &Value) -> Option<(u64, u64)> {
    match value {
        Value::Object(map) => Some((map.get("start")?.as_u64()?, map.get("end")?.as_u64()?)),
        Value::Array(items) if items.len() == 2 => Some((items[0].as_u64()?, items[1].as_u64()?)),
        _ => None,
    }
}

/// Checks a preview range's order (its shape is the schema's); `field` is its JSON pointer.
pub fn check_range(field: &str, value: Option<&Value>) -> Result<(), DomainError> {
    if let Some((start, end)) = value.and_then(range_bounds)
        && start > end
    {
        return Err(DomainError::invalid(
            field,
            format!("start {start} is after end {end}"),
        ));
    }
    Ok(())
}

/// The terms of a new policy from its request, for a license valid from `license_start` to
/// `license_end` (milliseconds, end exclusive), at `now`.
///
/// - `startDate` / `endDate` default to the license's term and must lie within it, start before
///   end, and the end must be in the future.
/// - Scenes: names not blank and distinct (trimmed, case-insensitive, as the plugins compare
///   them); `remainingCounts` needs `counts` and is at most `counts`; it starts at `counts` when
///   not given; preview ranges start ≤ end.
pub fn terms(
    req: &DeliverDatasets,
    license_start: i64,
    license_end: i64,
    now: i64,
) -> Result<PolicyTerms, DomainError> {
    let parse = |field: &str, text: &Option<String>| -> Result<Option<i64>, DomainError> {
        text.as_deref()
            .map(|t| {
                parse_datetime(field, t).map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            })
            .transpose()
    };
    let starts_at = parse("/startDate", &req.start_date)?.unwrap_or(license_start);
    let ends_at = parse("/endDate", &req.end_date)?.unwrap_or(license_end);
    if starts_at < license_start {
        return Err(DomainError::invalid(
            "/startDate",
            format!(
                "is before the license's startData {}",
                to_standard(from_millis(license_start))
            ),
        ));
    }
    if ends_at > license_end {
        return Err(DomainError::invalid(
            "/endDate",
            format!(
                "is after the license's endDate {}",
                to_standard(from_millis(license_end))
            ),
        ));
    }
    if ends_at <= starts_at {
        return Err(DomainError::invalid("/endDate", "must be after startDate"));
    }
    if ends_at <= now {
        return Err(DomainError::invalid("/endDate", "is in the past"));
    }

    let mut seen: Vec<String> = Vec::new();
    let mut use_scenes = Vec::with_capacity(req.use_scenes.len());
    let mut counters = Vec::new();
    for (i, scene) in req.use_scenes.iter().enumerate() {
        let at = |field: &str| format!("/useScenes/{i}/{field}");
        let key = scene_key(&scene.use_sence);
        if key.is_empty() {
            return Err(DomainError::invalid(&at("useSence"), "is blank"));
        }
        if seen.contains(&key) {
            return Err(DomainError::invalid(
                &at("useSence"),
                format!(
                    "scene \"{}\" is given twice (scenes are compared trimmed and \
                     case-insensitively)",
                    scene.use_sence
                ),
            ));
        }
        seen.push(key);
        check_range(&at("viewRowsRange"), scene.view_rows_range.as_ref())?;
        check_range(&at("viewPageRange"), scene.view_page_range.as_ref())?;
        match (scene.counts, scene.remaining_counts) {
            (None, Some(_)) => {
                return Err(DomainError::invalid(
                    &at("remainingCounts"),
                    "needs counts (the scene's limit of uses)",
                ));
            }
            (Some(counts), Some(remaining)) if remaining > counts => {
                return Err(DomainError::invalid(
                    &at("remainingCounts"),
                    format!("{remaining} is above counts {counts}"),
                ));
            }
            (Some(counts), remaining) => counters.push(Counter {
                scene: scene.use_sence.clone(),
                counts,
                remaining: remaining.unwrap_or(counts),
            }),
            (None, None) => {}
        }
        let mut stored = scene.clone();
        stored.remaining_counts = None;
        use_scenes.push(stored);
    }
    Ok(PolicyTerms {
        starts_at,
        ends_at,
        use_scenes,
        counters,
    })
}

/// A counter change a policy plugin asks for when it allows an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterChange {
    pub scene: String,
    pub before: i64,
    pub after: i64,
}

/// Checks a plugin's verdict against the counters it was given and returns the decrements to
/// apply, `(scene, uses)`, in scene order (the order rows are locked in, so concurrent
/// decisions never wait on each other in a cycle). Zero changes are dropped.
///
/// Refused as malformed: changes on a denial; on an allowance, a change of a scene without a
/// counter or of one scene twice, a `before` other than the counter given, an `after` below 0
/// or above `before`.
pub fn check_verdict(
    counters: &[Counter],
    allowed: bool,
    changes: &[CounterChange],
) -> Result<Vec<(String, i64)>, String> {
    if !allowed {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        return Err("a denial with counter changes".to_owned());
    }
    let mut decrements: Vec<(String, i64)> = Vec::with_capacity(changes.len());
    for change in changes {
        let Some(counter) = counters.iter().find(|c| c.scene == change.scene) else {
            return Err(format!(
                "a counter change of scene \"{}\", which has no counter",
                change.scene
            ));
        };
        if change.before != counter.remaining {
            return Err(format!(
                "scene \"{}\" had {} use(s) left, the plugin says {}",
                change.scene, counter.remaining, change.before
            ));
        }
        if change.after < 0 || change.after > change.before {
            return Err(format!(
                "scene \"{}\" cannot go from {} to {} use(s) left",
                change.scene, change.before, change.after
            ));
        }
        if decrements.iter().any(|(s, _)| *s == change.scene) {
            return Err(format!("scene \"{}\" is changed twice", change.scene));
        }
        let uses = change.before - change.after;
        if uses > 0 {
            decrements.push((change.scene.clone(), uses));
        }
    }
    decrements.sort();
    Ok(decrements)
}

/// One access decision, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRecord {
    pub id: String,
    pub policy_id: PolicyId,
    pub request_id: String,
    pub request_sha256: String,
    pub at: i64,
    pub user_id: String,
    pub scene: String,
    pub uses: i64,
    /// The policy plugin that decided (`None` when the host denied before asking one).
    pub plugin: Option<(String, String)>,
    pub allowed: bool,
    pub reasons: Vec<String>,
    /// `{scene: remaining}` of every counter of the policy before and after the decision.
    pub counters_before: BTreeMap<String, i64>,
    pub counters_after: BTreeMap<String, i64>,
}

impl DecisionRecord {
    /// Sets the counters this decision changed to what the database returned after the
    /// decrement (`exact`: `(scene, remaining after, uses)`), so the log shows the counters as
    /// they were, whatever concurrent decisions did between reading and writing.
    pub fn with_exact(mut self, exact: &[(String, i64, i64)]) -> Self {
        for (scene, after, uses) in exact {
            self.counters_before.insert(scene.clone(), after + uses);
            self.counters_after.insert(scene.clone(), *after);
        }
        self
    }

    pub fn decision(&self) -> &'static str {
        if self.allowed { ALLOW } else { DENY }
    }
}

/// A.52: the answer of `/deliverDatasets`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PolicyCreated {
    pub policy_id: String,
    pub policy_name: String,
    pub data_id: String,
    pub start_date: String,
    pub end_date: String,
    pub status: u8,
    pub create_time: String,
}

impl PolicyCreated {
    pub fn of(p: &Policy, now: i64) -> Self {
        PolicyCreated {
            policy_id: p.id.to_string(),
            policy_name: p.name.clone(),
            data_id: p.data_id.clone(),
            start_date: to_standard(from_millis(p.starts_at)),
            end_date: to_standard(from_millis(p.ends_at)),
            status: p.status(now).code(),
            create_time: to_standard(from_millis(p.created_at)),
        }
    }
}

/// A policy as `GET /v1/policies/{policyId}` shows it: the A.52 fields and what it governs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyView {
    #[serde(flatten)]
    pub created: PolicyCreated,
    /// `active`, `exhausted`, `expired` or `revoked`: `status` in words.
    pub status_name: &'static str,
    #[serde(rename = "licensesID")]
    pub licenses_id: Option<String>,
    #[serde(rename = "confirmID")]
    pub confirm_id: String,
    pub licensee: String,
    pub rel_users: Vec<RelUser>,
    pub use_scenes: Vec<UseScene>,
    pub remaining_counts: BTreeMap<String, i64>,
    pub revoke_time: Option<String>,
}

impl PolicyView {
    pub fn of(p: &Policy, licenses_id: Option<String>, now: i64) -> Self {
        PolicyView {
            created: PolicyCreated::of(p, now),
            status_name: p.status(now).as_str(),
            licenses_id,
            confirm_id: p.confirm_id.clone(),
            licensee: p.licensee_name.clone(),
            rel_users: p.rel_users.clone(),
            use_scenes: p.scenes_view(),
            remaining_counts: p.remaining(),
            revoke_time: p.revoked_at.map(|t| to_standard(from_millis(t))),
        }
    }
}

/// The answer of an access request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AccessView {
    pub decision: &'static str,
    pub reasons: Vec<String>,
    pub remaining_counts: BTreeMap<String, i64>,
    pub decision_id: String,
}

impl From<&DecisionRecord> for AccessView {
    fn from(d: &DecisionRecord) -> Self {
        AccessView {
            decision: d.decision(),
            reasons: d.reasons.clone(),
            remaining_counts: d.counters_after.clone(),
            decision_id: d.id.clone(),
        }
    }
}

/// One entry of the decision log.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionView {
    pub decision_id: String,
    pub request_id: String,
    /// RFC 3339, milliseconds.
    pub time: String,
    pub request_sha256: String,
    pub user_id: String,
    #[serde(rename = "useSence")]
    pub use_sence: String,
    pub uses: i64,
    pub plugin: Option<String>,
    pub plugin_version: Option<String>,
    pub decision: &'static str,
    pub reasons: Vec<String>,
    pub counters_before: BTreeMap<String, i64>,
    pub counters_after: BTreeMap<String, i64>,
}

impl From<DecisionRecord> for DecisionView {
    fn from(d: DecisionRecord) -> Self {
        let decision = d.decision();
        let (plugin, plugin_version) = match d.plugin {
            Some((id, version)) => (Some(id), Some(version)),
            None => (None, None),
        };
        DecisionView {
            decision_id: d.id,
            request_id: d.request_id,
            time: to_rfc3339(from_millis(d.at)),
            request_sha256: d.request_sha256,
            user_id: d.user_id,
            use_sence: d.scene,
            uses: d.uses,
            plugin,
            plugin_version,
            decision,
            reasons: d.reasons,
            counters_before: d.counters_before,
            counters_after: d.counters_after,
        }
    }
}

/// A page of policies.
#[derive(Debug, Serialize)]
pub struct PoliciesPage {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub policies: Vec<PolicyView>,
}

/// A page of the decision log, newest first.
#[derive(Debug, Serialize)]
pub struct DecisionsPage {
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
    pub decisions: Vec<DecisionView>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    const DAY: i64 = 86_400_000;

    fn request(scenes: Value) -> DeliverDatasets {
        serde_json::from_value(json!({
            "licenses": {},
            "dataID": "d",
            "policyName": "p",
            "relUsers": [{"userId": "u", "userName": "U", "isGroup": 0}],
            "useScenes": scenes,
        }))
        .expect("request")
    }

    fn field_of(e: DomainError) -> String {
        match e {
            DomainError::InvalidArgument { field, .. } => field,
            other => panic!("not an invalid argument: {other}"),
        }
    }

    #[test]
    fn terms_default_to_the_license_and_start_counters_at_counts() {
        let req = request(json!([
            {"useSence": "train", "counts": 5},
            {"useSence": "Preview", "counts": 9, "remainingCounts": 4, "viewRowsRange": [0, 9]},
            {"useSence": "view"}
        ]));
        let t = terms(&req, 10 * DAY, 20 * DAY, 11 * DAY).expect("terms");
        assert_eq!((t.starts_at, t.ends_at), (10 * DAY, 20 * DAY));
        assert_eq!(
            t.counters,
            vec![
                Counter {
                    scene: "train".into(),
                    counts: 5,
                    remaining: 5
                },
                Counter {
                    scene: "Preview".into(),
                    counts: 9,
                    remaining: 4
                },
            ]
        );
        assert!(t.use_scenes.iter().all(|s| s.remaining_counts.is_none()));
    }

    #[test]
    fn terms_refuse_what_cannot_work() {
        let license = (10 * DAY, 20 * DAY);
        let cases = [
            (
                json!([{"useSence": "a"}, {"useSence": " A "}]),
                "/useScenes/1/useSence",
            ),
            (json!([{"useSence": "  "}]), "/useScenes/0/useSence"),
            (
                json!([{"useSence": "a", "remainingCounts": 1}]),
                "/useScenes/0/remainingCounts",
            ),
            (
                json!([{"useSence": "a", "counts": 1, "remainingCounts": 2}]),
                "/useScenes/0/remainingCounts",
            ),
            (
                json!([{"useSence": "a", "viewPageRange": {"start": 5, "end": 4}}]),
                "/useScenes/0/viewPageRange",
            ),
        ];
        for (scenes, field) in cases {
            let e = terms(&request(scenes), license.0, license.1, 11 * DAY).unwrap_err();
            assert_eq!(field_of(e), field);
        }
        let mut req = request(json!([{"useSence": "a"}]));
        req.start_date = Some("1970-01-01 00:00:00".into());
        assert_eq!(
            field_of(terms(&req, license.0, license.1, 11 * DAY).unwrap_err()),
            "/startDate"
        );
        req.start_date = None;
        req.end_date = Some("1970-12-31 00:00:00".into());
        assert_eq!(
            field_of(terms(&req, license.0, license.1, 11 * DAY).unwrap_err()),
            "/endDate"
        );
        req.end_date = Some("1970-01-15 00:00:00".into());
        // Within the license, but already over.
        assert_eq!(
            field_of(terms(&req, license.0, license.1, 16 * DAY).unwrap_err()),
            "/endDate"
        );
        req.start_date = Some("1970-01-15 00:00:00".into());
        assert_eq!(
            field_of(terms(&req, license.0, license.1, 11 * DAY).unwrap_err()),
            "/endDate"
        );
        req.start_date = Some("15/01/1970".into());
        assert_eq!(
            field_of(terms(&req, license.0, license.1, 11 * DAY).unwrap_err()),
            "/startDate"
        );
    }

    fn policy(counters: Vec<Counter>, scenes: usize) -> Policy {
        Policy {
            id: "pol_1".into(),
            name: "p".into(),
            resource_id: "r".into(),
            data_id: "d".into(),
            confirm_id: "c".into(),
            licensee_account_id: "usr_b".into(),
            licensee_name: "b".into(),
            data_space_account_id: "usr_s".into(),
            rel_users: Vec::new(),
            use_scenes: (0..scenes)
                .map(|i| UseScene {
                    use_sence: format!("s{i}"),
                    view_rows_range: None,
                    view_page_range: None,
                    counts: None,
                    remaining_counts: None,
                    env_hard: None,
                    visit_area: None,
                    ai_frame: None,
                    env_soft: None,
                    cp_center: None,
                })
                .collect(),
            starts_at: 0,
            ends_at: 100,
            request_sha256: String::new(),
            created_at: 0,
            revoked_at: None,
            revoked_by: None,
            counters,
        }
    }

    fn counter(scene: &str, remaining: i64) -> Counter {
        Counter {
            scene: scene.into(),
            counts: 10,
            remaining,
        }
    }

    #[test]
    fn status_precedence() {
        let mut p = policy(vec![counter("s0", 0)], 1);
        assert_eq!(p.status(50), PolicyStatus::Exhausted);
        assert_eq!(p.status(100), PolicyStatus::Expired);
        p.revoked_at = Some(10);
        assert_eq!(p.status(100), PolicyStatus::Revoked);
        assert_eq!(p.status(100).code(), 0);
        // An unlimited scene keeps it active.
        let p = policy(vec![counter("s0", 0)], 2);
        assert_eq!(p.status(50), PolicyStatus::Active);
        assert!(p.closed_reason(50).is_none());
        assert!(
            p.closed_reason(100)
                .is_some_and(|r| r.starts_with("endDate"))
        );
    }

    #[test]
    fn verdicts_are_checked() {
        let counters = [counter("a", 3), counter("b", 1)];
        let ch = |scene: &str, before, after| CounterChange {
            scene: scene.into(),
            before,
            after,
        };
        assert_eq!(
            check_verdict(&counters, true, &[ch("b", 1, 0), ch("a", 3, 1)]),
            Ok(vec![("a".into(), 2), ("b".into(), 1)])
        );
        assert_eq!(check_verdict(&counters, true, &[ch("a", 3, 3)]), Ok(vec![]));
        for bad in [
            vec![ch("c", 1, 0)],
            vec![ch("a", 2, 1)],
            vec![ch("a", 3, 4)],
            vec![ch("a", 3, -1)],
            vec![ch("a", 3, 2), ch("a", 3, 2)],
        ] {
            assert!(check_verdict(&counters, true, &bad).is_err(), "{bad:?}");
        }
        assert!(check_verdict(&counters, false, &[ch("a", 3, 2)]).is_err());
        assert_eq!(check_verdict(&counters, false, &[]), Ok(vec![]));
    }

    proptest! {
        /// Whatever a plugin answers, what the host applies decrements known counters by at
        /// least one and at most what they had, each scene once, in lock order.
        #[test]
        fn accepted_decrements_stay_within_the_counters(
            remaining in proptest::collection::vec(0i64..5, 1..4),
            changes in proptest::collection::vec((0usize..5, -2i64..7, -2i64..7), 0..5),
        ) {
            let counters: Vec<Counter> = remaining
                .iter()
                .enumerate()
                .map(|(i, r)| counter(&format!("s{i}"), *r))
                .collect();
            let changes: Vec<CounterChange> = changes
                .into_iter()
                .map(|(i, before, after)| CounterChange { scene: format!("s{i}"), before, after })
                .collect();
            if let Ok(decrements) = check_verdict(&counters, true, &changes) {
                let scenes: Vec<&String> = decrements.iter().map(|(s, _)| s).collect();
                let mut sorted = scenes.clone();
                sorted.sort();
                sorted.dedup();
                prop_assert_eq!(&scenes, &sorted);
                for (scene, uses) in &decrements {
                    let c = counters.iter().find(|c| &c.scene == scene);
                    prop_assert!(c.is_some());
                    prop_assert!(*uses >= 1 && *uses <= c.map_or(0, |c| c.remaining));
                }
            }
        }
    }
}
