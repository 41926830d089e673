//! Evaluates a configuration module by module: variables, locals, data sources, resources, module calls and
//! outputs in dependency order, expanding `count` and `for_each`.

use std::collections::HashMap;

use hcl::eval::Context;
use hcl::{Expression, Map, Value};
use novacron_schemas::{AttrType, Kind};

use super::HclError;
use super::attrs::{evaluate_instance, to_hcl};
use super::data::{DataSources, read_instance, root_dir};
use super::funcs::{FileAccess, function_context};
use super::locate;
use super::parse::{DataBlock, ModuleCall, ModuleConfig, ResourceBlock, read_module};
use super::resolve::{Instance, Refs, references};
use super::variables::{Bound, Given, Unknown, bind, root_values};
use crate::drift::{DesiredResource, LiveObject};
use crate::source::{SourceTree, join_path};

/// Deepest module nesting followed; deeper is taken for a module that calls itself.
const MAX_DEPTH: usize = 32;

/// The desired resources of a configuration and what could not be evaluated.
#[derive(Debug, Default)]
pub struct Evaluation {
    /// One entry per resource instance, in evaluation order.
    pub resources: Vec<DesiredResource>,
    /// Unknown values and ignored arguments, one line each.
    pub warnings: Vec<String>,
}

/// Evaluates the configuration in directory `root` of `tree`. `vars` are `--var NAME=VALUE`
/// flags; `live` resolves references to other resources' ids (by kind and name) and serves the
/// `novacron_vm` / `novacron_network` data sources; `data` holds what the other data sources read.
pub fn evaluate(tree: &dyn SourceTree, root: &str, vars: &[String], live: &[LiveObject], data: &DataSources<'_>) -> Result<Evaluation, HclError> {
    let root = root_dir(root);
    let config = read_module(tree, root)?.ok_or_else(|| HclError::NoSuchPath { path: root.to_string() })?;
    let ctx = function_context();
    let mut ev = Evaluator {
        tree,
        root,
        live: live.iter().map(|o| ((o.kind, o.name()), o)).collect(),
        all_live: live.iter().collect(),
        data: *data,
        positions: HashMap::new(),
        out: Evaluation::default(),
    };
    let constants = Refs { ctx: Some(&ctx), ..Refs::default() };
    let given = root_values(tree, root, vars, &constants)?;
    let declared: Vec<&str> = config.variables.iter().map(|v| v.name.as_str()).collect();
    let mut undeclared: Vec<&String> = given.keys().filter(|k| !declared.contains(&k.as_str())).collect();
    undeclared.sort();
    for name in undeclared {
        ev.out.warnings.push(format!("a value is given for var.{name}, which the root module does not declare; ignored"));
    }
    let bound = bind(&config.variables, given, &Unknown::new(), "", &constants)?;
    ev.module(&ctx, &config, root, "", bound, 0)?;
    let mut seen: HashMap<(Kind, &str), &str> = HashMap::new();
    for r in &ev.out.resources {
        if let Some(first) = seen.insert((r.kind, r.name.as_str()), r.address.as_str()) {
            return Err(HclError::DuplicateName {
                kind: r.kind.terraform_type().to_string(),
                name: r.name.clone(),
                first: first.to_string(),
                second: r.address.clone(),
            });
        }
    }
    Ok(ev.out)
}

/// `dir` relative to the root module's directory, as Terraform gives `path.module` (`.` for the root).
fn relative_to(root: &str, dir: &str) -> String {
    let root: Vec<&str> = root.split('/').filter(|p| !p.is_empty()).collect();
    let dir: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    let common = root.iter().zip(&dir).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<&str> = vec![".."; root.len() - common];
    parts.extend(&dir[common..]);
    if parts.is_empty() { ".".to_string() } else { parts.join("/") }
}

/// Whether `expr` mentions one of the `sensitive` variables (then a reason must not be shown).
fn mentions(expr: &Expression, sensitive: &[String]) -> bool {
    if sensitive.is_empty() {
        return false;
    }
    let text = expr.to_string();
    sensitive.iter().any(|name| text.contains(&format!("var.{name}")))
}

struct Evaluator<'t> {
    tree: &'t dyn SourceTree,
    root: &'t str,
    live: HashMap<(Kind, &'t str), &'t LiveObject>,
    all_live: Vec<&'t LiveObject>,
    data: DataSources<'t>,
    /// Positions found for warnings, by (file, block label, attribute, blamed function).
    positions: HashMap<(String, String, String, Option<String>), String>,
    out: Evaluation,
}

