//! Config validation before any plan: the schema's ranges, enums and formats, Rego that
//! must compile, lookups that must name one object, and provider settings.

use novacron_client::DEFAULT_ENDPOINT;
use novacron_schemas::{Format, Violation};
use serde_json::Value as Json;

use crate::diag::{Diagnostics, api_field_path, hcl_field, path};
use crate::state::body_from_block;
use crate::tfschema::TypeSchema;
use crate::value::Val;

/// ValidateResourceTypeConfig.
pub fn resource(t: &TypeSchema, config: &Val, diags: &mut Diagnostics) {
    // body_from_block leaves nulls and unknowns out, so only known values are checked.
    let body = Json::Object(body_from_block(&t.block, config, false));
    if let Err(errors) = t.kind.schema().validate_create(&body) {
        for e in errors {
            // Terraform itself enforces required attributes, and an unknown value is
            // left out above, so "required" here would be a false alarm.
            if e.violation == Violation::Required {
                continue;
            }
            // Named as the user wrote it: `firewall_rule[0].ports`, not the API's `firewall_rules[0].ports`.
            let written = hcl_field(&t.block, &e.field);
            let summary = format!("Invalid value for {written}");
            let message = e.message.replace(&e.field, &written);
            let e = novacron_schemas::FieldError { message, ..e };
            match api_field_path(&t.block, &e.field) {
                Some(p) => diags.error_at(p, summary, e.message),
                None => diags.error(summary, e.message),
            }
        }
    }
    // Every attribute of `format: rego` is compiled as the platform's admission compiles it:
    // "the Rego module does not compile: rule.rego:LINE:COLUMN: ...".
    for a in t.kind.schema().attributes.iter().filter(|a| a.constraints.format == Some(Format::Rego)) {
        if let Val::Str(rule) = config.get(&a.name)
            && let Err(e) = novacron_policy::Module::compile(rule)
        {
            diags.error_at(path(&[&a.name]), format!("Invalid Rego in {}", a.name), e.to_string());
        }
    }
    crate::apply::check_timeouts(config, diags);
}

/// ValidateDataSourceConfig: the lookup attributes `x-data-source` declares must say which
/// object to read.
pub fn data_source(t: &TypeSchema, config: &Val, diags: &mut Diagnostics) {
    let Some(lookup) = t.kind.schema().data_source.as_ref() else { return };
    let given: Vec<&str> = lookup.lookup.iter().map(String::as_str).filter(|k| !config.get(k).is_null()).collect();
    let keys = lookup.lookup.join(" or ");
    if !lookup.exclusive {
        if given.is_empty() {
            let newest = if lookup.most_recent_by.is_some() { " (with most_recent = true to pick the newest release)" } else { "" };
            diags.error(format!("Missing {} filter", t.kind), format!("set one or more of {}{newest}", lookup.lookup.join(", ")));
        }
    } else if let [_, second, ..] = given.as_slice() {
        diags.error_at(path(&[second]), "Conflicting lookup", format!("set either {} on data.{}, not both", lookup.lookup.join(" or "), t.type_name));
    } else if given.is_empty() {
        diags.error(format!("Missing lookup for data.{}", t.type_name), format!("set {keys} to say which object to read"));
    }
}

/// Checks the provider block (PrepareProviderConfig).
pub fn provider(config: &Val, diags: &mut Diagnostics) {
    if let Val::Str(endpoint) = config.get("endpoint")
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        diags.error_at(path(&["endpoint"]), "Invalid endpoint", format!("{endpoint:?} must be an http:// or https:// URL, e.g. {DEFAULT_ENDPOINT}"));
    }
    if let Val::Num(t) = config.get("timeout")
        && !(*t > 0.0 && *t <= 3600.0)
    {
        diags.error_at(path(&["timeout"]), "Invalid timeout", format!("timeout must be between 1 and 3600 seconds, not {t}"));
    }
    if let Val::Num(r) = config.get("max_retries")
        && !(r.fract() == 0.0 && (0.0..=20.0).contains(r))
    {
        diags.error_at(path(&["max_retries"]), "Invalid max_retries", format!("max_retries must be a whole number from 0 to 20, not {r}"));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::tfschema;

    fn obj(pairs: &[(&str, Val)]) -> Val {
        Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>())
    }

    #[test]
    fn names_the_attribute_and_skips_unknowns() {
        let vm = tfschema::resource("novacron_vm").expect("vm");
        let mut d = Diagnostics::default();
        super::resource(vm, &obj(&[("cpu_cores", Val::Num(0.0)), ("network_id", Val::Unknown), ("power_state", Val::Str("paused".into()))]), &mut d);
        let summaries: Vec<&str> = d.0.iter().map(|x| x.summary.as_str()).collect();
        assert_eq!(summaries, ["Invalid value for cpu_cores", "Invalid value for power_state"], "{:?}", d.0);
        assert!(d.0[0].detail.contains("between 1 and 128"));
    }

    #[test]
    fn broken_rego_fails_with_its_line() {
        let pol = tfschema::resource("novacron_policy").expect("policy");
        let mut d = Diagnostics::default();
        super::resource(pol, &obj(&[("rule", Val::Str("package p\n\ndeny contains m if {\n  input.x ==\n}\n".into()))]), &mut d);
        assert_eq!(d.0.len(), 1);
        assert!(d.0[0].detail.contains(":4:") || d.0[0].detail.contains(":5:"), "{}", d.0[0].detail);
    }

    #[test]
    fn data_source_lookups_follow_the_schema() {
        let summaries = |t: &str, config: &Val| {
            let mut d = Diagnostics::default();
            super::data_source(tfschema::data_source(t).expect("data source"), config, &mut d);
            d.0.iter().map(|x| format!("{}: {}", x.summary, x.detail)).collect::<Vec<_>>()
        };
        let s = |v: &str| Val::Str(v.into());
        assert!(summaries("novacron_vm", &obj(&[("name", s("web"))])).is_empty());
        assert_eq!(
            summaries("novacron_vm", &obj(&[("id", s("vm-1")), ("name", s("web"))])),
            ["Conflicting lookup: set either id or name on data.novacron_vm, not both"]
        );
        assert_eq!(summaries("novacron_network", &obj(&[])), ["Missing lookup for data.novacron_network: set id or name to say which object to read"]);
        assert!(summaries("novacron_template", &obj(&[("os", s("ubuntu")), ("arch", s("x86_64"))])).is_empty());
        assert_eq!(
            summaries("novacron_template", &obj(&[("most_recent", Val::Bool(true))])),
            ["Missing template filter: set one or more of id, name, os, os_version, arch (with most_recent = true to pick the newest release)"]
        );
    }

    #[test]
    fn firewall_rule_errors_point_into_the_block() {
        let net = tfschema::resource("novacron_network").expect("network");
        let mut d = Diagnostics::default();
        let rule = obj(&[("direction", Val::Str("ingress".into())), ("ports", Val::Str("99999".into()))]);
        super::resource(net, &obj(&[("cidr", Val::Str("10.0.0.0/33".into())), ("firewall_rule", Val::List(vec![rule]))]), &mut d);
        let summaries: Vec<&str> = d.0.iter().map(|x| x.summary.as_str()).collect();
        assert!(summaries.contains(&"Invalid value for cidr") && summaries.contains(&"Invalid value for firewall_rule[0].ports"), "{summaries:?}");
        let ports = d.0.iter().find(|x| x.summary.ends_with("ports")).expect("ports");
        assert!(!ports.detail.contains("firewall_rules"), "the detail names the block as written too: {}", ports.detail);
    }
}
