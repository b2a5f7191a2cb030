//! The logic of the `policy-use-scenes` plugin: evaluating an A.3.7 usage policy (relUsers,
//! validity window, useScenes of A.50) against one access request. The JSON shapes are
//! documented in `plugins/guests/policy-use-scenes/README.md`.
//!
//! Every rule is checked and every failure is reported in `reasons`; a malformed policy or
//! request is an error instead (`invalid-policy` / `invalid-request`).

use crate::policy::{AccessRequest, CounterChange, PolicyError, UsagePolicy, UseScene, Verdict};
use serde::Deserialize;
use serde_json::Value;

/// The plugin takes no parameters: its config must be `{}` (or empty).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UseScenesConfig {}

/// An inclusive range of rows or pages: `{"start": 0, "end": 99}` or `[0, 99]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: u64,
    pub end: u64,
}

impl Span {
    pub fn contains(&self, other: &Span) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {}]", self.start, self.end)
    }
}

/// Parses a range; `Ok(None)` for JSON `null` or empty text (no range).
pub fn parse_span(text: &str) -> Result<Option<Span>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let shape = || format!("expected {{\"start\": n, \"end\": m}} or [n, m], not {value}");
    let (start, end) = match &value {
        Value::Null => return Ok(None),
        Value::Object(map) => {
            if map.len() != 2 {
                return Err(shape());
            }
            (map.get("start"), map.get("end"))
        }
        Value::Array(items) if items.len() == 2 => (items.first(), items.get(1)),
        _ => return Err(shape()),
    };
    let (Some(start), Some(end)) = (start.and_then(Value::as_u64), end.and_then(Value::as_u64))
    else {
        return Err(shape());
    };
    if start > end {
        return Err(format!("start {start} is after end {end}"));
    }
    Ok(Some(Span { start, end }))
}

/// Parses an environment value: JSON, or (when the text is not JSON) the trimmed text as a
/// string. `None` for JSON `null` or empty text.
pub fn parse_env(text: &str) -> Option<Value> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match serde_json::from_str(text) {
        Ok(Value::Null) => None,
        Ok(value) => Some(value),
        Err(_) => Some(Value::String(text.to_string())),
    }
}

