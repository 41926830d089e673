//! Provider-defined functions (Terraform >= 1.8): `provider::novacron::policy_eval(rule, input)`
//! returns the sorted `deny` messages of a Rego module for an admission input
//! `{kind, action, object}`, evaluated by the same code as the platform's admission, so
//! `terraform test`, `check` blocks and `terraform console` can test a policy before it blocks
//! a real apply.

use std::collections::HashMap;

use serde_json::Value as Json;

use crate::proto::tfplugin5::{DynamicValue, Function, FunctionError, StringKind, function};
use crate::tfschema::TfType;
use crate::value::Val;

/// What the docs say of a function.
#[derive(Debug, Clone)]
pub struct FunctionDoc {
    /// Its name (called as `provider::novacron::<name>`).
    pub name: &'static str,
    /// One line.
    pub summary: String,
    /// The whole story.
    pub description: String,
    /// `policy_eval(rule string, input dynamic) list of string`.
    pub signature: String,
    /// (name, description) of each parameter, in order.
    pub parameters: Vec<(&'static str, String)>,
}

/// The provider's functions.
pub fn functions() -> Vec<FunctionDoc> {
    vec![FunctionDoc {
        name: "policy_eval",
        summary: "The deny messages a Rego admission policy gives for an input, sorted.".into(),
        description: "Evaluates the `deny` rule of a Rego module (as `novacron_policy.rule` holds it) for an admission input, exactly as the \
                      platform's admission does, and returns its messages sorted; an empty list means the policy admits the input. \
                      Use it in `terraform test` files, `check` blocks or `terraform console` to test a policy before it blocks a real apply. \
                      A module that does not compile is an error naming its line."
            .into(),
        signature: "policy_eval(rule string, input dynamic) list of string".into(),
        parameters: vec![
            ("rule", "(String) The Rego module, with a `deny` rule that yields messages (strings).".into()),
            (
                "input",
                "(Dynamic) The admission input: an object `{ kind = \"vm\", action = \"create\", object = { ... } }`, with the object as the API \
                 sees it (e.g. `cpu_cores`, `memory_gb`, `metadata`)."
                    .into(),
            ),
        ],
    }]
}

/// The protocol definitions (GetFunctions, GetProviderSchema).
pub fn definitions() -> HashMap<String, Function> {
    functions()
        .into_iter()
        .map(|f| {
            let param = |(name, description): &(&str, String), ty: &str| function::Parameter {
                name: name.to_string(),
                r#type: ty.as_bytes().to_vec(),
                allow_null_value: false,
                allow_unknown_values: false,
                description: description.clone(),
                description_kind: StringKind::Markdown as i32,
            };
            let definition = Function {
                parameters: vec![param(&f.parameters[0], "\"string\""), param(&f.parameters[1], "\"dynamic\"")],
                variadic_parameter: None,
                r#return: Some(function::Return { r#type: TfType::List(Box::new(TfType::String)).to_json().to_string().into_bytes() }),
                summary: f.summary,
                description: f.description,
                description_kind: StringKind::Markdown as i32,
                deprecation_message: String::new(),
            };
            (f.name.to_string(), definition)
        })
        .collect()
}

fn error(text: impl Into<String>, argument: Option<i64>) -> FunctionError {
    FunctionError { text: text.into(), function_argument: argument }
}

/// A `dynamic` argument arrives wrapped with its type: `[type JSON, value]`.
fn unwrap_dynamic(v: Val) -> Val {
    match v {
        Val::List(mut items) if items.len() == 2 && matches!(&items[0], Val::Str(t) if t.starts_with('"') || t.starts_with('[')) => items.remove(1),
        other => other,
    }
}

/// CallFunction.
pub fn call(name: &str, arguments: &[DynamicValue]) -> Result<DynamicValue, FunctionError> {
    match name {
        "policy_eval" => policy_eval(arguments),
        other => Err(error(format!("this provider has no function {other:?}; it has policy_eval"), None)),
    }
}

fn policy_eval(arguments: &[DynamicValue]) -> Result<DynamicValue, FunctionError> {
    if arguments.len() != 2 {
        return Err(error(format!("policy_eval takes 2 arguments (rule, input), not {}", arguments.len()), None));
    }
    let rule = match Val::from_dynamic(Some(&arguments[0])) {
        Ok(Val::Str(rule)) => rule,
        Ok(_) => return Err(error("rule must be a string holding a Rego module", Some(0))),
        Err(e) => return Err(error(format!("cannot decode rule: {e}"), Some(0))),
    };
    let input = Val::from_dynamic(Some(&arguments[1])).map_err(|e| error(format!("cannot decode input: {e}"), Some(1)))?;
    let input = unwrap_dynamic(input);
    let Some(input @ Json::Object(_)) = input.to_json() else {
        return Err(error(
            "input must be an object { kind, action, object }, e.g. { kind = \"vm\", action = \"create\", object = { name = \"web\", cpu_cores = 2 } }",
            Some(1),
        ));
    };
    // An input the engine cannot take is the input's fault; everything else is the module's.
    let messages = novacron_policy::deny_messages(&rule, &input).map_err(|e| {
        let argument = if matches!(e, novacron_policy::PolicyError::Input { .. }) { 1 } else { 0 };
        error(e.to_string(), Some(argument))
    })?;
    Ok(Val::List(messages.into_iter().map(Val::Str).collect()).to_dynamic())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const RULE: &str = "package t\n\ndeny contains msg if {\n  input.object.cpu_cores > 8\n  msg := \"too many cores\"\n}\n\ndeny contains msg if {\n  not input.object.owner\n  msg := \"no owner\"\n}\n";

    /// A `dynamic` argument as Terraform sends it: `[type JSON, value]`.
    fn dynamic(value: Val) -> DynamicValue {
        Val::List(vec![Val::Str("[\"object\",{}]".into()), value]).to_dynamic()
    }

    fn input(cores: f64) -> Val {
        let object = Val::Obj(BTreeMap::from([("cpu_cores".to_string(), Val::Num(cores))]));
        Val::Obj(BTreeMap::from([("kind".into(), Val::Str("vm".into())), ("action".into(), Val::Str("create".into())), ("object".into(), object)]))
    }

    fn messages(result: DynamicValue) -> Vec<String> {
        match Val::from_dynamic(Some(&result)).expect("decodes") {
            Val::List(items) => items.into_iter().map(|v| v.as_str().unwrap_or_default().to_string()).collect(),
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn policy_eval_returns_the_sorted_deny_messages() {
        let rule = Val::Str(RULE.into()).to_dynamic();
        assert_eq!(messages(call("policy_eval", &[rule.clone(), dynamic(input(16.0))]).expect("evaluates")), ["no owner", "too many cores"]);
        assert_eq!(messages(call("policy_eval", &[rule, input(2.0).to_dynamic()]).expect("unwrapped input too")), ["no owner"]);
    }

    #[test]
    fn bad_arguments_name_the_argument() {
        let rule = Val::Str(RULE.into()).to_dynamic();
        let not_object = call("policy_eval", &[rule, dynamic(Val::Str("vm".into()))]).expect_err("a string input");
        assert_eq!(not_object.function_argument, Some(1));
        assert!(not_object.text.starts_with("input must be an object"), "{}", not_object.text);
        let broken = call("policy_eval", &[Val::Str("package x\n\ndeny contains msg if {\n".into()).to_dynamic(), dynamic(input(1.0))]).expect_err("broken");
        assert_eq!(broken.function_argument, Some(0));
        assert!(broken.text.contains("does not compile") && broken.text.contains("rule.rego:"), "{}", broken.text);
        assert!(call("nope", &[]).expect_err("unknown").text.contains("has no function \"nope\""));
        assert_eq!(definitions()["policy_eval"].parameters.len(), 2);
    }
}
