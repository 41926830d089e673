//! List filters: `name_prefix` on every kind, `network_id` and `status` on VMs, `attached_to`
//! on volumes, `enforcement_mode` on policies; combined with each other, with `name` and with
//! paging; bad values and filters of another kind refused with a 400 naming the parameter.

use super::*;

fn names(objects: &[Object]) -> Vec<&str> {
    objects.iter().map(Object::name).collect()
}

async fn matching(c: &Client, kind: Kind, query: ListQuery) -> Vec<String> {
    let page = c.list_page(kind, &query).await.unwrap_or_else(|e| panic!("{kind} {query:?}: {e}"));
    assert_eq!(page.next_page_token, None, "one page holds it all");
    page.items.iter().map(|o| o.name().to_string()).collect()
}

/// Every page of a listing, `page_size` at a time, repeating the query's filters with each token.
async fn walk(c: &Client, kind: Kind, query: &ListQuery, page_size: u32) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut token = None;
    loop {
        let page = c.list_page(kind, &ListQuery { page_size: Some(page_size), page_token: token.take(), ..query.clone() }).await.expect("page");
        pages += 1;
        seen.extend(page.items.iter().map(|o| o.name().to_string()));
        match page.next_page_token {
            Some(t) => token = Some(t),
            None => return (seen, pages),
        }
    }
}

