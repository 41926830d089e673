//! The parameters of `GET /v1/{kind}`: the filters each collection takes, their values checked
//! against the kind's schema, paging, and page tokens bound to the listing that issued them.

use novacron_schemas::{Attribute, Kind, sha256_hex};
use serde_json::json;

use crate::problem::ApiError;
use crate::store::{AttributeMatch, ListFilter};

/// Objects per page when `page_size` is not given.
pub const DEFAULT_PAGE_SIZE: usize = 100;

/// The largest `page_size`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The longest name, and so the longest useful `name_prefix`: common.json's name pattern is
/// `^[a-z][a-z0-9-]{0,62}$` (a test pins it).
const MAX_NAME_LEN: usize = 63;

/// The attributes a collection filters on by exact value (`x-list-filter` in `schemas/`), each
/// a query parameter of the same name, beside `name` and `name_prefix`, which every collection
/// takes. A value is checked against the attribute's schema: an enum takes its values, a
/// reference takes an id of the kind it refers to. Attribute names are written into SQL
/// (`json_extract(body, '$.<name>')`), so they come from the schema only, never from a request.
fn attribute_filters() -> impl Iterator<Item = (Kind, &'static Attribute)> {
    Kind::ALL.into_iter().flat_map(|kind| kind.schema().list_filters().map(move |a| (kind, a)))
}

/// A list request, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    /// What the objects must match.
    pub filter: ListFilter,
    /// Objects per page, 1 to [`MAX_PAGE_SIZE`].
    pub page_size: usize,
    /// Where to resume: the seq after which the page starts (0: from the start).
    pub after: i64,
}

/// The attribute of `kind` that the query parameter `param` filters on, if `kind` takes it.
fn attribute_filter(kind: Kind, param: &str) -> Option<(&'static str, &'static Attribute)> {
    let attribute = kind.schema().list_filters().find(|a| a.name == param)?;
    Some((attribute.name.as_str(), attribute))
}

/// The filters `kind` takes: `name`, `name_prefix`, then its attribute filters.
fn filters(kind: Kind) -> Vec<&'static str> {
    let mut names = vec!["name", "name_prefix"];
    names.extend(kind.schema().list_filters().map(|a| a.name.as_str()));
    names
}

/// "name, name_prefix, network_id, status, page_size or page_token": what `kind` takes.
fn parameters(kind: Kind) -> String {
    format!("{}, page_size or page_token", filters(kind).join(", "))
}

fn bad(param: &str, message: String) -> ApiError {
    ApiError::bad_param(param, message)
}

/// A prefix of a name: 1 to 63 lowercase letters, digits or hyphens, starting with a letter.
/// Anything else could match no object, which is a mistake worth saying, not an empty page.
fn check_name_prefix(value: &str) -> Result<(), ApiError> {
    let mut chars = value.chars();
    let starts_right = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    let rest_right = chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if starts_right && rest_right && value.len() <= MAX_NAME_LEN {
        return Ok(());
    }
    Err(bad(
        "name_prefix",
        format!("name_prefix must be the start of a name: 1 to {MAX_NAME_LEN} lowercase letters, digits or hyphens, beginning with a letter, not {value:?}"),
    ))
}

/// A filter value the attribute can hold: one of an enum's values, or an id of the kind a
/// reference names (the platform assigns `<prefix>-<hex>` ids).
fn check_attribute_value(param: &str, attribute: &Attribute, value: &str) -> Result<(), ApiError> {
    if let Some(allowed) = &attribute.constraints.enum_values
        && !allowed.iter().any(|a| a == value)
    {
        return Err(bad(param, format!("{param} must be one of {}, not {value:?}", allowed.join(", "))));
    }
    if let Some(target) = attribute.reference.as_ref().map(|r| r.kind) {
        let prefix = format!("{}-", target.schema().id_prefix);
        if !value.starts_with(&prefix) || value.len() == prefix.len() {
            return Err(bad(
                param,
                format!(
                    "{param} takes a {target} id such as {prefix}3f9c0a1b2c3d4e5f, not {value:?}; find the id of a {target} by name with GET /v1/{}?name=<name>",
                    target.collection()
                ),
            ));
        }
    }
    Ok(())
}

