//! The use-scenes policy plugin through the real runtime.

use liutong_plugin_runtime::policy::{
    AccessRequest, PolicyError, Principal, UsagePolicy, UseScene,
};

use crate::common;

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

#[tokio::test]
async fn allows_and_counts() {
    let p = common::plugin("policy-use-scenes");
    let mut s = scene("analysis");
    s.remaining_counts = Some(3);
    let v = p
        .evaluate(policy(vec![s]), request("u-1", "analysis"))
        .await
        .unwrap()
        .value
        .unwrap();
    assert!(v.allowed, "{:?}", v.reasons);
    assert_eq!(v.counter_changes.len(), 1);
    assert_eq!(
        (
            v.counter_changes[0].remaining_before,
            v.counter_changes[0].remaining_after
        ),
        (3, 2)
    );

    // Through a group.
    let mut r = request("u-9", "analysis");
    r.groups = vec!["g-lab".into()];
    let v = p
        .evaluate(policy(vec![scene("analysis")]), r)
        .await
        .unwrap()
        .value
        .unwrap();
    assert!(v.allowed, "{:?}", v.reasons);
}

#[tokio::test]
async fn denies_with_every_reason() {
    let p = common::plugin("policy-use-scenes");
    let mut s = scene("analysis");
    s.remaining_counts = Some(0);
    s.env_hard = Some(r#"{"gpu": "A100"}"#.into());
    s.visit_area = Some(r#"["beijing"]"#.into());
    s.cp_center = Some("cc-1".into());
    let mut r = request("nobody", "analysis");
    r.at_ms = 5_000;
    r.env_hard = Some(r#"{"gpu": "V100"}"#.into());
    r.visit_area = Some("\"shanghai\"".into());
    let call = p.evaluate(policy(vec![s]), r).await.unwrap();
    let v = call.value.unwrap();
    assert!(!v.allowed);
    assert!(v.counter_changes.is_empty());
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
    assert!(call.fuel_used.is_some());

    let mut bad = request("u-1", "analysis");
    bad.uses = 0;
    let e = p
        .evaluate(policy(vec![scene("analysis")]), bad)
        .await
        .unwrap()
        .value;
    assert!(matches!(e, Err(PolicyError::InvalidRequest(_))), "{e:?}");
}

#[tokio::test]
async fn wrong_kind_is_an_error_not_a_panic() {
    let p = common::plugin("policy-use-scenes");
    let err = p.charge_trade(common::trade(1, "{}")).await.unwrap_err();
    assert!(err.to_string().contains("policy plugin"), "{err}");
}