/// A declaration of one module, keyed the way references name it.
enum Node<'c> {
    Local(&'c str, &'c Expression),
    Data(&'c DataBlock),
    Resource(&'c ResourceBlock),
    Module(&'c ModuleCall),
    Output(&'c str, &'c Expression),
}

impl Node<'_> {
    fn key(&self) -> String {
        match self {
            Node::Local(n, _) => format!("local.{n}"),
            Node::Data(d) => format!("data.{}.{}", d.kind.terraform_type(), d.label),
            Node::Resource(r) => format!("{}.{}", r.kind.terraform_type(), r.label),
            Node::Module(m) => format!("module.{}", m.label),
            Node::Output(n, _) => format!("output.{n}"),
        }
    }

    fn references(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            Node::Local(_, e) | Node::Output(_, e) => references(e, &mut out),
            Node::Data(d) => {
                d.count.iter().chain(d.for_each.iter()).for_each(|e| references(e, &mut out));
                d.args.iter().for_each(|(_, e)| references(e, &mut out));
            }
            Node::Resource(r) => {
                r.count.iter().chain(r.for_each.iter()).for_each(|e| references(e, &mut out));
                r.attributes.iter().for_each(|(_, e)| references(e, &mut out));
                for b in &r.blocks {
                    b.args.iter().for_each(|(_, e)| references(e, &mut out));
                    if let Some(d) = &b.dynamic {
                        references(&d.for_each, &mut out);
                    }
                }
            }
            Node::Module(m) => {
                m.count.iter().chain(m.for_each.iter()).for_each(|e| references(e, &mut out));
                m.inputs.iter().for_each(|(_, e)| references(e, &mut out));
            }
        }
        out
    }
}

/// Orders `nodes` so each comes after what it references.
fn dependency_order(nodes: &[Node<'_>], module: &str) -> Result<Vec<usize>, HclError> {
    let index: HashMap<String, usize> = nodes.iter().enumerate().map(|(i, n)| (n.key(), i)).collect();
    let deps: Vec<Vec<usize>> = nodes.iter().map(|n| n.references().iter().filter_map(|r| index.get(r).copied()).collect()).collect();
    let mut order = Vec::with_capacity(nodes.len());
    let mut state = vec![0u8; nodes.len()]; // 0 new, 1 on the path, 2 done
    fn visit(i: usize, deps: &[Vec<usize>], state: &mut [u8], order: &mut Vec<usize>, path: &mut Vec<usize>) -> Result<(), Vec<usize>> {
        match state[i] {
            2 => return Ok(()),
            1 => {
                let start = path.iter().position(|&p| p == i).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            _ => {}
        }
        state[i] = 1;
        path.push(i);
        for &d in &deps[i] {
            visit(d, deps, state, order, path)?;
        }
        path.pop();
        state[i] = 2;
        order.push(i);
        Ok(())
    }
    for i in 0..nodes.len() {
        visit(i, &deps, &mut state, &mut order, &mut Vec::new())
            .map_err(|cycle| HclError::Cycle { module: module.to_string(), through: cycle.iter().map(|&c| nodes[c].key()).collect::<Vec<_>>().join(" -> ") })?;
    }
    Ok(order)
}

/// Instances of a block: `("", no each/count)`, `("[0]", count.index = 0)`, `("[\"a\"]", each.key = "a")`.
fn expand(refs: &Refs<'_>, count: Option<&Expression>, for_each: Option<&Expression>) -> Result<(Vec<(String, Instance)>, Shape), String> {
    let none = Instance::default();
    if let Some(c) = count {
        let n = match refs.eval(c, &none).map_err(|r| format!("count is unknown: {r}"))? {
            Value::Number(n) => n.as_u64().ok_or_else(|| format!("count must be a whole number, not {n}"))?,
            other => return Err(format!("count must be a number, not {other}")),
        };
        let instances = (0..n)
            .map(|i| {
                (format!("[{i}]"), Instance { count: Some(Value::Object(Map::from_iter([("index".to_string(), Value::from(i))]))), ..Instance::default() })
            })
            .collect();
        return Ok((instances, Shape::List));
    }
    if let Some(f) = for_each {
        let entries: Vec<(String, Value)> = match refs.eval(f, &none).map_err(|r| format!("for_each is unknown: {r}"))? {
            Value::Object(m) => m.into_iter().collect(),
            Value::Array(items) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok((s.clone(), Value::String(s))),
                    other => Err(format!("for_each over a set needs strings, not {other}")),
                })
                .collect::<Result<_, _>>()?,
            other => return Err(format!("for_each must be a map or a set of strings, not {other}")),
        };
        let instances = entries
            .into_iter()
            .map(|(k, v)| {
                let suffix = format!("[{}]", serde_json::Value::String(k.clone()));
                let each = Value::Object(Map::from_iter([("key".to_string(), Value::from(k)), ("value".to_string(), v)]));
                (suffix, Instance { each: Some(each), ..Instance::default() })
            })
            .collect();
        return Ok((instances, Shape::Map));
    }
    Ok((vec![(String::new(), none)], Shape::Single))
}