/// Keeps the first value of a parameter; a second one is refused, since which one would win
/// is a guess.
fn once(slot: &mut Option<String>, param: &str, value: String) -> Result<(), ApiError> {
    if slot.replace(value).is_some() {
        return Err(bad(param, format!("give {param} at most once")));
    }
    Ok(())
}

/// Checks the query parameters of `GET /v1/{kind}`. Every problem is a 400 naming the
/// parameter: an unknown one, a filter of another collection, a value the attribute cannot
/// hold, a parameter given twice, a `page_token` of another listing.
pub fn parse(kind: Kind, pairs: Vec<(String, String)>) -> Result<ListRequest, ApiError> {
    let mut filter = ListFilter::default();
    let mut page_size = None;
    let mut page_token = None;
    for (key, value) in pairs {
        match key.as_str() {
            "name" => once(&mut filter.name, "name", value)?,
            "name_prefix" => {
                check_name_prefix(&value)?;
                once(&mut filter.name_prefix, "name_prefix", value)?;
            }
            "page_size" => {
                let size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                    .ok_or_else(|| bad("page_size", format!("page_size must be 1 to {MAX_PAGE_SIZE}, not {value:?}")))?;
                if page_size.replace(size).is_some() {
                    return Err(bad("page_size", "give page_size at most once".into()));
                }
            }
            "page_token" => once(&mut page_token, "page_token", value)?,
            param => {
                let Some((name, attribute)) = attribute_filter(kind, param) else {
                    return Err(not_taken(kind, param));
                };
                check_attribute_value(param, attribute, &value)?;
                if filter.attributes.iter().any(|m| m.attribute == name) {
                    return Err(bad(param, format!("give {param} at most once")));
                }
                filter.attributes.push(AttributeMatch { attribute: name, value });
            }
        }
    }
    // One order whatever the order of the query, so equal filters make equal page tokens.
    filter.attributes.sort_by(|a, b| a.attribute.cmp(b.attribute));
    let after = match page_token.as_deref().filter(|t| !t.is_empty()) {
        None => 0,
        Some(token) => resume_after(kind, &filter, token)?,
    };
    Ok(ListRequest { filter, page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE), after })
}

/// The 400 for a parameter `kind` does not take: a filter of other collections says which.
fn not_taken(kind: Kind, param: &str) -> ApiError {
    let elsewhere: Vec<&str> = attribute_filters().filter(|(_, a)| a.name == param).map(|(k, _)| k.collection()).collect();
    let collection = kind.collection();
    if elsewhere.is_empty() {
        bad(param, format!("unknown query parameter {param:?}; {collection} take {}", parameters(kind)))
    } else {
        bad(param, format!("{collection} cannot be filtered by {param}, only {}; {collection} take {}", elsewhere.join(" and "), parameters(kind)))
    }
}

/// What a page token binds to: the collection and every filter (not the page size, which may
/// change from page to page).
fn fingerprint(kind: Kind, filter: &ListFilter) -> String {
    let attributes: Vec<[&str; 2]> = filter.attributes.iter().map(|m| [m.attribute, m.value.as_str()]).collect();
    let described = json!([kind.collection(), filter.name, filter.name_prefix, attributes]).to_string();
    sha256_hex(described.as_bytes())[..16].to_string()
}

/// The token of the page after the one that ended at `last_seq`: `p<seq in hex>.<fingerprint>`.
pub fn next_token(kind: Kind, filter: &ListFilter, last_seq: i64) -> String {
    format!("p{last_seq:x}.{}", fingerprint(kind, filter))
}

