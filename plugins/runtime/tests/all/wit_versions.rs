//! The manifest's `wit` is matched by semver compatibility: any 0.1.x (or a requirement such as
//! `^0.1`) is served by the 0.1.0 bindings, anything else is refused naming what is supported.

use liutong_plugin_runtime::bindings;
use liutong_plugin_runtime::{Grants, LoadError, Manifest, PluginKind};

use crate::common::{self, trade};

fn flat_fee_declaring(wit: &str) -> Result<liutong_plugin_runtime::LoadedPlugin, LoadError> {
    let (manifest, wasm) = common::guest("billing-flat-fee");
    let manifest = String::from_utf8(manifest)
        .unwrap()
        .replace(r#"wit = "0.1.0""#, &format!("wit = {wit:?}"));
    common::runtime().load_unsigned_for_testing(manifest.as_bytes(), &wasm, &Grants::none())
}

#[tokio::test]
async fn compatible_versions_and_requirements_are_served_by_the_0_1_bindings() {
    for wit in ["0.1.0", "0.1.2", "0.1", "^0.1", "~0.1.0", ">=0.1.0, <0.2.0"] {
        let p = flat_fee_declaring(wit).unwrap_or_else(|e| panic!("wit {wit}: {e}"));
        assert_eq!(p.manifest().wit.to_string(), wit);
        let c = p
            .charge_trade(trade(1_000, r#"{"feeBps": 100}"#))
            .await
            .unwrap();
        assert_eq!(c.value.unwrap().platform_fee, 10, "wit {wit}");
    }
}

#[test]
fn other_versions_are_refused_naming_the_supported_ones() {
    for wit in ["0.2.0", "1.0.0", "^0.2", "0.0.1", "^0.1.5"] {
        let e = flat_fee_declaring(wit).unwrap_err();
        let LoadError::InvalidManifest { field, message } = &e else {
            panic!("wit {wit}: {e:?}");
        };
        assert_eq!(field, "wit");
        assert_eq!(
            message,
            &format!(
                "billing WIT version {wit} is not supported by this runtime \
                 (supported: 0.1.0, which serves any 0.1.x)"
            )
        );
    }
    let e = flat_fee_declaring("newest").unwrap_err();
    assert!(
        matches!(&e, LoadError::InvalidManifest { field, .. } if field == "wit"),
        "{e:?}"
    );
}

/// A component built against an imagined WIT 0.1.1 (its exports are named
/// `liutong:billing/rule@0.1.1`, and it exports one function more) is linked and called through
/// the 0.1.0 bindings.
#[tokio::test]
async fn a_component_built_against_a_later_patch_is_called_through_the_0_1_0_bindings() {
    let p = common::plugin("fixtures/fixture-wit-0-1-1");
    assert_eq!(p.manifest().wit.to_string(), "0.1.1");
    let c = p.charge_trade(trade(1_234, "{}")).await.unwrap();
    assert_eq!(c.value.unwrap().amount, 1_234);
}

#[test]
fn latest_aliases_the_newest_bindings() {
    for kind in [PluginKind::Billing, PluginKind::Policy, PluginKind::Adapter] {
        let versions = kind.supported_wit_versions();
        assert_eq!(versions, [semver::Version::new(0, 1, 0)], "{kind}");
    }
    // The crate's type modules are the `latest` bindings', which are 0.1.0's today.
    let t: bindings::billing::latest::liutong::billing::types::ResourceKind =
        bindings::billing::v0_1_0::liutong::billing::types::ResourceKind::Model;
    let _: liutong_plugin_runtime::billing::ResourceKind = t;
    let parsed = Manifest::parse(
        br#"id = "x"
version = "1.0.0"
kind = "policy"
wit = "^0.1"
description = "d"
"#,
    )
    .unwrap();
    assert_eq!(
        parsed.wit.resolve(PluginKind::Policy),
        Ok(&semver::Version::new(0, 1, 0))
    );
}