#[tokio::test]
async fn vm_filters_combine_with_each_other_and_with_name() {
    let h = harness().await;
    let c = &h.client;
    let core = network(c, "core", "10.30.0.0/24").await;
    let edge = network(c, "edge", "10.31.0.0/24").await;
    let web1 = vm(c, "web-1", core.id()).await;
    vm(c, "web-2", core.id()).await;
    vm(c, "db-1", edge.id()).await;
    let stopped = json!({"name": "web-3", "cpu_cores": 1, "memory_gb": 1, "template_id": "tpl-debian-12", "network_id": edge.id(), "power_state": "stopped"});
    c.create(Kind::Vm, &stopped).await.expect("web-3");
    for vm in c.list_all(Kind::Vm).await.expect("vms") {
        wait_for_status(c, Kind::Vm, vm.id(), if vm.name() == "web-3" { "stopped" } else { "running" }).await;
    }

    let q = |f: fn(&mut ListQuery)| {
        let mut query = ListQuery::default();
        f(&mut query);
        query
    };
    assert_eq!(matching(c, Kind::Vm, q(|q| q.name_prefix = Some("web-".into()))).await, ["web-1", "web-2", "web-3"]);
    assert_eq!(matching(c, Kind::Vm, q(|q| q.name_prefix = Some("w".into()))).await, ["web-1", "web-2", "web-3"]);
    assert_eq!(matching(c, Kind::Vm, q(|q| q.name_prefix = Some("web-10".into()))).await, Vec::<String>::new());
    let on_edge = ListQuery { network_id: Some(edge.id().into()), ..ListQuery::default() };
    assert_eq!(matching(c, Kind::Vm, on_edge.clone()).await, ["db-1", "web-3"]);
    assert_eq!(matching(c, Kind::Vm, ListQuery { name_prefix: Some("web".into()), ..on_edge.clone() }).await, ["web-3"]);
    assert_eq!(matching(c, Kind::Vm, ListQuery { status: Some("running".into()), ..on_edge.clone() }).await, ["db-1"]);
    assert_eq!(matching(c, Kind::Vm, q(|q| q.status = Some("stopped".into()))).await, ["web-3"]);
    assert_eq!(matching(c, Kind::Vm, q(|q| q.status = Some("error".into()))).await, Vec::<String>::new());
    let core_running_web =
        ListQuery { network_id: Some(core.id().into()), status: Some("running".into()), name_prefix: Some("web-".into()), ..ListQuery::default() };
    assert_eq!(matching(c, Kind::Vm, core_running_web.clone()).await, ["web-1", "web-2"]);
    assert_eq!(matching(c, Kind::Vm, ListQuery { name: Some("web-2".into()), ..core_running_web.clone() }).await, ["web-2"]);
    assert_eq!(matching(c, Kind::Vm, ListQuery { name: Some("db-1".into()), ..core_running_web }).await, Vec::<String>::new(), "name and filters all apply");
    assert_eq!(matching(c, Kind::Vm, q(|q| q.network_id = Some("net-0000000000000000".into()))).await, Vec::<String>::new(), "an unknown id matches nothing");
    assert_eq!(names(&c.list_matching(Kind::Vm, &on_edge).await.expect("list_matching keeps the filters")), ["db-1", "web-3"]);

    // Moving a VM moves it between filtered listings.
    c.patch(Kind::Vm, web1.id(), &json!({"network_id": edge.id()}), None).await.expect("moved");
    assert_eq!(matching(c, Kind::Vm, on_edge).await, ["web-1", "db-1", "web-3"], "creation order, not update order");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn volume_policy_network_and_template_filters() {
    let h = harness().await;
    let c = &h.client;
    let core = network(c, "core", "10.32.0.0/24").await;
    network(c, "core-backup", "10.33.0.0/24").await;
    network(c, "lab", "10.34.0.0/24").await;
    let app = vm(c, "app", core.id()).await;
    let other = vm(c, "other", core.id()).await;
    for (name, attached) in [("app-data", Some(app.id())), ("app-logs", Some(app.id())), ("other-data", Some(other.id())), ("spare", None)] {
        let mut body = json!({"name": name, "size_gb": 10});
        if let Some(id) = attached {
            body["attached_to"] = json!(id);
        }
        c.create(Kind::Volume, &body).await.expect("volume");
    }
    let on_app = ListQuery { attached_to: Some(app.id().into()), ..ListQuery::default() };
    assert_eq!(matching(c, Kind::Volume, on_app.clone()).await, ["app-data", "app-logs"]);
    assert_eq!(matching(c, Kind::Volume, ListQuery { name_prefix: Some("app-l".into()), ..on_app }).await, ["app-logs"]);
    assert_eq!(matching(c, Kind::Volume, ListQuery { name_prefix: Some("sp".into()), ..ListQuery::default() }).await, ["spare"]);

    for (name, mode) in [("cost-cap", "warn"), ("no-root", "block"), ("cost-report", "audit"), ("cost-tags", "warn")] {
        let rule = "package p\ndeny contains m if { false; m := \"\" }";
        c.create(Kind::Policy, &json!({"name": name, "rule": rule, "enforcement_mode": mode, "enabled": false})).await.expect("policy");
    }
    c.create(Kind::Policy, &json!({"name": "default-mode", "rule": "package p\ndeny contains m if { false; m := \"\" }", "enabled": false}))
        .await
        .expect("a policy created without enforcement_mode");
    let warn = ListQuery { enforcement_mode: Some("warn".into()), ..ListQuery::default() };
    assert_eq!(matching(c, Kind::Policy, warn.clone()).await, ["cost-cap", "cost-tags"]);
    assert_eq!(matching(c, Kind::Policy, ListQuery { enforcement_mode: Some("block".into()), ..ListQuery::default() }).await, ["no-root", "default-mode"]);
    assert_eq!(
        matching(c, Kind::Policy, ListQuery { name_prefix: Some("cost-".into()), ..ListQuery::default() }).await,
        ["cost-cap", "cost-report", "cost-tags"]
    );
    assert_eq!(matching(c, Kind::Policy, ListQuery { name_prefix: Some("cost-t".into()), ..warn }).await, ["cost-tags"]);

    assert_eq!(matching(c, Kind::Network, ListQuery { name_prefix: Some("core".into()), ..ListQuery::default() }).await, ["core", "core-backup"]);
    let ubuntu = matching(c, Kind::Template, ListQuery { name_prefix: Some("ubuntu-24".into()), ..ListQuery::default() }).await;
    assert_eq!(ubuntu, ["ubuntu-24-04", "ubuntu-24-04-arm"]);
    let query = ListQuery { name_prefix: Some("ubuntu".into()), os: Some("debian".into()), ..ListQuery::default() };
    assert_eq!(matching(c, Kind::Template, query).await, Vec::<String>::new(), "os and name_prefix combine");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn paging_through_a_filtered_listing_sees_each_match_once() {
    let h = harness().await;
    let c = &h.client;
    let modes = ["block", "warn", "audit"];
    for i in 0..30 {
        let body = json!({"name": format!("p{i:02}"), "rule": "package p\ndeny contains m if { false; m := \"\" }", "enabled": false, "enforcement_mode": modes[i % 3]});
        c.create(Kind::Policy, &body).await.expect("policy");
    }
    let warn = ListQuery { enforcement_mode: Some("warn".into()), ..ListQuery::default() };
    let (seen, pages) = walk(c, Kind::Policy, &warn, 3).await;
    let expected: Vec<String> = (0..30).filter(|i| i % 3 == 1).map(|i| format!("p{i:02}")).collect();
    assert_eq!((seen, pages), (expected, 4), "10 matches in pages of 3");

    let p1_warn = ListQuery { name_prefix: Some("p1".into()), ..warn.clone() };
    let (seen, _) = walk(c, Kind::Policy, &p1_warn, 1).await;
    assert_eq!(seen, ["p10", "p13", "p16", "p19"]);

    // The page size may change from page to page; the filters may not.
    let first = c.list_page(Kind::Policy, &ListQuery { page_size: Some(2), ..warn.clone() }).await.expect("first page");
    let token = first.next_page_token.expect("more pages");
    let second = c.list_page(Kind::Policy, &ListQuery { page_size: Some(100), page_token: Some(token.clone()), ..warn.clone() }).await.expect("second page");
    assert_eq!(names(&second.items), ["p07", "p10", "p13", "p16", "p19", "p22", "p25", "p28"]);
    for replayed in [
        ListQuery::default(),
        ListQuery { enforcement_mode: Some("audit".into()), ..ListQuery::default() },
        ListQuery { name_prefix: Some("p".into()), ..warn.clone() },
        ListQuery { name: Some("p04".into()), ..warn.clone() },
    ] {
        let err = c.list_page(Kind::Policy, &ListQuery { page_token: Some(token.clone()), ..replayed.clone() }).await.unwrap_err();
        assert_eq!((status_of(&err), fields_of(&err)), (400, vec!["page_token".to_string()]), "{replayed:?}: {err}");
        assert!(err.to_string().contains("page_token belongs to another listing: repeat the filters of the first page"), "{err}");
    }
    let err = c.list_page(Kind::Vm, &ListQuery { page_token: Some(token), ..ListQuery::default() }).await.unwrap_err();
    assert_eq!((status_of(&err), fields_of(&err)), (400, vec!["page_token".to_string()]), "a token of another collection: {err}");
    h.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn bad_filter_values_and_filters_of_another_kind_are_400_naming_the_parameter() {
    let h = harness().await;
    let c = &h.client;
    let refusals: [(Kind, ListQuery, &str, &str); 10] = [
        (
            Kind::Vm,
            ListQuery { status: Some("up".into()), ..ListQuery::default() },
            "status",
            "status must be one of provisioning, running, stopped, deleting, error, not \"up\"",
        ),
        (Kind::Vm, ListQuery { network_id: Some("core".into()), ..ListQuery::default() }, "network_id", "network_id takes a network id such as net-"),
        (Kind::Volume, ListQuery { attached_to: Some("web".into()), ..ListQuery::default() }, "attached_to", "GET /v1/vms?name=<name>"),
        (Kind::Policy, ListQuery { enforcement_mode: Some("deny".into()), ..ListQuery::default() }, "enforcement_mode", "must be one of block, warn, audit"),
        (Kind::Network, ListQuery { name_prefix: Some("Core".into()), ..ListQuery::default() }, "name_prefix", "name_prefix must be the start of a name"),
        (Kind::Network, ListQuery { name_prefix: Some(String::new()), ..ListQuery::default() }, "name_prefix", "1 to 63 lowercase letters"),
        (Kind::Network, ListQuery { status: Some("running".into()), ..ListQuery::default() }, "status", "networks cannot be filtered by status, only vms"),
        (
            Kind::Vm,
            ListQuery { attached_to: Some("vm-1".into()), ..ListQuery::default() },
            "attached_to",
            "vms cannot be filtered by attached_to, only volumes",
        ),
        (
            Kind::Policy,
            ListQuery { network_id: Some("net-1".into()), ..ListQuery::default() },
            "network_id",
            "policies take name, name_prefix, enforcement_mode, page_size or page_token",
        ),
        (
            Kind::Vm,
            ListQuery { enforcement_mode: Some("block".into()), os: Some("ubuntu".into()), ..ListQuery::default() },
            "os",
            "vms cannot be filtered by os, only templates",
        ),
    ];
    for (kind, query, field, text) in refusals {
        let err = c.list_page(kind, &query).await.unwrap_err();
        assert_eq!((status_of(&err), fields_of(&err)), (400, vec![field.to_string()]), "{kind} {query:?}: {err}");
        assert!(err.to_string().contains(text), "{kind} {query:?}: {err}");
    }
    let key = Some(TEST_API_KEY.1);
    let (status, body, headers) = raw(&h, "GET", "/v1/vms?status=running&status=stopped", key, vec![]).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("status")), "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    assert_eq!(body["detail"], "give status at most once");
    let (status, body, _) = raw(&h, "GET", "/v1/vms?name_prefix=web%2A", key, vec![]).await;
    assert_eq!((status, body["errors"][0]["field"].as_str()), (400, Some("name_prefix")), "no wildcards: {body}");
    h.platform.shutdown().await.expect("shutdown");
}