/// How the instances of a block are referenced: one object, a list (`count`) or a map (`for_each`).
#[derive(Clone, Copy)]
enum Shape {
    Single,
    List,
    Map,
}

fn gather(shape: Shape, values: Vec<(String, Value)>) -> Value {
    match shape {
        Shape::Single => values.into_iter().next().map(|(_, v)| v).unwrap_or(Value::Null),
        Shape::List => Value::Array(values.into_iter().map(|(_, v)| v).collect()),
        Shape::Map => Value::Object(values.into_iter().collect()),
    }
}

/// The key of a `for_each` instance from its address suffix (`["a"]` -> `a`).
fn instance_key(suffix: &str) -> String {
    suffix
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map(|inner| serde_json::from_str::<String>(inner).unwrap_or_else(|_| inner.to_string()))
        .unwrap_or_default()
}

impl Evaluator<'_> {
    fn module(&mut self, ctx: &Context<'_>, config: &ModuleConfig, dir: &str, prefix: &str, vars: Bound, depth: usize) -> Result<Map<String, Value>, HclError> {
        let module = if prefix.is_empty() { "root module".to_string() } else { prefix.trim_end_matches('.').to_string() };
        self.out.warnings.extend(vars.warnings);
        let mut nodes: Vec<Node<'_>> = Vec::new();
        nodes.extend(config.locals.iter().map(|(n, e)| Node::Local(n, e)));
        nodes.extend(config.data.iter().map(Node::Data));
        nodes.extend(config.resources.iter().map(Node::Resource));
        nodes.extend(config.modules.iter().map(Node::Module));
        nodes.extend(config.outputs.iter().map(|(n, e)| Node::Output(n, e)));
        let order = dependency_order(&nodes, &module)?;
        let mut refs = Refs {
            vars: vars.values,
            unknown: vars.unknown,
            path_module: relative_to(self.root, dir),
            ctx: Some(ctx),
            files: FileAccess::rooted(self.tree, self.root),
            ..Refs::default()
        };
        for foreign in &config.foreign_data {
            let why = format!("data.{foreign} is not a novacron data source, which the reconciler does not read");
            if let Some((ty, _)) = foreign.split_once('.') {
                refs.unknown.entry(format!("data.{ty}")).or_insert_with(|| why.clone());
            }
            refs.unknown.insert(format!("data.{foreign}"), why);
        }
        let sensitive = vars.sensitive;
        let mut outputs = Map::new();
        let none = Instance::default();
        for i in order {
            match &nodes[i] {
                Node::Local(name, expr) => match refs.eval(expr, &none) {
                    Ok(v) => {
                        refs.locals.insert(name.to_string(), v);
                    }
                    Err(reason) => {
                        let reason = if mentions(expr, &sensitive) { "details hidden: it uses a sensitive variable".to_string() } else { reason };
                        refs.unknown.insert(format!("local.{name}"), format!("local.{name} is unknown: {reason}"));
                    }
                },
                Node::Output(name, expr) => {
                    if let Ok(v) = refs.eval(expr, &none) {
                        outputs.insert(name.to_string(), v);
                    }
                }
                Node::Data(block) => self.data_block(block, &mut refs, prefix),
                Node::Resource(block) => self.resource(block, &mut refs, prefix, &sensitive)?,
                Node::Module(call) => self.module_call(ctx, call, &mut refs, dir, prefix, depth)?,
            }
        }
        Ok(outputs)
    }

    /// `file:line:column: ` of an attribute (or of the function its reason blames) in a `.tf`
    /// file, or nothing; remembered per block, attribute and function, so the instances of one
    /// block parse its file once.
    fn position(&mut self, block: &ResourceBlock, attr: &str, reason: &str) -> String {
        if !block.file.ends_with(".tf") {
            return String::new();
        }
        let function = locate::failing_function(reason);
        let key = (block.file.clone(), block.label.clone(), attr.to_string(), function.map(str::to_string));
        if let Some(known) = self.positions.get(&key) {
            return known.clone();
        }
        // A block attribute is reported by its API name (`firewall_rules`), written as its block
        // (`firewall_rule`); an attribute given through its write-only twin, written as the twin.
        let schema_attr = block.kind.schema().attributes.iter().find(|a| a.name == attr);
        let written_as = |name: &str| block.attributes.iter().any(|(a, _)| a == name);
        let twin = schema_attr.and_then(|a| a.write_only_twin.as_deref()).filter(|t| !written_as(attr) && written_as(t));
        let written = schema_attr
            .and_then(|a| match &a.ty {
                AttrType::Blocks { block_name, .. } => Some(block_name.as_str()),
                _ => None,
            })
            .or(twin)
            .unwrap_or(attr);
        let found = self
            .tree
            .read(&block.file)
            .and_then(|text| locate::attribute_position(&text, &["resource", block.kind.terraform_type(), &block.label], &[written], function))
            .map_or(String::new(), |(line, column)| format!("{}:{line}:{column}: ", block.file));
        self.positions.insert(key, found.clone());
        found
    }

    fn data_block(&mut self, block: &DataBlock, refs: &mut Refs<'_>, prefix: &str) {
        let ty = block.kind.terraform_type();
        let address = format!("{prefix}data.{ty}.{}", block.label);
        let (instances, shape) = match expand(refs, block.count.as_ref(), block.for_each.as_ref()) {
            Ok(x) => x,
            Err(reason) => {
                refs.unknown.insert(format!("data.{ty}.{}", block.label), format!("{address} could not be expanded: {reason}"));
                return;
            }
        };
        let mut values = Vec::with_capacity(instances.len());
        for (suffix, inst) in instances {
            match read_instance(block, refs, &inst, &self.all_live, &self.data) {
                Ok(v) => values.push((instance_key(&suffix), v)),
                Err(reason) => {
                    // What uses it says so in its own warning; the reason is recorded once here.
                    let why = format!("{address}{suffix} is unknown: {reason}");
                    refs.unknown.entry(format!("data.{ty}")).or_insert_with(|| why.clone());
                    refs.unknown.insert(format!("data.{ty}.{}", block.label), why);
                    return;
                }
            }
        }
        let by_type = refs.data.entry(ty.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = by_type {
            m.insert(block.label.clone(), gather(shape, values));
        }
    }

    fn resource(&mut self, block: &ResourceBlock, refs: &mut Refs<'_>, prefix: &str, sensitive: &[String]) -> Result<(), HclError> {
        let ty = block.kind.terraform_type();
        let key = format!("{ty}.{}", block.label);
        let base = format!("{prefix}{key}");
        let (instances, shape) = match expand(refs, block.count.as_ref(), block.for_each.as_ref()) {
            Ok(x) => x,
            Err(reason) => {
                self.out.warnings.push(format!("{base}: {reason}; its instances are not compared"));
                refs.unknown.insert(key.clone(), format!("{key} could not be expanded: {reason}"));
                return Ok(());
            }
        };
        let mut values = Vec::with_capacity(instances.len());
        for (suffix, inst) in instances {
            let address = format!("{base}{suffix}");
            let ev = evaluate_instance(block, refs, &inst).map_err(|c| HclError::ConflictingTwin {
                file: block.file.clone(),
                address: address.clone(),
                attribute: c.attribute,
                twin: c.twin,
            })?;
            for arg in &ev.ignored {
                self.out.warnings.push(format!("{address}: {arg} is not a settable attribute of {ty}; ignored"));
            }
            let Some(name) = ev.attributes.get("name").and_then(|n| n.as_str()).map(str::to_string) else {
                let why = ev.unknown.iter().find(|(a, _)| a == "name").map_or("it is not set".to_string(), |(_, r)| r.clone());
                self.out.warnings.push(format!("{address}: name is unknown ({why}), so it cannot be matched to a live object; not compared"));
                values.push((instance_key(&suffix), Value::Null));
                continue;
            };
            for (attr, reason) in &ev.unknown {
                let hidden = block.attributes.iter().any(|(a, e)| a == attr && mentions(e, sensitive));
                let reason = if hidden { "details hidden: it uses a sensitive variable" } else { reason.as_str() };
                let at = self.position(block, attr, reason);
                self.out.warnings.push(format!("{at}{address}: {attr} is unknown ({reason}); left out of the comparison"));
            }
            let live = self.live.get(&(block.kind, name.as_str())).copied();
            // What `novacron_x.y.attr` gives: the live object, overlaid with the configuration.
            let mut value: Map<String, Value> = match live {
                Some(o) => o.fields.iter().map(|(k, v)| (k.clone(), to_hcl(v))).collect(),
                None => Map::new(),
            };
            for (k, v) in &ev.attributes {
                value.insert(k.clone(), if ev.from_twin.contains(k) { Value::Null } else { to_hcl(v) });
            }
            values.push((instance_key(&suffix), Value::Object(value)));
            let mut unknown: Vec<String> = ev.unknown.into_iter().map(|(a, _)| a).collect();
            unknown.sort();
            self.out.resources.push(DesiredResource { address, kind: block.kind, name, attributes: ev.attributes, unknown });
        }
        refs.resources.insert(key, gather(shape, values));
        Ok(())
    }

    fn module_call(&mut self, ctx: &Context<'_>, call: &ModuleCall, refs: &mut Refs<'_>, dir: &str, prefix: &str, depth: usize) -> Result<(), HclError> {
        let key = format!("module.{}", call.label);
        let base = format!("{prefix}{key}");
        let source = call.source.as_deref().unwrap_or_default();
        if !(source.starts_with("./") || source.starts_with("../")) {
            self.out.warnings.push(format!("{base}: source {source:?} is not a local path; its resources are not compared"));
            refs.unknown.insert(key, format!("{base} comes from {source:?}, which is not read"));
            return Ok(());
        }
        let invalid = |message: String| HclError::Invalid { file: call.file.clone(), message };
        if depth >= MAX_DEPTH {
            return Err(invalid(format!("module {:?}: modules nest deeper than {MAX_DEPTH}; does a module call itself?", call.label)));
        }
        let child_dir = join_path(dir, source).ok_or_else(|| invalid(format!("module {:?}: source {source:?} leaves the repository", call.label)))?;
        let child = read_module(self.tree, &child_dir)?
            .ok_or_else(|| invalid(format!("module {:?}: source {source:?} is not a directory of the repository", call.label)))?;
        let (instances, shape) = match expand(refs, call.count.as_ref(), call.for_each.as_ref()) {
            Ok(x) => x,
            Err(reason) => {
                self.out.warnings.push(format!("{base}: {reason}; its resources are not compared"));
                refs.unknown.insert(key, format!("{base} could not be expanded: {reason}"));
                return Ok(());
            }
        };
        let mut values = Vec::new();
        let constants = Refs { ctx: Some(ctx), ..Refs::default() };
        for (suffix, inst) in instances {
            let mut given = HashMap::new();
            let mut unknown = Unknown::new();
            let from = format!("the call of {base}{suffix}");
            for (name, expr) in &call.inputs {
                if !child.variables.iter().any(|v| &v.name == name) {
                    self.out.warnings.push(format!("{base}{suffix}: argument {name} is not a variable of module {source:?}; ignored"));
                    continue;
                }
                match refs.eval(expr, &inst) {
                    Ok(v) => {
                        given.insert(name.clone(), Given::Value(v, from.clone()));
                    }
                    Err(reason) => {
                        unknown.insert(format!("var.{name}"), format!("input {name} of {base}{suffix} is unknown: {reason}"));
                    }
                }
            }
            let bound = bind(&child.variables, given, &unknown, &format!("{base}{suffix}"), &constants)?;
            let outputs = self.module(ctx, &child, &child_dir, &format!("{base}{suffix}."), bound, depth + 1)?;
            values.push((instance_key(&suffix), Value::Object(outputs)));
        }
        refs.modules.insert(call.label.clone(), gather(shape, values));
        Ok(())
    }
}

#[cfg(test)]
mod tests;
