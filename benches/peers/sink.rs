// Loopback ceiling: a minimal HTTP/1.1 server (std only) that reads each
// request body completely, throws it away and answers 204.
// Knows Content-Length and `Expect: 100-continue` (curl sends it for big
// bodies); a request with chunked transfer-encoding is refused with 411.
// Build: rustc --edition 2021 -O -o sink sink.rs (scripts/bench.sh builds it outside the repository)
// Run:   sink 127.0.0.1:18090
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

fn serve(stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::with_capacity(1 << 20, stream);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        // request line + headers
        let mut len: u64 = 0;
        let (mut expect, mut chunked, mut close, mut first) = (false, false, false, true);
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(()); // peer closed between requests
            }
            let l = line.trim_end();
            if l.is_empty() {
                if first { continue; }
                break;
            }
            first = false;
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            } else if lower.starts_with("expect:") && lower.contains("100-continue") {
                expect = true;
            } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            } else if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        if chunked {
            w.write_all(b"HTTP/1.1 411 Length Required\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
            return Ok(());
        }
        if expect {
            w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = r.read(&mut buf[..want])?;
            if n == 0 {
                return Ok(()); // body cut off
            }
            left -= n as u64;
        }
        w.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")?;
        if close {
            return Ok(());
        }
    }
}

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = TcpListener::bind(&addr).expect("bind");
    eprintln!("sink listening on {addr}");
    for s in listener.incoming() {
        if let Ok(s) = s {
            std::thread::spawn(move || {
                let _ = serve(s);
            });
        }
    }
}