/// Trimmed and lower-cased, for comparing scene names and environment strings.
pub fn normalize(s: &str) -> String {
    s.trim().to_lowercase()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(normalize(s)),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Whether the request's environment value `got` satisfies the scene's restriction `allowed`:
///
/// - `got` an array: every element must satisfy `allowed` (and it must not be empty);
/// - `allowed` null: anything;
/// - `allowed` a string, number or bool: `got` must be equal (strings trimmed, case-insensitive;
///   `"8"` equals `8`);
/// - `allowed` an array: `got` must satisfy one of its elements;
/// - `allowed` an object: `got` must be an object having every key of `allowed` (keys compared
///   case-insensitively), each value satisfying the restriction under that key; other keys of
///   `got` are ignored.
pub fn env_matches(allowed: &Value, got: &Value) -> bool {
    if let Value::Array(items) = got {
        return !items.is_empty() && items.iter().all(|g| env_matches(allowed, g));
    }
    match allowed {
        Value::Null => true,
        Value::Array(options) => options.iter().any(|a| env_matches(a, got)),
        Value::Object(required) => match got {
            Value::Object(given) => required.iter().all(|(key, want)| {
                want.is_null()
                    || given
                        .iter()
                        .find(|(k, _)| normalize(k) == normalize(key))
                        .is_some_and(|(_, g)| env_matches(want, g))
            }),
            _ => false,
        },
        scalar => match (scalar_text(scalar), scalar_text(got)) {
            (Some(a), Some(g)) => a == g,
            _ => false,
        },
    }
}

fn compact(v: &Value) -> String {
    let text = v.to_string();
    if text.len() > 200 {
        let mut end = 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    }
}

/// Evaluates `request` against `policy`.
pub fn evaluate(policy: &UsagePolicy, request: &AccessRequest) -> Result<Verdict, PolicyError> {
    crate::config::parse_config::<UseScenesConfig>(&policy.config)
        .map_err(PolicyError::InvalidPolicy)?;
    if request.uses == 0 {
        return Err(PolicyError::InvalidRequest(
            "uses must be at least 1".to_string(),
        ));
    }

    let mut reasons = Vec::new();
    let mut changes = Vec::new();

    // relUsers: the user, or one of the user's groups.
    let granted = policy.rel_users.iter().any(|p| {
        if p.is_group {
            request.groups.contains(&p.user_id)
        } else {
            p.user_id == request.user_id
        }
    });
    if !granted {
        reasons.push(format!(
            "relUsers: user \"{}\" is not one of the policy's users or groups",
            request.user_id
        ));
    }

    // Validity window, inclusive.
    if let Some(start) = policy.start_ms
        && request.at_ms < start
    {
        reasons.push(format!(
            "startDate: the policy is valid from {start} ms, the access is at {} ms",
            request.at_ms
        ));
    }
    if let Some(end) = policy.end_ms
        && request.at_ms > end
    {
        reasons.push(format!(
            "endDate: the policy expired at {end} ms, the access is at {} ms",
            request.at_ms
        ));
    }

    // The scene, and its own restrictions.
    let wanted = normalize(&request.scene);
    match policy
        .use_scenes
        .iter()
        .find(|s| !wanted.is_empty() && normalize(&s.scene) == wanted)
    {
        None => {
            let allowed: Vec<&str> = policy.use_scenes.iter().map(|s| s.scene.as_str()).collect();
            reasons.push(format!(
                "useSence: \"{}\" is not one of the policy's use scenes {allowed:?}",
                request.scene
            ));
        }
        Some(scene) => {
            check_scene(scene, request, &mut reasons, &mut changes)?;
        }
    }

    let allowed = reasons.is_empty();
    Ok(Verdict {
        allowed,
        reasons,
        counter_changes: if allowed { changes } else { Vec::new() },
    })
}

fn check_scene(
    scene: &UseScene,
    request: &AccessRequest,
    reasons: &mut Vec<String>,
    changes: &mut Vec<CounterChange>,
) -> Result<(), PolicyError> {
    let name = &scene.scene;

    // Counters: remainingCounts, or counts when nothing was used yet.
    let uses = i64::from(request.uses);
    match scene.remaining_counts.or(scene.counts) {
        Some(left) if left < uses => reasons.push(format!(
            "remainingCounts: scene \"{name}\" has {left} use(s) left, the access needs {uses}"
        )),
        Some(left) => changes.push(CounterChange {
            scene: name.clone(),
            remaining_before: left,
            remaining_after: left - uses,
        }),
        None => {}
    }

    // Preview ranges.
    for (field, what, limit, asked) in [
        (
            "viewRowsRange",
            "rows",
            &scene.view_rows_range,
            &request.view_rows,
        ),
        (
            "viewPageRange",
            "pages",
            &scene.view_page_range,
            &request.view_pages,
        ),
    ] {
        let Some(limit) = limit.as_deref() else {
            continue;
        };
        let Some(limit) = parse_span(limit)
            .map_err(|e| PolicyError::InvalidPolicy(format!("{field} of scene \"{name}\": {e}")))?
        else {
            continue;
        };
        let asked = match asked.as_deref() {
            Some(text) => parse_span(text)
                .map_err(|e| PolicyError::InvalidRequest(format!("{field}: {e}")))?,
            None => None,
        };
        match asked {
            None => reasons.push(format!(
                "{field}: scene \"{name}\" limits previews to {what} {limit}, the request does not say which {what}"
            )),
            Some(asked) if !limit.contains(&asked) => reasons.push(format!(
                "{field}: {what} {asked} are outside the scene's {limit}"
            )),
            Some(_) => {}
        }
    }

    // Environment restrictions.
    for (field, allowed, got) in [
        ("envHard", &scene.env_hard, &request.env_hard),
        ("visitArea", &scene.visit_area, &request.visit_area),
        ("aiFrame", &scene.ai_frame, &request.ai_frame),
        ("envSoft", &scene.env_soft, &request.env_soft),
        ("cpCenter", &scene.cp_center, &request.cp_center),
    ] {
        let Some(allowed) = allowed.as_deref().and_then(parse_env) else {
            continue;
        };
        match got.as_deref().and_then(parse_env) {
            None => reasons.push(format!(
                "{field}: scene \"{name}\" requires {}, the request gives none",
                compact(&allowed)
            )),
            Some(got) if !env_matches(&allowed, &got) => reasons.push(format!(
                "{field}: {} does not match the scene's {}",
                compact(&got),
                compact(&allowed)
            )),
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Principal;
    use serde_json::json;

    fn scene(name: &str) -> UseScene {
        UseScene {
            scene: name.into(),
            view_rows_range: None,
            view_page_range: None,
            counts: None,
            remaining_counts: None,
            env_hard: None,
            visit_area: None,
            ai_frame: None,
            env_soft: None,
            cp_center: None,
        }
    }

    fn policy(scenes: Vec<UseScene>) -> UsagePolicy {
        UsagePolicy {
            policy_id: "p-1".into(),
            policy_name: "trial".into(),
            data_id: "d-1".into(),
            rel_users: vec![
                Principal {
                    user_id: "u-1".into(),
                    user_name: "carol".into(),
                    is_group: false,
                },
                Principal {
                    user_id: "g-lab".into(),
                    user_name: "lab".into(),
                    is_group: true,
                },
            ],
            start_ms: Some(1_000),
            end_ms: Some(2_000),
            use_scenes: scenes,
            config: "{}".into(),
        }
    }

    fn request(user: &str, scene: &str) -> AccessRequest {
        AccessRequest {
            user_id: user.into(),
            groups: vec![],
            scene: scene.into(),
            uses: 1,
            at_ms: 1_500,
            view_rows: None,
            view_pages: None,
            env_hard: None,
            visit_area: None,
            ai_frame: None,
            env_soft: None,
            cp_center: None,
        }
    }

    #[test]
    fn allows_a_plain_access() {
        let v = evaluate(
            &policy(vec![scene("Training")]),
            &request("u-1", " training "),
        )
        .unwrap();
        assert!(v.allowed, "{:?}", v.reasons);
        assert!(v.reasons.is_empty() && v.counter_changes.is_empty());
    }

    #[test]
    fn users_and_groups() {
        let p = policy(vec![scene("training")]);
        let mut r = request("u-2", "training");
        let v = evaluate(&p, &r).unwrap();
        assert!(!v.allowed);
        assert_eq!(v.reasons.len(), 1);
        assert!(v.reasons[0].starts_with("relUsers"));
        r.groups = vec!["g-other".into(), "g-lab".into()];
        assert!(evaluate(&p, &r).unwrap().allowed);
        // A group id does not grant a user of the same id, nor a user id a group.
        let mut r = request("g-lab", "training");
        assert!(!evaluate(&p, &r).unwrap().allowed);
        r.user_id = "x".into();
        r.groups = vec!["u-1".into()];
        assert!(!evaluate(&p, &r).unwrap().allowed);
    }

    #[test]
    fn window_is_inclusive() {
        let p = policy(vec![scene("training")]);
        let mut r = request("u-1", "training");
        for (at, ok) in [(999, false), (1_000, true), (2_000, true), (2_001, false)] {
            r.at_ms = at;
            assert_eq!(evaluate(&p, &r).unwrap().allowed, ok, "{at}");
        }
        let mut open = p.clone();
        open.start_ms = None;
        open.end_ms = None;
        r.at_ms = i64::MIN;
        assert!(evaluate(&open, &r).unwrap().allowed);
    }

    #[test]
    fn counters() {
        let mut s = scene("inference");
        s.counts = Some(10);
        s.remaining_counts = Some(3);
        let p = policy(vec![s.clone()]);
        let mut r = request("u-1", "INFERENCE");
        r.uses = 3;
        let v = evaluate(&p, &r).unwrap();
        assert!(v.allowed);
        assert_eq!(
            v.counter_changes,
            vec![CounterChange {
                scene: "inference".into(),
                remaining_before: 3,
                remaining_after: 0
            }]
        );
        r.uses = 4;
        let v = evaluate(&p, &r).unwrap();
        assert!(!v.allowed && v.counter_changes.is_empty());
        assert!(v.reasons[0].starts_with("remainingCounts"));
        // counts is used when remaining is not given.
        s.remaining_counts = None;
        let v = evaluate(&policy(vec![s]), &r).unwrap();
        assert_eq!(v.counter_changes[0].remaining_after, 6);
        r.uses = 0;
        assert!(matches!(
            evaluate(&p, &r),
            Err(PolicyError::InvalidRequest(_))
        ));
    }

    #[test]
    fn spans() {
        assert_eq!(
            parse_span(r#"{"start": 0, "end": 100}"#),
            Ok(Some(Span { start: 0, end: 100 }))
        );
        assert_eq!(parse_span("[5, 5]"), Ok(Some(Span { start: 5, end: 5 })));
        assert_eq!(parse_span("null"), Ok(None));
        assert_eq!(parse_span(" "), Ok(None));
        for bad in [
            "[1]",
            "[1, 2, 3]",
            "[-1, 2]",
            "[3, 2]",
            r#"{"start": 0}"#,
            r#"{"start": 0, "end": 1, "step": 1}"#,
            r#"{"rows": [0, 1]}"#,
            "\"0-100\"",
            "[0.5, 2]",
            "nope",
        ] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn preview_ranges() {
        let mut s = scene("preview");
        s.view_rows_range = Some(r#"{"start": 0, "end": 99}"#.into());
        s.view_page_range = Some("[1, 10]".into());
        let p = policy(vec![s]);
        let mut r = request("u-1", "preview");
        let v = evaluate(&p, &r).unwrap();
        assert_eq!(v.reasons.len(), 2, "{:?}", v.reasons);
        assert!(v.reasons[0].starts_with("viewRowsRange"));
        assert!(v.reasons[1].starts_with("viewPageRange"));
        r.view_rows = Some("[0, 99]".into());
        r.view_pages = Some(r#"{"start": 2, "end": 3}"#.into());
        assert!(evaluate(&p, &r).unwrap().allowed);
        r.view_rows = Some("[50, 100]".into());
        let v = evaluate(&p, &r).unwrap();
        assert_eq!(v.reasons.len(), 1);
        assert!(v.reasons[0].contains("[50, 100]"));
        r.view_rows = Some("[5]".into());
        assert!(matches!(
            evaluate(&p, &r),
            Err(PolicyError::InvalidRequest(_))
        ));
        let mut bad = scene("preview");
        bad.view_rows_range = Some("{\"rows\": [0, 1]}".into());
        assert!(matches!(
            evaluate(&policy(vec![bad]), &r),
            Err(PolicyError::InvalidPolicy(_))
        ));
    }

    #[test]
    fn env_shapes() {
        assert!(env_matches(&json!("PyTorch"), &json!(" pytorch ")));
        assert!(!env_matches(&json!("pytorch"), &json!("tensorflow")));
        assert!(env_matches(
            &json!(["beijing", "shanghai"]),
            &json!("Shanghai")
        ));
        assert!(!env_matches(
            &json!(["beijing", "shanghai"]),
            &json!("shenzhen")
        ));
        assert!(env_matches(&json!(["a", "b"]), &json!(["b", "a"])));
        assert!(!env_matches(&json!(["a", "b"]), &json!(["b", "c"])));
        assert!(!env_matches(&json!("a"), &json!([])));
        assert!(env_matches(&json!(8), &json!("8")));
        assert!(env_matches(
            &json!({"gpu": ["A100", "H100"], "memoryGb": 80}),
            &json!({"GPU": "a100", "memoryGb": 80, "cpu": "x86"})
        ));
        assert!(!env_matches(
            &json!({"gpu": "A100", "os": "linux"}),
            &json!({"gpu": "A100"})
        ));
        assert!(!env_matches(&json!({"gpu": "A100"}), &json!("A100")));
        assert!(env_matches(&json!({"gpu": null}), &json!({})));
        assert!(!env_matches(&json!([]), &json!("x")));
        assert_eq!(parse_env("beijing"), Some(json!("beijing")));
        assert_eq!(parse_env("\"beijing\""), Some(json!("beijing")));
        assert_eq!(parse_env("null"), None);
        assert_eq!(parse_env(""), None);
    }

    #[test]
    fn every_failure_is_reported() {
        let mut s = scene("analysis");
        s.remaining_counts = Some(0);
        s.env_hard = Some(r#"{"gpu": "A100"}"#.into());
        s.visit_area = Some(r#"["beijing"]"#.into());
        s.ai_frame = Some("\"pytorch\"".into());
        s.env_soft = Some("null".into());
        s.cp_center = Some("cc-1".into());
        let p = policy(vec![s]);
        let mut r = request("nobody", "analysis");
        r.at_ms = 5_000;
        r.env_hard = Some(r#"{"gpu": "V100"}"#.into());
        r.visit_area = Some("\"shanghai\"".into());
        r.ai_frame = Some("\"PyTorch\"".into());
        let v = evaluate(&p, &r).unwrap();
        assert!(!v.allowed);
        let fields: Vec<&str> = v
            .reasons
            .iter()
            .map(|r| r.split(':').next().unwrap())
            .collect();
        assert_eq!(
            fields,
            [
                "relUsers",
                "endDate",
                "remainingCounts",
                "envHard",
                "visitArea",
                "cpCenter"
            ]
        );
        assert!(v.counter_changes.is_empty());
        // Unknown scene plus a bad user.
        let v = evaluate(&p, &request("nobody", "export")).unwrap();
        assert_eq!(v.reasons.len(), 2);
        assert!(v.reasons[1].starts_with("useSence"));
    }

    #[test]
    fn config_must_be_empty() {
        let mut p = policy(vec![scene("x")]);
        p.config = r#"{"strict": true}"#.into();
        assert!(matches!(
            evaluate(&p, &request("u-1", "x")),
            Err(PolicyError::InvalidPolicy(_))
        ));
        p.config = String::new();
        assert!(evaluate(&p, &request("u-1", "x")).unwrap().allowed);
    }
}
