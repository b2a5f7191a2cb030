//! The `use-scenes` usage policy (A.3.7 / A.50); the logic is in
//! [`liutong_plugin_sdk::use_scenes`], the JSON shapes in this crate's README.md.

use liutong_plugin_sdk::policy::{AccessRequest, Guest, PolicyError, UsagePolicy, Verdict};

struct Policy;

impl Guest for Policy {
    fn evaluate(policy: UsagePolicy, request: AccessRequest) -> Result<Verdict, PolicyError> {
        liutong_plugin_sdk::use_scenes::evaluate(&policy, &request)
    }
}

liutong_plugin_sdk::export_policy!(Policy);
