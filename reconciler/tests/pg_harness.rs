//! The PostgreSQL harness checks itself: a server of its own, fresh databases, a restart on the
//! same port that keeps the data, and `create_database` from inside a tokio runtime.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use support::postgres::{PgServer, connect, off_runtime};

/// How long a just-started server may take to accept connections.
const PATIENCE: Duration = Duration::from_secs(10);

#[test]
fn a_server_of_its_own_serves_fresh_databases_and_keeps_them_across_a_restart() {
    let Some(pg) = PgServer::start_or_skip("a_server_of_its_own_serves_fresh_databases_and_keeps_them_across_a_restart") else {
        return;
    };
    let port = pg.port();
    assert_eq!(pg.url(), format!("postgres://postgres@127.0.0.1:{port}/postgres"));

    let orders = pg.create_database("orders");
    let audit = pg.create_database("audit");
    assert_eq!(orders, format!("postgres://postgres@127.0.0.1:{port}/orders"));
    assert_eq!(audit, format!("postgres://postgres@127.0.0.1:{port}/audit"));

    let mut admin = connect(&pg.url(), PATIENCE).expect("connect to postgres");
    let mut names: Vec<String> =
        admin.query("SELECT datname FROM pg_database WHERE NOT datistemplate", &[]).expect("list databases").iter().map(|r| r.get(0)).collect();
    names.sort();
    assert_eq!(names, ["audit", "orders", "postgres"]);
    drop(admin);

    let mut client = connect(&orders, PATIENCE).expect("connect to orders");
    let one: i32 = client.query_one("SELECT 1", &[]).expect("SELECT 1").get(0);
    assert_eq!(one, 1);
    let database: String = client.query_one("SELECT current_database()", &[]).expect("current_database").get(0);
    assert_eq!(database, "orders");
    client.batch_execute("CREATE TABLE marks (n int); INSERT INTO marks VALUES (7)").expect("write a row");
    drop(client);

    pg.stop();
    let refused = ::postgres::Client::connect(&orders, ::postgres::NoTls);
    assert!(refused.is_err(), "a stopped server still accepts connections");

    pg.start_again();
    assert_eq!(pg.port(), port, "the restarted server moved to another port");
    let mut client = connect(&orders, PATIENCE).expect("connect to orders after the restart");
    let one: i32 = client.query_one("SELECT 1", &[]).expect("SELECT 1 after the restart").get(0);
    assert_eq!(one, 1);
    let mark: i32 = client.query_one("SELECT n FROM marks", &[]).expect("the row written before the restart").get(0);
    assert_eq!(mark, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_database_works_from_inside_a_tokio_runtime() {
    let Some(pg) = PgServer::start_or_skip("create_database_works_from_inside_a_tokio_runtime") else {
        return;
    };
    let url = pg.create_database("inside_tokio");
    let answer: i32 = off_runtime(|| connect(&url, PATIENCE).expect("connect").query_one("SELECT 41 + 1", &[]).expect("query").get(0));
    assert_eq!(answer, 42);
}