/// The seq a page token resumes after, if it was issued for this very listing: a token used
/// with other filters (or on another collection) is refused rather than silently continuing a
/// different listing.
fn resume_after(kind: Kind, filter: &ListFilter, token: &str) -> Result<i64, ApiError> {
    let parsed = token.strip_prefix('p').and_then(|t| t.split_once('.')).and_then(|(seq, print)| Some((i64::from_str_radix(seq, 16).ok()?, print)));
    let Some((seq, print)) = parsed else {
        return Err(bad("page_token", "page_token is not one this server issued; start again without it".into()));
    };
    if print != fingerprint(kind, filter) {
        return Err(bad(
            "page_token",
            format!(
                "page_token belongs to another listing: repeat the filters of the first page ({} as they were) with it, or start again without page_token",
                filters(kind).join(", ")
            ),
        ));
    }
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn refusal(kind: Kind, query: &[(&str, &str)]) -> (String, String) {
        let err = parse(kind, pairs(query)).expect_err("refused");
        assert_eq!(err.status(), axum::http::StatusCode::BAD_REQUEST, "{err}");
        let ApiError::BadRequest { errors, detail } = err else { unreachable!("checked the status") };
        (errors[0].field.clone(), detail)
    }

    fn matches(request: &ListRequest) -> Vec<(&str, &str)> {
        request.filter.attributes.iter().map(|m| (m.attribute, m.value.as_str())).collect()
    }

    #[test]
    fn filters_of_each_kind_are_taken_and_ordered() {
        let vms = parse(Kind::Vm, pairs(&[("status", "running"), ("network_id", "net-1"), ("name_prefix", "web-"), ("page_size", "500")])).expect("vms");
        assert_eq!(matches(&vms), [("network_id", "net-1"), ("status", "running")]);
        assert_eq!((vms.filter.name_prefix.as_deref(), vms.page_size, vms.after), (Some("web-"), 500, 0));
        let volumes = parse(Kind::Volume, pairs(&[("attached_to", "vm-0a")])).expect("volumes");
        assert_eq!(matches(&volumes), [("attached_to", "vm-0a")]);
        let policies = parse(Kind::Policy, pairs(&[("enforcement_mode", "audit"), ("name", "p1")])).expect("policies");
        assert_eq!((matches(&policies), policies.filter.name.as_deref()), (vec![("enforcement_mode", "audit")], Some("p1")));
        let templates = parse(Kind::Template, pairs(&[("os", "anything"), ("name_prefix", "ubuntu")])).expect("os stays unchecked");
        assert_eq!(matches(&templates), [("os", "anything")]);
        assert_eq!(parse(Kind::Network, vec![]).expect("nothing").page_size, DEFAULT_PAGE_SIZE);
    }

    #[test]
    fn bad_values_name_the_parameter_and_the_fix() {
        assert_eq!(
            refusal(Kind::Vm, &[("status", "up")]),
            ("status".into(), "status must be one of provisioning, running, stopped, deleting, error, not \"up\"".into())
        );
        assert_eq!(
            refusal(Kind::Policy, &[("enforcement_mode", "deny")]),
            ("enforcement_mode".into(), "enforcement_mode must be one of block, warn, audit, not \"deny\"".into())
        );
        let (field, detail) = refusal(Kind::Vm, &[("network_id", "core")]);
        assert_eq!(field, "network_id");
        assert!(detail.starts_with("network_id takes a network id such as net-"), "{detail}");
        assert!(detail.ends_with("GET /v1/networks?name=<name>"), "{detail}");
        let (field, detail) = refusal(Kind::Volume, &[("attached_to", "vm-")]);
        assert_eq!(field, "attached_to");
        assert!(detail.contains("a vm id such as vm-"), "{detail}");
        for prefix in ["", "Web", "1web", "web_1", "web%", &"a".repeat(64)] {
            let (field, detail) = refusal(Kind::Network, &[("name_prefix", prefix)]);
            assert_eq!(field, "name_prefix");
            assert!(detail.starts_with("name_prefix must be the start of a name: 1 to 63 lowercase letters"), "{detail}");
        }
        assert_eq!(refusal(Kind::Vm, &[("page_size", "0")]).0, "page_size");
    }

    #[test]
    fn a_filter_of_another_kind_says_where_it_belongs() {
        assert_eq!(
            refusal(Kind::Network, &[("status", "running")]),
            ("status".into(), "networks cannot be filtered by status, only vms; networks take name, name_prefix, page_size or page_token".into())
        );
        assert_eq!(
            refusal(Kind::Vm, &[("attached_to", "vm-1")]),
            (
                "attached_to".into(),
                "vms cannot be filtered by attached_to, only volumes; vms take name, name_prefix, network_id, status, page_size or page_token".into()
            )
        );
        assert_eq!(
            refusal(Kind::Volume, &[("colour", "blue")]),
            ("colour".into(), "unknown query parameter \"colour\"; volumes take name, name_prefix, attached_to, page_size or page_token".into())
        );
    }

    #[test]
    fn a_parameter_given_twice_is_refused() {
        for query in [[("status", "running"), ("status", "stopped")], [("name", "a"), ("name", "a")], [("page_size", "5"), ("page_size", "6")]] {
            let (field, detail) = refusal(Kind::Vm, &query);
            assert_eq!(detail, format!("give {field} at most once"));
        }
    }

    #[test]
    fn name_prefix_accepts_every_prefix_of_every_name_the_schema_allows() {
        let name = Kind::Vm.schema().attribute("name").expect("name");
        let pattern = name.constraints.pattern.as_ref().expect("names have a pattern");
        assert_eq!(pattern.source, "^[a-z][a-z0-9-]{0,62}$", "check_name_prefix follows this pattern; change both");
        let longest = format!("a{}", "b-9".repeat(21).chars().take(MAX_NAME_LEN - 1).collect::<String>());
        assert!(pattern.regex.is_match(&longest));
        for end in 1..=longest.len() {
            check_name_prefix(&longest[..end]).expect("a prefix of a valid name");
        }
    }

    #[test]
    fn page_tokens_continue_only_their_own_listing() {
        let request = parse(Kind::Vm, pairs(&[("status", "running"), ("name_prefix", "web")])).expect("first page");
        let token = next_token(Kind::Vm, &request.filter, 0x2a);
        let same = [("name_prefix", "web"), ("status", "running"), ("page_size", "7"), ("page_token", token.as_str())];
        let next = parse(Kind::Vm, pairs(&same)).expect("the same filters in another order and page size");
        assert_eq!((next.after, next.page_size), (0x2a, 7));
        for other in [
            vec![("status", "stopped"), ("name_prefix", "web")],
            vec![("status", "running")],
            vec![("status", "running"), ("name_prefix", "web"), ("network_id", "net-1")],
            vec![("status", "running"), ("name_prefix", "web"), ("name", "web-1")],
        ] {
            let mut query = other.clone();
            query.push(("page_token", token.as_str()));
            let (field, detail) = refusal(Kind::Vm, &query);
            assert_eq!(field, "page_token");
            assert!(
                detail.starts_with(
                    "page_token belongs to another listing: repeat the filters of the first page (name, name_prefix, network_id, status as they were)"
                ),
                "{detail}"
            );
        }
        let (_, detail) = refusal(Kind::Network, &[("name_prefix", "web"), ("page_token", &next_token(Kind::Vm, &ListFilter::default(), 1))]);
        assert!(detail.starts_with("page_token belongs to another listing"), "a token of another collection: {detail}");
        for garbage in ["garbage", "p2a", "pzz.0123456789abcdef", "2a.0123456789abcdef"] {
            let (_, detail) = refusal(Kind::Vm, &[("page_token", garbage)]);
            assert_eq!(detail, "page_token is not one this server issued; start again without it");
        }
        assert_eq!(parse(Kind::Vm, pairs(&[("page_token", "")])).expect("an empty token is the first page").after, 0);
    }

    #[test]
    fn filter_attributes_are_plain_names_of_the_schema() {
        let all: Vec<(Kind, &str)> = attribute_filters().map(|(k, a)| (k, a.name.as_str())).collect();
        let expected =
            [(Kind::Vm, "network_id"), (Kind::Vm, "status"), (Kind::Volume, "attached_to"), (Kind::Policy, "enforcement_mode"), (Kind::Template, "os")];
        assert_eq!(all, expected, "the filters x-list-filter declares");
        for (_, attribute) in attribute_filters() {
            assert!(attribute.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{} is written into SQL", attribute.name);
        }
    }
}
