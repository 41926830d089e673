//! The browser harness checks itself: a real headless Chromium over its DevTools pipe loads a
//! page from an in-process server, runs its script, fills and submits its form, and takes a screenshot.

#[allow(dead_code)]
mod support;

use std::ffi::OsString;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::json;
use support::browser::{Browser, CdpError, INSTALL_HINT, Missing, locate_chromium, screenshot_dir};

const FORM_PAGE: &str = r#"<!doctype html>
<html><head><title>harness</title><script src="/app.js" defer></script></head>
<body><h1>Harness</h1>
<form id="greet" method="post" action="/greet"><input name="who"><button type="submit">Send</button></form>
</body></html>"#;

/// Served as its own file, so the test sees an external script run.
const APP_JS: &str = "document.body.dataset.ready = 'yes';\nwindow.answer = () => 6 * 7;\n";

/// The bodies of the form posts the server received.
type Posts = Arc<Mutex<Vec<String>>>;

/// The page, its script and the form's target on 127.0.0.1:0; the page sets an HttpOnly cookie.
async fn start_site() -> (String, Posts) {
    let posts: Posts = Arc::default();
    let recorded = Arc::clone(&posts);
    let app = axum::Router::new()
        .route("/", get(|| async { ([(header::SET_COOKIE, "harness=c00kie; HttpOnly; Path=/; SameSite=Strict")], Html(FORM_PAGE)) }))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript")], APP_JS).into_response() }))
        .route(
            "/greet",
            post(move |body: String| async move {
                recorded.lock().expect("lock").push(body);
                Html("<!doctype html><p id=\"thanks\">thanks</p>")
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the site serves") });
    (url, posts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_runs_a_served_script_submits_a_form_and_takes_a_screenshot() {
    let started = Instant::now();
    let (url, posts) = start_site().await;
    let browser = Browser::launch().await;
    let page = browser.new_page().await.expect("a tab");
    page.goto(&format!("{url}/")).await.expect("the page loads");
    page.wait_for("document.body.dataset.ready === 'yes'", Duration::from_secs(5)).await.expect("the external script ran");
    assert_eq!(page.eval("answer()").await.expect("eval"), json!(42));
    assert_eq!(page.eval("document.title").await.expect("eval"), json!("harness"));
    assert_eq!(page.eval("new Promise(r => setTimeout(() => r('later'), 20))").await.expect("a promise is awaited"), json!("later"));
    match page.eval("(() => { throw new Error('thrown on purpose') })()").await {
        Err(CdpError::Exception(text)) => assert!(text.contains("thrown on purpose"), "{text}"),
        other => panic!("a throw is an Exception error: {other:?}"),
    }
    let timeout = page.wait_for("document.body.dataset.never === 'x'", Duration::from_millis(200)).await.expect_err("never true");
    assert!(timeout.to_string().contains("dataset.never") && timeout.to_string().contains("200ms"), "{timeout}");
    assert_eq!(page.eval("document.cookie").await.expect("eval"), json!(""), "the cookie is HttpOnly");
    assert_eq!(page.cookie_header().await.expect("cookies"), "harness=c00kie");

    page.fill("#greet input[name=who]", "ali & <bob>").await.expect("fill");
    page.click_and_wait("#greet button[type=submit]").await.expect("the form posts and the answer loads");
    assert_eq!(page.eval("document.querySelector('#thanks').textContent").await.expect("eval"), json!("thanks"));
    assert_eq!(*posts.lock().expect("lock"), ["who=ali+%26+%3Cbob%3E"]);
    assert!(page.click("#nothing-here").await.expect_err("no such element").to_string().contains("nothing matches #nothing-here"));

    let shot = screenshot_dir().join("selftest.png");
    page.screenshot(&shot).await.expect("screenshot");
    let png = std::fs::read(&shot).expect("the screenshot is written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 100, "{} is not a PNG", shot.display());
    page.set_viewport(390, 844).await.expect("viewport");
    assert_eq!(page.eval("[innerWidth, innerHeight]").await.expect("eval"), json!([390, 844]));
    assert!(page.dialogs_opened().is_empty());
    drop(browser);
    eprintln!("browser self-test took {:.1?}", started.elapsed());
}

#[test]
fn a_chromium_named_by_novacron_chromium_that_does_not_exist_is_refused_naming_it() {
    let missing = OsString::from("/nonexistent/chromium");
    let found = locate_chromium(Some(missing), Some(OsString::from("/usr/bin:/bin")));
    assert_eq!(found, Err(Missing::Named("/nonexistent/chromium".into())));
    assert_eq!(found.expect_err("missing").to_string(), "NOVACRON_CHROMIUM=/nonexistent/chromium is not a file");
}

#[test]
fn without_chromium_on_path_the_message_names_the_debian_package() {
    let empty = tempfile::tempdir().expect("tempdir");
    let found = locate_chromium(None, Some(empty.path().as_os_str().to_owned()));
    assert_eq!(found, Err(Missing::NotOnPath));
    assert!(found.expect_err("missing").to_string().ends_with(INSTALL_HINT));
    assert_eq!(INSTALL_HINT, "install chromium (Debian: apt-get install chromium)");
}
