//! A loopback HTTP proxy between stoker and the test server that injects faults into the
//! responses to object GETs: one request per connection (it answers `Connection: close`), so
//! each fault hits exactly one request.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the proxy does to one GET of an object whose key contains the proxy's filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sends the headers and a third of the body, then drops the connection.
    DropMidBody,
    /// Answers 503 SlowDown without asking the server.
    SlowDown,
    /// Reads the request and never answers.
    Stall,
    /// Answers with the first half of the object as if it were all of it (a consistent
    /// Content-Length): an object shorter than its listing.
    Short,
    /// Sends the headers (the full Content-Length) and all the body but its last byte, then
    /// closes cleanly.
    CutBody,
}

pub struct Proxy {
    pub endpoint: String,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    /// Matching requests seen (faulted or not).
    pub gets: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to the server on `upstream`; faults apply to GETs whose path contains `filter`.
    pub fn start(upstream: u16, filter: &str) -> Proxy {
        Proxy::start_for(upstream, "GET", filter)
    }

    /// A proxy whose faults apply to `method` requests (`PUT`: an upload's parts) whose path
    /// contains `filter`.
    pub fn start_for(upstream: u16, method: &str, filter: &str) -> Proxy {
        let method = format!("{method} ");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let faults = Arc::new(Mutex::new(VecDeque::new()));
        let gets = Arc::new(AtomicUsize::new(0));
        let (f, g, filter) = (faults.clone(), gets.clone(), filter.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (f, g, filter, method) = (f.clone(), g.clone(), filter.clone(), method.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, upstream, &f, &g, &method, &filter);
                });
            }
        });
        Proxy {
            endpoint,
            faults,
            gets,
        }
    }

    /// Queues `fault` for the next matching GET (faults apply in order, once each).
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut q = self.faults.lock().unwrap();
        for _ in 0..times {
            q.push_back(fault);
        }
    }

    /// Faults queued and not yet applied.
    pub fn pending(&self) -> usize {
        self.faults.lock().unwrap().len()
    }
}

/// Reads an HTTP head (up to the blank line); returns it and any bytes read past it.
fn read_head(s: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&buf).into_owned(), rest));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// `head` with its `Connection` header replaced by `Connection: close` (and, if given, its
/// Content-Length by `len`).
fn rewrite(head: &str, len: Option<usize>) -> String {
    let mut out = String::new();
    for (i, l) in head.trim_end().split("\r\n").enumerate() {
        let lower = l.to_ascii_lowercase();
        if i > 0 && lower.starts_with("connection:") {
            continue;
        }
        if i > 0 && len.is_some() && lower.starts_with("content-length:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
    }
    if let Some(n) = len {
        out.push_str(&format!("Content-Length: {n}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn serve(
    mut client: TcpStream,
    upstream: u16,
    faults: &Mutex<VecDeque<Fault>>,
    gets: &AtomicUsize,
    method: &str,
    filter: &str,
) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut client)?;
    let want = header(&head, "content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    while body.len() < want {
        let mut chunk = vec![0u8; want - body.len()];
        let n = client.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    let line = head.lines().next().unwrap_or("");
    let matching = line.starts_with(method) && line.contains(filter) && !line.contains("list-type");
    let fault = if matching {
        gets.fetch_add(1, Ordering::SeqCst);
        faults.lock().unwrap().pop_front()
    } else {
        None
    };
    match fault {
        Some(Fault::SlowDown) => {
            let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code>\
                       <Message>Please reduce your request rate.</Message></Error>";
            let resp = format!(
                "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{xml}",
                xml.len()
            );
            client.write_all(resp.as_bytes())?;
            return Ok(());
        }
        Some(Fault::Stall) => {
            std::thread::sleep(Duration::from_secs(30));
            return Ok(());
        }
        _ => {}
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    up.write_all(rewrite(&head, None).as_bytes())?;
    up.write_all(&body)?;
    let (rhead, mut rbody) = read_head(&mut up)?;
    up.read_to_end(&mut rbody)?;
    let len = header(&rhead, "content-length").and_then(|v| v.parse::<usize>().ok());
    match (fault, len) {
        (Some(Fault::DropMidBody), Some(n)) if n > 2 => {
            client.write_all(rewrite(&rhead, None).as_bytes())?;
            client.write_all(&rbody[..n / 3])?;
            drop(client);
        }
        (Some(Fault::CutBody), Some(n)) if n > 1 => {
            client.write_all(rewrite(&rhead, None).as_bytes())?;
            client.write_all(&rbody[..n - 1])?;
            client.shutdown(Shutdown::Write)?;
        }
        (Some(Fault::Short), Some(n)) if n > 1 => {
            client.write_all(rewrite(&rhead, Some(n / 2)).as_bytes())?;
            client.write_all(&rbody[..n / 2])?;
        }
        _ => {
            client.write_all(rewrite(&rhead, len).as_bytes())?;
            client.write_all(&rbody)?;
        }
    }
    Ok(())
}
