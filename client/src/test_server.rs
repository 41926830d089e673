//! A scripted HTTP/1.1 responder on 127.0.0.1 for the client's unit tests: it answers each
//! connection with the next canned response and records what was asked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the stub received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    /// `METHOD /path?query`.
    pub(crate) line: String,
    /// Header names lower-cased, in order.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Seen {
    /// The first value of a header.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A canned answer; `None` means: read the request, then never answer.
pub(crate) type Canned = Option<String>;

/// A response with a status line, extra header lines and a JSON body.
pub(crate) fn reply(status: &str, headers: &[&str], body: &str) -> Canned {
    let mut text = format!("HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n", body.len());
    if !body.is_empty() {
        text.push_str("content-type: application/json\r\n");
    }
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text.push_str(body);
    Some(text)
}

/// The running stub: its base URL and the requests seen so far.
pub(crate) struct Stub {
    pub(crate) endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Stub {
    /// Starts answering with `script`, one entry per connection (each on its own thread), then
    /// closes the listener.
    pub(crate) fn start(script: Vec<Canned>) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let endpoint = format!("http://{}", listener.local_addr().expect("a bound address"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        std::thread::spawn(move || {
            for canned in script {
                let Ok((stream, _)) = listener.accept() else { return };
                let record = Arc::clone(&record);
                // A connection left unanswered must not hold up the next one.
                std::thread::spawn(move || serve(stream, canned, &record));
            }
        });
        Stub { endpoint, seen }
    }

    /// The requests received so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("no test thread panicked while holding the lock").clone()
    }
}

fn serve(stream: TcpStream, canned: Canned, record: &Mutex<Vec<Seen>>) {
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("set a read timeout");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.trim_end().split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let line = line.trim_end().trim_end_matches(" HTTP/1.1").to_string();
    record.lock().expect("no test thread panicked while holding the lock").push(Seen { line, headers, body: String::from_utf8_lossy(&body).into_owned() });
    let mut stream = reader.into_inner();
    match canned {
        Some(text) => {
            let _ = stream.write_all(text.as_bytes());
        }
        // Hold the connection open without answering until the client gives up.
        None => std::thread::sleep(Duration::from_secs(3)),
    }
}
