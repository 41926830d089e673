//! Checks of the write-only twins (`user_data_wo`) against the Terraform that runs them: only a
//! Terraform that announces write-only support keeps the value out of the state.

use crate::diag::{Diagnostics, path};
use crate::proto::tfplugin5::ClientCapabilities;
use crate::tfschema::TypeSchema;
use crate::value::Val;

/// The first Terraform release with write-only attributes.
pub const FIRST_TERRAFORM: &str = "1.11";

/// ValidateResourceTypeConfig, for the twins: set together with the attribute they stand in
/// for, or on a Terraform that would store them in the state, is an error on the twin.
pub fn validate(t: &TypeSchema, config: &Val, capabilities: Option<&ClientCapabilities>, diags: &mut Diagnostics) {
    let allowed = capabilities.is_some_and(|c| c.write_only_attributes_allowed);
    for (twin, src, version) in t.block.write_only_twins() {
        if config.get(twin).is_null() {
            if !config.get(&version).is_null() {
                diags.warning(
                    format!("{version} without {twin}"),
                    format!("{version} only says when to send {twin} again; without {twin} it does nothing and can be removed"),
                );
            }
            continue;
        }
        if !allowed {
            diags.error_at(
                path(&[twin]),
                format!("{twin} needs Terraform {FIRST_TERRAFORM} or later"),
                format!(
                    "{twin} is a write-only attribute, and this Terraform does not support write-only attributes: it would store the value in the state in plain text. \
                     Upgrade to Terraform {FIRST_TERRAFORM} or later, or use {src} (sensitive, but kept in the state)."
                ),
            );
        }
        if !config.get(src).is_null() {
            diags.error_at(
                path(&[twin]),
                format!("Conflicting {src} and {twin}"),
                format!("set either {src} or {twin} on {}, not both: {twin} keeps the value out of the plan and the state", t.type_name),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tfschema::resource;

    fn config(pairs: &[(&str, Val)]) -> Val {
        Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    fn run(config: &Val, allowed: Option<bool>) -> Vec<(String, String)> {
        let caps = allowed.map(|a| ClientCapabilities { deferral_allowed: false, write_only_attributes_allowed: a });
        let mut diags = Diagnostics::default();
        validate(resource("novacron_vm").expect("vm"), config, caps.as_ref(), &mut diags);
        diags.0.into_iter().map(|d| (d.summary, d.detail)).collect()
    }

    #[test]
    fn the_twin_needs_a_terraform_that_supports_it_and_excludes_the_plain_attribute() {
        let wo = config(&[("user_data_wo", Val::Str("#cloud-config".into())), ("user_data_wo_version", Val::Num(1.0))]);
        assert!(run(&wo, Some(true)).is_empty());
        let old = run(&wo, None);
        assert_eq!(old.len(), 1);
        assert_eq!(old[0].0, "user_data_wo needs Terraform 1.11 or later");
        assert!(old[0].1.contains("use user_data"), "{old:?}");
        let both = config(&[("user_data_wo", Val::Unknown), ("user_data", Val::Str("x".into()))]);
        let errs = run(&both, Some(true));
        assert_eq!(errs[0].0, "Conflicting user_data and user_data_wo");
        assert!(errs[0].1.contains("on novacron_vm, not both"), "{errs:?}");
        let plain = config(&[("user_data", Val::Str("x".into()))]);
        assert!(run(&plain, None).is_empty(), "user_data works everywhere");
        let stray = run(&config(&[("user_data_wo_version", Val::Num(2.0))]), Some(true));
        assert_eq!(stray[0].0, "user_data_wo_version without user_data_wo");
    }
}
